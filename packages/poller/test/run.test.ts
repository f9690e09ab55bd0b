/**
 * The poller run against the real local control plane and registries: WatchedImages, workloads and
 * secrets are created through the API, `runPoll` runs in-process with a real KubePollerCluster and
 * RegistryClient (and once as the CLI, a child process), and every outcome is read back from the API.
 * Faults come from the fault proxy in front of a real registry. Each test has its own namespace and its
 * own repositories. Time is an injected clock (a run "10 minutes later" is `at: T + 10 min`), never a
 * wait, and nothing asserts a duration.
 */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  PatchStrategy,
  setHeaderOptions,
  type V1ManagedFieldsEntry,
  type V1Secret,
} from '@kubernetes/client-node';
import {
  API_VERSION,
  applyStatus,
  type Condition,
  createLogger,
  FIELD_MANAGER,
  imageUpdateName,
  kubeTime,
  LABEL,
  loadKubeConfig,
  shortDigest,
  WATCHED_IMAGE,
  type WatchedImage,
} from '@kubewatcher/shared';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { pushImage, pushTestImage } from '../../../scripts/lib/images.ts';
import {
  createWatchedImage,
  getWatchedImage,
  listImageUpdates,
  WI,
} from '../../../test/support/controller-fixtures.ts';
import { installCrds } from '../../../test/support/crds.ts';
import { CHECK_RECORD_KEY, mayLeaveUnwritten, parseCheckRecord } from '../src/check-record.ts';
import { KubePollerCluster, type ObjectRef, type PollerCluster } from '../src/cluster.ts';
import { RegistryClient, type RegistryHostOptions } from '../src/registry/index.ts';
import { type RunSummary, runPoll } from '../src/run.ts';
import { type FaultProxy, startFaultProxy } from './fault-proxy.ts';

const exec = promisify(execFile);
const info = inject('localCluster');
const { open, basic, token } = info.registries;
const kc = loadKubeConfig(info.kubeconfig);
const custom = kc.makeApiClient(CustomObjectsApi);
const clients = { custom };
const core = kc.makeApiClient(CoreV1Api);
const apps = kc.makeApiClient(AppsV1Api);
const cluster = new KubePollerCluster(kc);

const MINUTE = 60_000;
/** Repositories of this file, so a rerun against a reused environment never meets old tags. */
const repoPrefix = `poller-run-${randomBytes(3).toString('hex')}`;
const serverSideApply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

beforeAll(async () => {
  await installCrds(info);
});

// ---------------------------------------------------------------------------------------------------
// Helpers: namespaces, objects, images, runs

async function namespace(prefix: string): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name } } });
  return name;
}

function repo(name: string): string {
  return `${repoPrefix}/${name}`;
}

function condition(wi: WatchedImage, type: string): Condition | undefined {
  return wi.status?.conditions?.find((c) => c.type === type);
}

async function createDeployment(
  ns: string,
  name: string,
  image: string,
  pod: { imagePullSecrets?: { name: string }[]; serviceAccountName?: string } = {},
): Promise<void> {
  const labels = { app: name };
  await apps.createNamespacedDeployment({
    namespace: ns,
    body: {
      metadata: { name, labels },
      spec: {
        replicas: 0,
        selector: { matchLabels: labels },
        template: { metadata: { labels }, spec: { ...pod, containers: [{ name: 'main', image }] } },
      },
    },
  });
}

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** A kubernetes.io/dockerconfigjson Secret for one registry key. */
function dockerConfigJsonSecret(name: string, server: string, username: string, password: string): V1Secret {
  const auths = { [server]: { auth: b64(`${username}:${password}`) } };
  return {
    metadata: { name },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': b64(JSON.stringify({ auths })) },
  };
}

/** A legacy kubernetes.io/dockercfg Secret: the registries map without the `auths` wrapper. */
function dockerCfgSecret(name: string, server: string, username: string, password: string): V1Secret {
  const cfg = { [server]: { username, password, email: 'ci@example.com' } };
  return {
    metadata: { name },
    type: 'kubernetes.io/dockercfg',
    data: { '.dockercfg': b64(JSON.stringify(cfg)) },
  };
}

/** Transport settings of every local registry: plain HTTP where it is HTTP, the CA where it is HTTPS. */
function hostOptions(extra: Record<string, RegistryHostOptions> = {}): Record<string, RegistryHostOptions> {
  return {
    [open.host]: { plainHttp: true },
    [token.host]: { plainHttp: true },
    [basic.host]: { caFile: basic.caFile! },
    ...extra,
  };
}

interface PollOptions {
  /** The run's clock (ms since the epoch); default the real time. */
  at?: number;
  /** A registry client to use (and leave open); default a fresh one per run. */
  registry?: RegistryClient;
  cluster?: PollerCluster;
  registries?: Record<string, RegistryHostOptions>;
  dryRun?: boolean;
  budgetMs?: number;
  concurrency?: number;
  /** The fresh client's deadline per lookup (default 10 s). */
  timeoutMs?: number;
  ignoreInterval?: boolean;
  checkRecord?: ObjectRef;
}

interface PollResult {
  summary: RunSummary;
  stats: ReturnType<RegistryClient['stats']>;
  /** JSON log lines of the run. */
  logs: string[];
}

/** One poller run over `ns` with a fresh registry client, as each CronJob run has. */
async function poll(ns: string, opts: PollOptions = {}): Promise<PollResult> {
  const logs: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const lines = chunk.toString('utf8').split('\n').filter(Boolean);
      logs.push(...lines);
      // Also to the console, which vitest prints only for a failing test (vitest.config.ts).
      for (const line of lines) console.error(line);
      done();
    },
  });
  const logger = createLogger({ component: 'poller', level: 'debug', format: 'json', stream });
  const registry =
    opts.registry ??
    new RegistryClient({
      registries: opts.registries ?? hostOptions(),
      timeoutMs: opts.timeoutMs ?? 10_000,
      // Backoff between retries of a 5xx would only slow the tests down.
      sleep: async () => {},
      logger,
    });
  const at = opts.at;
  try {
    const summary = await runPoll({
      cluster: opts.cluster ?? cluster,
      registry,
      logger,
      namespaces: [ns],
      ...(opts.dryRun ? { dryRun: true } : {}),
      ...(opts.budgetMs === undefined ? {} : { budgetMs: opts.budgetMs }),
      ...(opts.concurrency === undefined ? {} : { concurrency: opts.concurrency }),
      ...(opts.ignoreInterval ? { ignoreInterval: true } : {}),
      ...(opts.checkRecord ? { checkRecord: opts.checkRecord } : {}),
      ...(at === undefined ? {} : { now: () => new Date(at) }),
    });
    return { summary, stats: registry.stats(), logs };
  } finally {
    if (!opts.registry) registry.close();
    logger.close();
  }
}

/** Points `host/repository:tag` at a digest already in the repository (crane tag: no new content). */
async function retag(host: string, repository: string, digest: string, tag: string): Promise<void> {
  await exec(join(info.binDir, 'crane'), ['tag', '--insecure', `${host}/${repository}@${digest}`, tag]);
}

/** A PollerCluster that does what the real one does, except for the calls given. */
function clusterWith(overrides: Partial<PollerCluster>): PollerCluster {
  return {
    listWatchedImages: (ns) => cluster.listWatchedImages(ns),
    listWorkloads: (ns, kinds) => cluster.listWorkloads(ns, kinds),
    getServiceAccountPullSecrets: (ns, name) => cluster.getServiceAccountPullSecrets(ns, name),
    getSecret: (ns, name) => cluster.getSecret(ns, name),
    createImageUpdate: (draft) => cluster.createImageUpdate(draft),
    applyStatus: (wi, status) => cluster.applyStatus(wi, status),
    readCheckRecord: (ref) => cluster.readCheckRecord(ref),
    replaceCheckRecord: (ref, stored, text) => cluster.replaceCheckRecord(ref, stored, text),
    ...overrides,
  };
}

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const proxies: FaultProxy[] = [];
afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
});

// ---------------------------------------------------------------------------------------------------

describe('baselines and changes', () => {
  it('first sight records the baseline and creates no ImageUpdate', async () => {
    const ns = await namespace('first-sight');
    const digest = await pushImage({ info, repository: repo('first'), tag: 'stable' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repo('first')}:stable` });
    const at = Date.now();

    const { summary, stats } = await poll(ns, { at });
    expect(summary).toMatchObject({
      watchedImages: 1,
      checked: 1,
      baselined: 1,
      changed: 0,
      failed: 0,
      imageUpdatesCreated: 0,
      resolutions: 1,
    });
    expect(stats).toMatchObject({ head: 1, get: 0, token: 0 });

    const wi = await getWatchedImage(clients, ns, 'web');
    expect(wi.status).toMatchObject({
      digest,
      shortDigest: shortDigest(digest),
      resolvedImage: `${open.host}/${repo('first')}:stable`,
    });
    expect(Date.parse(wi.status!.lastCheckedTime!)).toBe(at);
    expect(Date.parse(wi.status!.lastChangedTime!)).toBe(at);
    expect(condition(wi, 'Resolved')).toMatchObject({
      status: 'True',
      reason: 'Resolved',
      observedGeneration: wi.metadata.generation,
    });
    expect(condition(wi, 'Resolved')!.message).toContain(digest);
    expect(await listImageUpdates(clients, ns)).toEqual([]);
  });

  it('a re-pushed tag gives exactly one ImageUpdate and moves the baseline; an unchanged tag gives none', async () => {
    const ns = await namespace('repush');
    const first = await pushImage({ info, repository: repo('repush'), tag: 'v1' });
    const steady = await pushImage({ info, repository: repo('steady'), tag: 'v1' });
    const created = await createWatchedImage(clients, ns, 'web', {
      image: `${open.host}/${repo('repush')}:v1`,
    });
    await createWatchedImage(clients, ns, 'steady', { image: `${open.host}/${repo('steady')}:v1` });
    const t0 = Date.now();
    expect((await poll(ns, { at: t0 })).summary).toMatchObject({ baselined: 2, imageUpdatesCreated: 0 });

    const second = await pushImage({ info, repository: repo('repush'), tag: 'v1' });
    expect(second).not.toBe(first);
    const t1 = t0 + 6 * MINUTE;
    const changed = await poll(ns, { at: t1 });
    expect(changed.summary).toMatchObject({ checked: 2, changed: 1, unchanged: 1, imageUpdatesCreated: 1 });

    const updates = await listImageUpdates(clients, ns);
    expect(updates).toHaveLength(1);
    const update = updates[0]!;
    expect(update.metadata!.name).toBe(imageUpdateName('web', second));
    expect(update.metadata!.labels).toMatchObject({ [LABEL.watchedImage]: 'web' });
    expect(update.metadata!.ownerReferences).toEqual([
      expect.objectContaining({
        apiVersion: API_VERSION,
        kind: 'WatchedImage',
        name: 'web',
        uid: created.metadata.uid,
        controller: true,
      }),
    ]);
    expect(update.spec).toMatchObject({
      watchedImage: 'web',
      image: `${open.host}/${repo('repush')}:v1`,
      fromDigest: first,
      toDigest: second,
    });

    const web = await getWatchedImage(clients, ns, 'web');
    expect(web.status).toMatchObject({ digest: second, shortDigest: shortDigest(second) });
    expect(Date.parse(web.status!.lastChangedTime!)).toBe(t1);
    // The minimum age counts from the run that first saw the digest (metav1.Time: whole seconds).
    expect(Date.parse(update.spec.detectedTime!)).toBe(Math.floor(t1 / 1000) * 1000);
    expect(condition(web, 'Resolved')!.message).toBe(
      `${open.host}/${repo('repush')}:v1 moved from ${first} to ${second}`,
    );
    const unchanged = await getWatchedImage(clients, ns, 'steady');
    expect(unchanged.status).toMatchObject({ digest: steady });
    expect(Date.parse(unchanged.status!.lastChangedTime!)).toBe(t0);
    expect(Date.parse(unchanged.status!.lastCheckedTime!)).toBe(t1);

    // Right after: not due. A period later: checked, unchanged. Neither adds an ImageUpdate.
    const again = await poll(ns, { at: t1 });
    expect(again.summary).toMatchObject({ notDue: 2, checked: 0, imageUpdatesCreated: 0 });
    const later = await poll(ns, { at: t1 + 6 * MINUTE });
    expect(later.summary).toMatchObject({ checked: 2, unchanged: 2, changed: 0, imageUpdatesCreated: 0 });
    expect((await listImageUpdates(clients, ns)).map((u) => u.metadata!.name)).toEqual([
      update.metadata!.name,
    ]);
  });

  it('respects spec.interval: not due right after a check, checked once the interval has passed', async () => {
    const ns = await namespace('interval');
    const digest = await pushImage({ info, repository: repo('interval'), tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', {
      image: `${open.host}/${repo('interval')}:v1`,
      interval: '10m',
    });
    const t0 = Date.now();
    expect((await poll(ns, { at: t0 })).summary).toMatchObject({ checked: 1, baselined: 1 });

    const soon = await poll(ns, { at: t0 + 1000 });
    expect(soon.summary).toMatchObject({ watchedImages: 1, notDue: 1, checked: 0, resolutions: 0 });
    expect(soon.stats.total).toBe(0);
    const early = await poll(ns, { at: t0 + 9 * MINUTE });
    expect(early.summary).toMatchObject({ notDue: 1, checked: 0 });
    expect(Date.parse((await getWatchedImage(clients, ns, 'web')).status!.lastCheckedTime!)).toBe(t0);

    const due = await poll(ns, { at: t0 + 10 * MINUTE });
    expect(due.summary).toMatchObject({ notDue: 0, checked: 1, unchanged: 1 });
    expect(due.stats.head).toBe(1);
    const wi = await getWatchedImage(clients, ns, 'web');
    expect(Date.parse(wi.status!.lastCheckedTime!)).toBe(t0 + 10 * MINUTE);
    expect(wi.status!.digest).toBe(digest);
  });

  it('checks at once what a webhook asked for (status.checkRequestedTime after the last check), whatever the interval', async () => {
    const ns = await namespace('requested');
    await pushImage({ info, repository: repo('requested'), tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', {
      image: `${open.host}/${repo('requested')}:v1`,
      interval: '24h',
    });
    const t0 = Date.now();
    expect((await poll(ns, { at: t0 })).summary).toMatchObject({ checked: 1, baselined: 1 });
    const moved = await pushImage({ info, repository: repo('requested'), tag: 'v1' });
    expect((await poll(ns, { at: t0 + MINUTE })).summary).toMatchObject({ notDue: 1, checked: 0 });

    // What the webhook receiver writes, under its own field manager.
    await applyStatus(kc, {
      resource: WATCHED_IMAGE,
      namespace: ns,
      name: 'web',
      fieldManager: FIELD_MANAGER.webhook,
      status: { checkRequestedTime: new Date(t0 + 2 * MINUTE).toISOString() },
    });
    const requested = await poll(ns, { at: t0 + 3 * MINUTE });
    expect(requested.summary).toMatchObject({ notDue: 0, checked: 1, changed: 1, imageUpdatesCreated: 1 });
    const wi = await getWatchedImage(clients, ns, 'web');
    expect(wi.status?.digest).toBe(moved);
    expect(wi.status?.checkRequestedTime).toBe(new Date(t0 + 2 * MINUTE).toISOString());
    // Served: the next run waits for the interval again.
    expect((await poll(ns, { at: t0 + 4 * MINUTE })).summary).toMatchObject({ notDue: 1, checked: 0 });
  });

  it('writes status only for what changed or for the scheduled check: an early check that finds nothing new writes nothing', async () => {
    const ns = await namespace('writes');
    await pushImage({ info, repository: repo('writes'), tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repo('writes')}:v1` });
    let applies = 0;
    const counting = clusterWith({
      applyStatus: (wi, status) => {
        applies++;
        return cluster.applyStatus(wi, status);
      },
    });
    const lastChecked = async () =>
      Date.parse((await getWatchedImage(clients, ns, 'web')).status!.lastCheckedTime!);
    const t0 = Date.now();
    expect((await poll(ns, { at: t0, cluster: counting })).summary).toMatchObject({
      baselined: 1,
      statusWrites: 1,
    });

    const early = await poll(ns, { at: t0 + MINUTE, cluster: counting, ignoreInterval: true });
    expect(early.summary).toMatchObject({ checked: 1, unchanged: 1, statusWrites: 0 });
    expect(early.stats.head).toBe(1);
    expect(applies).toBe(1);
    expect(await lastChecked()).toBe(t0);

    // The default interval (5m) has passed: the scheduled check moves lastCheckedTime.
    const due = await poll(ns, { at: t0 + 5 * MINUTE, cluster: counting });
    expect(due.summary).toMatchObject({ checked: 1, unchanged: 1, statusWrites: 1 });
    expect(await lastChecked()).toBe(t0 + 5 * MINUTE);

    // An early check that finds a new digest is written at once.
    await pushImage({ info, repository: repo('writes'), tag: 'v1' });
    const moved = await poll(ns, { at: t0 + 6 * MINUTE, cluster: counting, ignoreInterval: true });
    expect(moved.summary).toMatchObject({ changed: 1, statusWrites: 1, imageUpdatesCreated: 1 });
    expect(await lastChecked()).toBe(t0 + 6 * MINUTE);
    expect(applies).toBe(3);
  });

  it('tracks a multi-arch tag by its index digest, the one crane reports', async () => {
    const ns = await namespace('multi-arch');
    const pushed = await pushTestImage({ info, repository: repo('multi'), tag: 'v1', multiArch: true });
    await createWatchedImage(clients, ns, 'multi', { image: `${open.host}/${repo('multi')}:v1` });
    await poll(ns);
    const { stdout } = await exec(join(info.binDir, 'crane'), [
      'digest',
      '--insecure',
      `${open.host}/${repo('multi')}:v1`,
    ]);
    const wi = await getWatchedImage(clients, ns, 'multi');
    expect(wi.status!.digest).toBe(stdout.trim());
    expect(wi.status!.digest).toBe(pushed.digest);
    expect(pushed.platforms.map((p) => p.digest)).not.toContain(wi.status!.digest);
  });

  it('takes a new baseline, not a change, when spec.image names another tag', async () => {
    const ns = await namespace('retarget');
    await pushImage({ info, repository: repo('retarget'), tag: 'v1' });
    const v2 = await pushImage({ info, repository: repo('retarget'), tag: 'v2' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repo('retarget')}:v1` });
    const t0 = Date.now();
    await poll(ns, { at: t0 });
    await custom.patchNamespacedCustomObject(
      {
        ...WI,
        namespace: ns,
        name: 'web',
        body: { spec: { image: `${open.host}/${repo('retarget')}:v2` } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    // Not an interval later: a new image is checked at once.
    const { summary } = await poll(ns, { at: t0 + 1000 });
    expect(summary).toMatchObject({ baselined: 1, changed: 0, imageUpdatesCreated: 0 });
    const wi = await getWatchedImage(clients, ns, 'web');
    expect(wi.status).toMatchObject({ digest: v2, resolvedImage: `${open.host}/${repo('retarget')}:v2` });
    expect(await listImageUpdates(clients, ns)).toEqual([]);
  });

  it('gives each move of a tag that goes A → B → A → B its own ImageUpdate, with distinct names', async () => {
    const ns = await namespace('flip-flop');
    const repository = repo('flip');
    const a = await pushImage({ info, repository, tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repository}:v1` });
    const t0 = Date.now();
    await poll(ns, { at: t0 });
    const b = await pushImage({ info, repository, tag: 'v1' });
    expect((await poll(ns, { at: t0 + 6 * MINUTE })).summary.imageUpdatesCreated).toBe(1);
    await retag(open.host, repository, a, 'v1');
    expect((await poll(ns, { at: t0 + 12 * MINUTE })).summary.imageUpdatesCreated).toBe(1);
    await retag(open.host, repository, b, 'v1');
    expect((await poll(ns, { at: t0 + 18 * MINUTE })).summary.imageUpdatesCreated).toBe(1);
    // A rerun (a retried CronJob) finds the same change and its own record: nothing new.
    expect((await poll(ns, { at: t0 + 24 * MINUTE })).summary).toMatchObject({
      unchanged: 1,
      imageUpdatesCreated: 0,
    });

    const updates = await listImageUpdates(clients, ns);
    const expected = [
      [imageUpdateName('web', b), a, b],
      [imageUpdateName('web', a), b, a],
      [`${imageUpdateName('web', b)}-2`, a, b],
    ].sort((x, y) => x[0]!.localeCompare(y[0]!));
    expect(updates.map((u) => [u.metadata!.name, u.spec.fromDigest, u.spec.toDigest])).toEqual(expected);
    expect((await getWatchedImage(clients, ns, 'web')).status!.digest).toBe(b);
  });

  it('on first sight, gives a Deployment pinned to another digest an ImageUpdate to the baseline', async () => {
    const ns = await namespace('pinned');
    const repository = repo('pinned');
    const old = await pushImage({ info, repository, tag: 'v1' });
    const current = await pushImage({ info, repository, tag: 'v1' });
    const same = await pushImage({ info, repository: repo('pinned-same'), tag: 'v1' });
    await createDeployment(ns, 'web', `${open.host}/${repository}:v1@${old}`);
    await createDeployment(ns, 'api', `${open.host}/${repo('pinned-same')}:v1@${same}`);
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repository}:v1` });
    await createWatchedImage(clients, ns, 'api', { image: `${open.host}/${repo('pinned-same')}:v1` });
    const t0 = Date.now();

    const { summary } = await poll(ns, { at: t0 });
    expect(summary).toMatchObject({ baselined: 2, imageUpdatesCreated: 1 });
    const updates = await listImageUpdates(clients, ns);
    expect(updates).toHaveLength(1);
    expect(updates[0]!.metadata!.name).toBe(imageUpdateName('web', current));
    expect(updates[0]!.spec).toMatchObject({ watchedImage: 'web', fromDigest: old, toDigest: current });
    expect((await getWatchedImage(clients, ns, 'web')).status!.digest).toBe(current);
    expect((await getWatchedImage(clients, ns, 'api')).status!.digest).toBe(same);

    expect((await poll(ns, { at: t0 + 6 * MINUTE })).summary).toMatchObject({
      unchanged: 2,
      imageUpdatesCreated: 0,
    });
    expect(await listImageUpdates(clients, ns)).toHaveLength(1);
  });

  it('--dry-run resolves and reports but writes nothing', async () => {
    const ns = await namespace('dry-run');
    await pushImage({ info, repository: repo('dry'), tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repo('dry')}:v1` });
    const { summary } = await poll(ns, { dryRun: true });
    expect(summary).toMatchObject({ checked: 1, baselined: 1 });
    expect((await getWatchedImage(clients, ns, 'web')).status).toBeUndefined();
  });
});

describe('credentials', () => {
  const registries = { basic, token } as const;
  const sources = [
    'spec.pullSecrets (dockerconfigjson)',
    "a Deployment's imagePullSecrets",
    "the Deployment's ServiceAccount's imagePullSecrets",
    'a legacy kubernetes.io/dockercfg secret',
  ] as const;
  const digests: Record<string, string> = {};

  beforeAll(async () => {
    for (const name of ['basic', 'token'] as const) {
      digests[name] = await pushImage({
        info,
        registry: name,
        repository: repo(`private-${name}`),
        tag: 'v1',
      });
    }
  });

  describe.each(['basic', 'token'] as const)('%s-auth registry', (name) => {
    const endpoint = registries[name];
    const image = () => `${endpoint.host}/${repo(`private-${name}`)}:v1`;

    it.each(sources)('resolves with credentials from %s', async (source) => {
      const ns = await namespace(`creds-${name}`);
      const { username, password } = endpoint as { username: string; password: string };
      const spec: Parameters<typeof createWatchedImage>[3] = { image: image() };
      if (source === 'spec.pullSecrets (dockerconfigjson)') {
        await core.createNamespacedSecret({
          namespace: ns,
          body: dockerConfigJsonSecret('registry', endpoint.host, username, password),
        });
        spec.pullSecrets = [{ name: 'registry' }];
      } else if (source === "a Deployment's imagePullSecrets") {
        // A URL-shaped key, as `docker login` writes for some registries: the scheme is ignored.
        await core.createNamespacedSecret({
          namespace: ns,
          body: dockerConfigJsonSecret('registry', `https://${endpoint.host}`, username, password),
        });
        await createDeployment(ns, 'app', image(), { imagePullSecrets: [{ name: 'registry' }] });
      } else if (source === "the Deployment's ServiceAccount's imagePullSecrets") {
        await core.createNamespacedSecret({
          namespace: ns,
          body: dockerConfigJsonSecret('registry', endpoint.host, username, password),
        });
        await core.createNamespacedServiceAccount({
          namespace: ns,
          body: { metadata: { name: 'puller' }, imagePullSecrets: [{ name: 'registry' }] },
        });
        await createDeployment(ns, 'app', image(), { serviceAccountName: 'puller' });
      } else {
        await core.createNamespacedSecret({
          namespace: ns,
          body: dockerCfgSecret('legacy', `${endpoint.host}/v2/`, username, password),
        });
        spec.pullSecrets = [{ name: 'legacy' }];
      }
      await createWatchedImage(clients, ns, 'private', spec);

      const { summary, stats, logs } = await poll(ns);
      expect(summary).toMatchObject({ checked: 1, baselined: 1, failed: 0 });
      const wi = await getWatchedImage(clients, ns, 'private');
      expect(condition(wi, 'Resolved')).toMatchObject({ status: 'True', reason: 'Resolved' });
      expect(wi.status!.digest).toBe(digests[name]);
      if (name === 'token') expect(stats).toMatchObject({ token: 1, head: 2, get: 0 });
      else expect(stats).toMatchObject({ token: 0, head: 2, get: 0 });
      expect(logs.length).toBeGreaterThan(0);
      expect(logs.join('\n')).not.toContain(password);
      expect(logs.join('\n')).not.toContain(b64(`${username}:${password}`));
    });

    it('without credentials: Resolved False, Unauthorized, saying to add a pullSecret', async () => {
      const ns = await namespace(`anon-${name}`);
      await createDeployment(ns, 'app', image());
      await createWatchedImage(clients, ns, 'private', { image: image() });
      const { summary } = await poll(ns);
      expect(summary).toMatchObject({ checked: 1, failed: 1, baselined: 0 });
      const wi = await getWatchedImage(clients, ns, 'private');
      expect(wi.status!.digest).toBeUndefined();
      expect(wi.status!.lastCheckedTime).toBeDefined();
      const resolved = condition(wi, 'Resolved')!;
      expect(resolved).toMatchObject({ status: 'False', reason: 'Unauthorized' });
      expect(resolved.message).toContain(`refused anonymous access to ${repo(`private-${name}`)}`);
      expect(resolved.message).toContain(
        `add a pullSecret (kubernetes.io/dockerconfigjson) with credentials for ${endpoint.host}`,
      );
    });

    it('with a wrong password: Unauthorized, saying the credentials were rejected, never quoting them', async () => {
      const ns = await namespace(`wrong-${name}`);
      await core.createNamespacedSecret({
        namespace: ns,
        body: dockerConfigJsonSecret('registry', endpoint.host, endpoint.username!, 'not-the-password-42'),
      });
      await createWatchedImage(clients, ns, 'private', {
        image: image(),
        pullSecrets: [{ name: 'registry' }],
      });
      const { logs } = await poll(ns);
      const resolved = condition(await getWatchedImage(clients, ns, 'private'), 'Resolved')!;
      expect(resolved).toMatchObject({ status: 'False', reason: 'Unauthorized' });
      expect(resolved.message).toContain(`credentials for ${endpoint.host} were rejected`);
      expect(resolved.message).not.toContain('not-the-password-42');
      expect(logs.join('\n')).not.toContain('not-the-password-42');
    });
  });

  it('a failed first check waits for the interval like any other, unless the spec is edited', async () => {
    const ns = await namespace('retry-failed');
    const image = `${token.host}/${repo('private-token')}:v1`;
    await createWatchedImage(clients, ns, 'private', { image });
    const t0 = Date.now();
    expect((await poll(ns, { at: t0 })).summary).toMatchObject({ failed: 1 });
    // No baseline yet, but asking again a minute later would only burn the registry's rate limit.
    const again = await poll(ns, { at: t0 + MINUTE });
    expect(again.summary).toMatchObject({ notDue: 1, checked: 0 });
    expect(again.stats.total).toBe(0);

    // Naming a pull secret edits the spec: checked at once.
    await core.createNamespacedSecret({
      namespace: ns,
      body: dockerConfigJsonSecret('registry', token.host, token.username!, token.password!),
    });
    await custom.patchNamespacedCustomObject(
      { ...WI, namespace: ns, name: 'private', body: { spec: { pullSecrets: [{ name: 'registry' }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    const fixed = await poll(ns, { at: t0 + MINUTE + 1000 });
    expect(fixed.summary).toMatchObject({ checked: 1, baselined: 1, failed: 0 });
    const wi = await getWatchedImage(clients, ns, 'private');
    expect(wi.status!.digest).toBe(digests.token);
    expect(condition(wi, 'Resolved')).toMatchObject({ status: 'True', observedGeneration: 2 });
  });

  it('a spec.pullSecrets entry naming a missing Secret fails clearly, without asking the registry', async () => {
    const ns = await namespace('missing-secret');
    await createWatchedImage(clients, ns, 'private', {
      image: `${basic.host}/${repo('private-basic')}:v1`,
      pullSecrets: [{ name: 'nope' }],
    });
    const { summary, stats } = await poll(ns);
    expect(summary).toMatchObject({ watchedImages: 1, checked: 1, failed: 1, resolutions: 0 });
    expect(stats.total).toBe(0);
    const resolved = condition(await getWatchedImage(clients, ns, 'private'), 'Resolved')!;
    expect(resolved).toMatchObject({ status: 'False', reason: 'SecretNotFound' });
    expect(resolved.message).toBe(
      `pull secret "nope" named in spec.pullSecrets does not exist in namespace ${ns}`,
    );
  });

  it('a pull secret of the wrong type fails clearly, naming the secret', async () => {
    const ns = await namespace('bad-secret');
    await core.createNamespacedSecret({
      namespace: ns,
      body: { metadata: { name: 'opaque' }, type: 'Opaque', data: { password: b64('x') } },
    });
    await createWatchedImage(clients, ns, 'private', {
      image: `${basic.host}/${repo('private-basic')}:v1`,
      pullSecrets: [{ name: 'opaque' }],
    });
    await poll(ns);
    const resolved = condition(await getWatchedImage(clients, ns, 'private'), 'Resolved')!;
    expect(resolved).toMatchObject({ status: 'False', reason: 'InvalidCredentials' });
    expect(resolved.message).toContain(`pull secret ${ns}/opaque: type is Opaque`);
  });
});

describe('registry failures', () => {
  it('a missing tag: NotFound', async () => {
    const ns = await namespace('not-found');
    await pushImage({ info, repository: repo('exists'), tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repo('exists')}:no-such-tag` });
    expect((await poll(ns)).summary).toMatchObject({ checked: 1, failed: 1 });
    const resolved = condition(await getWatchedImage(clients, ns, 'web'), 'Resolved')!;
    expect(resolved).toMatchObject({ status: 'False', reason: 'NotFound' });
    expect(resolved.message).toContain(
      `${open.host}/${repo('exists')}:no-such-tag not found on ${open.host}`,
    );
  });

  it('an unreachable registry (closed port): RegistryUnreachable', async () => {
    const ns = await namespace('unreachable');
    const host = `127.0.0.1:${await closedPort()}`;
    await createWatchedImage(clients, ns, 'web', { image: `${host}/acme/web:v1` });
    const { summary } = await poll(ns, { registries: hostOptions({ [host]: { plainHttp: true } }) });
    expect(summary).toMatchObject({ checked: 1, failed: 1 });
    const resolved = condition(await getWatchedImage(clients, ns, 'web'), 'Resolved')!;
    expect(resolved).toMatchObject({ status: 'False', reason: 'RegistryUnreachable' });
    expect(resolved.message).toContain(`connection to ${host} refused`);
  });

  it('5xx, 429 with Retry-After and a missing Docker-Content-Digest: conditions written, other images unaffected', async () => {
    const ns = await namespace('faults');
    const [p503, p429, pNoDigest] = await Promise.all(
      [0, 1, 2].map(() => startFaultProxy({ target: open.url })),
    );
    proxies.push(p503!, p429!, pNoDigest!);
    const images = {
      unavailable: `${p503!.host}/${repo('f-503')}:v1`,
      limited: `${p429!.host}/${repo('f-429')}:v1`,
      limited2: `${p429!.host}/${repo('f-429b')}:v1`,
      nodigest: `${pNoDigest!.host}/${repo('f-nodigest')}:v1`,
      healthy: `${open.host}/${repo('f-healthy')}:v1`,
    };
    const baseline: Record<string, string> = {};
    for (const [name, image] of Object.entries(images)) {
      const repository = image.slice(image.indexOf('/') + 1, image.lastIndexOf(':'));
      baseline[name] = await pushImage({ info, repository, tag: 'v1' });
      await createWatchedImage(clients, ns, name, { image });
    }
    const registries = hostOptions(
      Object.fromEntries([p503!, p429!, pNoDigest!].map((p) => [p.host, { plainHttp: true }])),
    );
    const t0 = Date.now();
    expect((await poll(ns, { at: t0, registries })).summary).toMatchObject({ baselined: 5, failed: 0 });

    p503!.mode = { kind: 'status', status: 503, times: 1000 };
    p429!.mode = { kind: 'rateLimit', retryAfter: '120' };
    pNoDigest!.mode = { kind: 'stripDigest' };
    for (const p of [p503!, p429!, pNoDigest!]) p.requests.length = 0;
    const moved = await pushImage({ info, repository: repo('f-healthy'), tag: 'v1' });

    const t1 = t0 + 6 * MINUTE;
    const { summary, stats } = await poll(ns, { at: t1, registries });
    expect(summary).toMatchObject({
      checked: 5,
      failed: 3,
      unchanged: 1,
      changed: 1,
      imageUpdatesCreated: 1,
    });
    expect(stats.get).toBe(1); // the GET fallback of the image without Docker-Content-Digest

    const read = async (name: string) => {
      const wi = await getWatchedImage(clients, ns, name);
      expect(wi.status!.digest, `${name} keeps its baseline`).toBe(
        name === 'healthy' ? moved : baseline[name],
      );
      expect(Date.parse(wi.status!.lastCheckedTime!)).toBe(t1);
      return condition(wi, 'Resolved')!;
    };
    const unavailable = await read('unavailable');
    expect(unavailable).toMatchObject({ status: 'False', reason: 'RegistryError' });
    expect(unavailable.message).toContain(`registry ${p503!.host} answered 503`);
    expect(p503!.requests.map((r) => r.method)).toEqual(['HEAD', 'HEAD', 'HEAD']);

    const limited = await read('limited');
    expect(limited).toMatchObject({ status: 'False', reason: 'RateLimited' });
    expect(limited.message).toContain(`registry ${p429!.host} answered 429 Too Many Requests`);
    expect(limited.message).toContain('retry after 2 min');
    // The registry is paused after its 429: the other image there is RateLimited too, and at most the
    // request already in flight (concurrency) reaches it.
    expect((await read('limited2')).reason).toBe('RateLimited');
    expect(p429!.requests.length).toBeLessThanOrEqual(2);

    const nodigest = await read('nodigest');
    expect(nodigest).toMatchObject({ status: 'True', reason: 'Resolved' });
    expect(pNoDigest!.requests.map((r) => r.method)).toEqual(['HEAD', 'GET']);

    expect(await read('healthy')).toMatchObject({ status: 'True', reason: 'Resolved' });
    const updates = await listImageUpdates(clients, ns);
    expect(updates.map((u) => u.spec.watchedImage)).toEqual(['healthy']);

    // Once the registries recover, Resolved flips back to True, with a new lastTransitionTime.
    for (const p of [p503!, p429!, pNoDigest!]) p.mode = { kind: 'pass' };
    const t2 = t1 + 6 * MINUTE;
    expect((await poll(ns, { at: t2, registries })).summary).toMatchObject({ failed: 0, unchanged: 5 });
    const recovered = condition(await getWatchedImage(clients, ns, 'unavailable'), 'Resolved')!;
    expect(recovered).toMatchObject({ status: 'True', lastTransitionTime: kubeTime(new Date(t2)) });
  });
});

describe('every outcome is recorded', () => {
  it('an ImageUpdate the API refuses (a quota): Resolved=False ImageUpdateFailed, baseline kept, retried after the interval', async () => {
    const ns = await namespace('refused');
    const repository = repo('refused');
    const first = await pushImage({ info, repository, tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repository}:v1` });
    const t0 = Date.now();
    expect((await poll(ns, { at: t0 })).summary).toMatchObject({ baselined: 1 });
    await core.createNamespacedResourceQuota({
      namespace: ns,
      body: {
        metadata: { name: 'no-updates' },
        spec: { hard: { 'count/imageupdates.kubewatcher.io': '0' } },
      },
    });
    const second = await pushImage({ info, repository, tag: 'v1' });

    const t1 = t0 + 6 * MINUTE;
    expect((await poll(ns, { at: t1 })).summary).toMatchObject({ changed: 1, imageUpdatesCreated: 0 });
    const web = await getWatchedImage(clients, ns, 'web');
    expect(web.status).toMatchObject({ digest: first });
    expect(Date.parse(web.status!.lastCheckedTime!)).toBe(t1);
    const resolved = condition(web, 'Resolved')!;
    expect(resolved).toMatchObject({ status: 'False', reason: 'ImageUpdateFailed' });
    expect(resolved.message).toContain(`the tag moved to ${second} but ImageUpdate`);
    expect(resolved.message).toContain('forbidden');
    // Checked and recorded: not due again until the interval has passed.
    expect((await poll(ns, { at: t1 + MINUTE })).summary).toMatchObject({ notDue: 1, checked: 0 });

    await core.deleteNamespacedResourceQuota({ namespace: ns, name: 'no-updates' });
    expect((await poll(ns, { at: t1 + 6 * MINUTE })).summary).toMatchObject({
      changed: 1,
      imageUpdatesCreated: 1,
    });
    expect((await getWatchedImage(clients, ns, 'web')).status).toMatchObject({ digest: second });
  });

  it.each([
    ['94 characters', `web-${'x'.repeat(90)}`],
    ['64 characters, one over a label value', `web-${'x'.repeat(60)}`],
    // The longest object name: the ImageUpdate's name (<name>-<10 hex>) must be cut to fit too.
    [
      '253 characters, the longest name',
      `web-${'x'.repeat(59)}.${'y'.repeat(63)}.${'z'.repeat(63)}.${'w'.repeat(61)}`,
    ],
  ])(
    'a WatchedImage name of %s: the ImageUpdate is created, with a name and a label that fit',
    async (_what, name) => {
      const ns = await namespace('long-name');
      const repository = repo('long-name');
      await pushImage({ info, repository, tag: 'v1' });
      await createWatchedImage(clients, ns, name, { image: `${open.host}/${repository}:v1` });
      const t0 = Date.now();
      await poll(ns, { at: t0 });
      await pushImage({ info, repository, tag: 'v1' });
      expect((await poll(ns, { at: t0 + 6 * MINUTE })).summary).toMatchObject({
        changed: 1,
        imageUpdatesCreated: 1,
      });
      const [update] = await listImageUpdates(clients, ns);
      const label = update!.metadata!.labels![LABEL.watchedImage]!;
      expect(label.length).toBeLessThanOrEqual(63);
      expect(label.startsWith('web-xxx')).toBe(true);
      expect(update!.metadata!.name!.length).toBeLessThanOrEqual(253);
      expect(update!.spec).toMatchObject({ watchedImage: name });
    },
  );

  it('a workload pinned to a digest other than sha256: reported on the condition, no ImageUpdate', async () => {
    const ns = await namespace('sha512-pin');
    const repository = repo('sha512-pin');
    const digest = await pushImage({ info, repository, tag: 'v1' });
    const sha512 = `sha512:${'ab'.repeat(64)}`;
    await createDeployment(ns, 'web', `${open.host}/${repository}:v1@${sha512}`);
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repository}:v1` });
    expect((await poll(ns)).summary).toMatchObject({ baselined: 1, imageUpdatesCreated: 0 });
    const web = await getWatchedImage(clients, ns, 'web');
    expect(web.status).toMatchObject({ digest });
    expect(condition(web, 'Resolved')!.message).toContain(
      `a workload pins ${sha512}, which Kubewatcher cannot record (sha256 digests only)`,
    );
    expect(await listImageUpdates(clients, ns)).toEqual([]);
  });

  it('a run out of budget defers the rest, writes nothing for them, and checks them first next run', async () => {
    const ns = await namespace('budget');
    const hanging = await startFaultProxy({ target: open.url });
    proxies.push(hanging);
    hanging.mode = { kind: 'hang' };
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    for (const name of names) {
      await createWatchedImage(clients, ns, name, { image: `${hanging.host}/${repo(`budget-${name}`)}:v1` });
    }
    const registries = hostOptions({ [hanging.host]: { plainHttp: true } });
    const run = () => poll(ns, { registries, budgetMs: 10_000, timeoutMs: 2_000, concurrency: 1 });

    const first = await run();
    expect(first.summary.deferred).toBeGreaterThan(0);
    expect(first.summary.checked + first.summary.deferred).toBe(names.length);
    const statuses = await Promise.all(names.map((n) => getWatchedImage(clients, ns, n)));
    const checked = names.filter((_, i) => statuses[i]!.status?.lastCheckedTime);
    const deferred = names.filter((n) => !checked.includes(n));
    expect(checked).toHaveLength(first.summary.checked);
    for (const wi of statuses.filter((w) => w.status?.lastCheckedTime)) {
      expect(condition(wi, 'Resolved')).toMatchObject({ status: 'False', reason: 'RegistryUnreachable' });
    }

    // The next run starts with the ones the first left: never checked sorts before checked.
    const before = hanging.requests.length;
    const second = await run();
    const order = hanging.requests
      .slice(before)
      .map((r) => /budget-([a-f])\//.exec(r.path)?.[1])
      .filter(Boolean);
    expect(order.slice(0, Math.min(deferred.length, second.summary.checked))).toEqual(
      deferred.slice(0, Math.min(deferred.length, second.summary.checked)),
    );
  });
});

describe('rate limits across runs', () => {
  const limited = (r: { status: number }) => r.status === 429;

  /** One image under several tags (no new content), served through a fault proxy of its own. */
  async function proxiedTags(name: string, tags: readonly string[]) {
    const proxy = await startFaultProxy({ target: open.url });
    proxies.push(proxy);
    const repository = repo(name);
    const digest = await pushImage({ info, repository, tag: tags[0]! });
    for (const tag of tags.slice(1)) await retag(open.host, repository, digest, tag);
    const registries = hostOptions({ [proxy.host]: { plainHttp: true } });
    return { proxy, digest, registries, image: (tag: string) => `${proxy.host}/${repository}:${tag}` };
  }

  it('paces checks by the budget a registry reports, across runs, without ever being answered 429', async () => {
    const ns = await namespace('budget');
    const tags = Array.from({ length: 12 }, (_, i) => `t${i}`);
    const { proxy, digest, registries, image } = await proxiedTags('budget', tags);
    const watch = async (from: number, to: number) => {
      for (let i = from; i < to; i++)
        await createWatchedImage(clients, ns, `wi-${i}`, { image: image(`t${i}`) });
    };
    proxy.mode = { kind: 'budget', limit: 10, remaining: 10, windowSeconds: 3600 };

    await watch(0, 3);
    const t0 = Date.now();
    const first = await poll(ns, { at: t0, registries });
    expect(first.summary).toMatchObject({ checked: 3, baselined: 3, deferred: 0 });
    const figures = (await getWatchedImage(clients, ns, 'wi-0')).status!.rateLimit!;
    expect(figures).toMatchObject({ limit: 10, windowSeconds: 3600 });

    // 7 left, 1 kept in reserve: 6 of the 9 new WatchedImages are checked, 3 wait.
    await watch(3, 12);
    const second = await poll(ns, { at: t0 + 1000, registries });
    expect(second.summary).toMatchObject({ checked: 6, baselined: 6, deferred: 3 });
    expect(second.stats.head).toBe(6);
    expect(second.logs.some((l) => l.includes('registry budget nearly spent'))).toBe(true);

    // 1 left, the reserve: nothing is sent, the 3 stay due.
    const before = proxy.requests.length;
    const third = await poll(ns, { at: t0 + 2000, registries });
    expect(third.summary).toMatchObject({ checked: 0, deferred: 3 });
    expect(proxy.requests.length).toBe(before);

    // Half the window later half the budget is back (the proxy's window resets all of it): 5 more
    // lookups, the 3 never checked among them.
    proxy.mode = { kind: 'budget', limit: 10, remaining: 10, windowSeconds: 3600 };
    const fourth = await poll(ns, { at: t0 + 1000 + 30 * MINUTE, registries });
    expect(fourth.summary).toMatchObject({ checked: 5, deferred: 7 });
    for (const name of ['wi-9', 'wi-10', 'wi-11'])
      expect((await getWatchedImage(clients, ns, name)).status?.digest, name).toBe(digest);
    expect(proxy.requests.filter(limited)).toEqual([]);
  });

  it("remembers a registry's pause after a 429 (Retry-After): the next run sends it nothing until the pause ends", async () => {
    const ns = await namespace('pause');
    const { proxy, registries, image } = await proxiedTags('pause', ['a', 'b', 'c']);
    for (const tag of ['a', 'b']) await createWatchedImage(clients, ns, tag, { image: image(tag) });
    const t0 = Date.now();
    expect((await poll(ns, { at: t0, registries })).summary).toMatchObject({ baselined: 2 });

    proxy.mode = { kind: 'rateLimit', retryAfter: '600' };
    const t1 = t0 + 6 * MINUTE;
    expect((await poll(ns, { at: t1, registries })).summary).toMatchObject({ checked: 2, failed: 2 });
    const paused = (await getWatchedImage(clients, ns, 'a')).status!;
    expect(Date.parse(paused.rateLimit!.pausedUntil!)).toBeGreaterThanOrEqual(t1 + 590_000);
    expect(paused.conditions!.find((c) => c.type === 'Resolved')).toMatchObject({ reason: 'RateLimited' });

    // A new WatchedImage is due at once, but its registry is still paused: no request goes there.
    await createWatchedImage(clients, ns, 'c', { image: image('c') });
    const before = proxy.requests.length;
    const during = await poll(ns, { at: t1 + MINUTE, registries });
    expect(during.summary).toMatchObject({ checked: 0, deferred: 1 });
    expect(proxy.requests.length).toBe(before);
    expect(during.logs.some((l) => l.includes('registry paused after a 429'))).toBe(true);

    // Once the pause has ended, everything due is checked again and the pause is cleared.
    proxy.mode = { kind: 'pass' };
    const after = await poll(ns, { at: t1 + 11 * MINUTE, registries });
    expect(after.summary).toMatchObject({ checked: 3, failed: 0, deferred: 0 });
    const recovered = (await getWatchedImage(clients, ns, 'a')).status!;
    expect(recovered.rateLimit?.pausedUntil).toBeUndefined();
    expect(recovered.conditions!.find((c) => c.type === 'Resolved')).toMatchObject({ status: 'True' });
  });
});

describe('the check record', () => {
  /** An empty check record ConfigMap in `ns`, as the manifests ship it. */
  async function shippedRecord(ns: string): Promise<ObjectRef> {
    await core.createNamespacedConfigMap({ namespace: ns, body: { metadata: { name: 'checks' } } });
    return { namespace: ns, name: 'checks' };
  }
  async function recorded(ref: ObjectRef): Promise<Map<string, number>> {
    const cm = await core.readNamespacedConfigMap(ref);
    return parseCheckRecord(cm.data?.[CHECK_RECORD_KEY]).checks;
  }
  /** uid → lastCheckedTime (ms) of every WatchedImage in `ns`. */
  async function lastChecked(ns: string): Promise<Map<string, number>> {
    const list = (await custom.listNamespacedCustomObject({ ...WI, namespace: ns })) as {
      items: WatchedImage[];
    };
    return new Map(
      list.items.map((wi) => [wi.metadata.uid!, Date.parse(wi.status?.lastCheckedTime ?? '')] as const),
    );
  }
  async function watchMany(ns: string, name: string, count: number): Promise<void> {
    const image = `${open.host}/${repo(name)}:v1`;
    for (let i = 0; i < count; i++) await createWatchedImage(clients, ns, `${name}-${i}`, { image });
  }

  it('halves the scheduled writes: half recorded, half written, the other way round next interval, nothing asked twice', async () => {
    const ns = await namespace('record');
    const checkRecord = await shippedRecord(ns);
    await pushImage({ info, repository: repo('record'), tag: 'v1' });
    await watchMany(ns, 'record', 40);
    const t0 = Date.now();
    const first = await poll(ns, { at: t0, checkRecord });
    expect(first.summary).toMatchObject({ baselined: 40, statusWrites: 40, checksRecorded: 0 });
    // Nothing to record: the ConfigMap is not even written.
    expect((await core.readNamespacedConfigMap(checkRecord)).data).toBeUndefined();

    const t1 = t0 + 5 * MINUTE;
    const uids = [...(await lastChecked(ns)).keys()];
    const leftAtT1 = uids.filter((uid) =>
      mayLeaveUnwritten({ uid, lastWritten: t0, intervalMs: 5 * MINUTE, now: t1 }),
    );
    expect(leftAtT1.length).toBeGreaterThan(0);
    expect(leftAtT1.length).toBeLessThan(40);
    const due = await poll(ns, { at: t1, checkRecord });
    expect(due.summary).toMatchObject({
      checked: 40,
      unchanged: 40,
      checksRecorded: leftAtT1.length,
      statusWrites: 40 - leftAtT1.length,
    });
    expect(due.stats.head).toBe(1);
    expect(await recorded(checkRecord)).toEqual(new Map(leftAtT1.map((uid) => [uid, t1])));
    const afterT1 = await lastChecked(ns);
    for (const [uid, at] of afterT1) expect(at).toBe(leftAtT1.includes(uid) ? t0 : t1);

    // A minute later the recorded checks count as checks: nothing is due, the registry is not asked.
    // A dry run reads the record too (and writes nothing): it reports what a real run would check.
    const dry = await poll(ns, { at: t1 + MINUTE, checkRecord, dryRun: true });
    expect(dry.summary).toMatchObject({ notDue: 40, checked: 0, statusWrites: 0 });
    expect(await recorded(checkRecord)).toEqual(new Map(leftAtT1.map((uid) => [uid, t1])));
    const minuteLater = await poll(ns, { at: t1 + MINUTE, checkRecord });
    expect(minuteLater.summary).toMatchObject({ notDue: 40, checked: 0, statusWrites: 0 });
    expect(minuteLater.stats.total).toBe(0);

    // Next interval: every recorded check is written now, and the other half goes into the record.
    const t2 = t1 + 5 * MINUTE;
    const next = await poll(ns, { at: t2, checkRecord });
    expect(next.summary).toMatchObject({
      checked: 40,
      statusWrites: leftAtT1.length,
      checksRecorded: 40 - leftAtT1.length,
    });
    const record = await recorded(checkRecord);
    expect([...record.keys()].sort()).toEqual(uids.filter((uid) => !leftAtT1.includes(uid)).sort());
    // LAST CHECKED is never more than one interval behind the newest check.
    for (const [uid, at] of await lastChecked(ns)) {
      expect(at).toBe(leftAtT1.includes(uid) ? t2 : t1);
      expect(t2 - at).toBeLessThanOrEqual(5 * MINUTE);
    }
  });

  it('a change found after a recorded check is written and gets its ImageUpdate; the record lets go of it', async () => {
    const ns = await namespace('record-change');
    const checkRecord = await shippedRecord(ns);
    await pushImage({ info, repository: repo('record-change'), tag: 'v1' });
    await watchMany(ns, 'record-change', 8);
    const t0 = Date.now();
    await poll(ns, { at: t0, checkRecord });
    const due = await poll(ns, { at: t0 + 5 * MINUTE, checkRecord });
    expect(due.summary.checksRecorded).toBeGreaterThan(0);

    const moved = await pushImage({ info, repository: repo('record-change'), tag: 'v1' });
    const changed = await poll(ns, { at: t0 + 10 * MINUTE, checkRecord });
    expect(changed.summary).toMatchObject({
      checked: 8,
      changed: 8,
      imageUpdatesCreated: 8,
      statusWrites: 8,
      checksRecorded: 0,
    });
    expect((await listImageUpdates(clients, ns)).map((u) => u.spec.toDigest)).toEqual(Array(8).fill(moved));
    expect((await recorded(checkRecord)).size).toBe(0);
    for (const at of (await lastChecked(ns)).values()) expect(at).toBe(t0 + 10 * MINUTE);
  });

  it('without the ConfigMap, or when it cannot be saved, every scheduled check writes its status', async () => {
    const ns = await namespace('record-fallback');
    await pushImage({ info, repository: repo('record-fallback'), tag: 'v1' });
    await watchMany(ns, 'record-fallback', 10);
    const t0 = Date.now();
    await poll(ns, { at: t0 });

    const missing = await poll(ns, { at: t0 + 5 * MINUTE, checkRecord: { namespace: ns, name: 'absent' } });
    expect(missing.summary).toMatchObject({ checked: 10, statusWrites: 10, checksRecorded: 0 });
    expect(missing.logs.join('\n')).toContain('check record ConfigMap not found');

    const checkRecord = await shippedRecord(ns);
    const refusing = clusterWith({
      replaceCheckRecord: async () => {
        throw new Error('configmaps "checks" is forbidden');
      },
    });
    const refused = await poll(ns, { at: t0 + 10 * MINUTE, checkRecord, cluster: refusing });
    expect(refused.summary).toMatchObject({ checked: 10, statusWrites: 10, checksRecorded: 0 });
    expect(refused.logs.join('\n')).toContain(
      'check record not saved: its checks are written to their status',
    );
    for (const at of (await lastChecked(ns)).values()) expect(at).toBe(t0 + 10 * MINUTE);
  });

  it("meets another run that changed the record meanwhile: reads it again and keeps both runs' checks", async () => {
    const ns = await namespace('record-conflict');
    const checkRecord = await shippedRecord(ns);
    await pushImage({ info, repository: repo('record-conflict'), tag: 'v1' });
    await watchMany(ns, 'record-conflict', 10);
    const t0 = Date.now();
    await poll(ns, { at: t0, checkRecord });
    // Between this run's read and its write, another writes an entry of its own.
    const otherRun = {
      checkedAt: new Date(t0 + 4 * MINUTE).toISOString(),
      uids: ['uid-of-another-namespace'],
    };
    let raced = false;
    const racing = clusterWith({
      readCheckRecord: async (ref) => {
        const stored = await cluster.readCheckRecord(ref);
        if (raced) return stored;
        raced = true;
        await core.patchNamespacedConfigMap(
          {
            ...ref,
            body: { data: { [CHECK_RECORD_KEY]: JSON.stringify({ version: 1, checks: [otherRun] }) } },
          },
          setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
        );
        return stored;
      },
    });
    const due = await poll(ns, { at: t0 + 5 * MINUTE, checkRecord, cluster: racing });
    expect(due.summary.checksRecorded).toBeGreaterThan(0);
    expect(due.summary.statusWrites + due.summary.checksRecorded).toBe(10);
    const record = await recorded(checkRecord);
    expect(record.get('uid-of-another-namespace')).toBe(t0 + 4 * MINUTE);
    expect(record.size).toBe(due.summary.checksRecorded + 1);
  });
});

describe('status ownership', () => {
  it("leaves the controller's status fields alone (server-side apply, own field manager)", async () => {
    const ns = await namespace('ownership');
    await pushImage({ info, repository: repo('owned'), tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repo('owned')}:v1` });
    const ready: Condition = {
      type: 'Ready',
      status: 'True',
      reason: 'WorkloadsFound',
      message: 'watching 3 workload(s)',
      lastTransitionTime: kubeTime(new Date(Date.now() - 3_600_000)),
      observedGeneration: 1,
    };
    const controllerApply = (status: Record<string, unknown>) =>
      custom.patchNamespacedCustomObjectStatus(
        {
          ...WI,
          namespace: ns,
          name: 'web',
          body: {
            apiVersion: API_VERSION,
            kind: WATCHED_IMAGE.kind,
            metadata: { name: 'web', namespace: ns },
            status,
          },
          fieldManager: FIELD_MANAGER.controller,
          force: true,
        },
        serverSideApply,
      );
    await controllerApply({ workloadCount: 3, latestUpdate: 'web-0123456789', conditions: [ready] });

    const t0 = Date.now();
    await poll(ns, { at: t0 });
    await pushImage({ info, repository: repo('owned'), tag: 'v1' });
    await poll(ns, { at: t0 + 6 * MINUTE }); // a change: the poller writes every one of its fields

    const wi = await getWatchedImage(clients, ns, 'web');
    expect(wi.status).toMatchObject({ workloadCount: 3, latestUpdate: 'web-0123456789' });
    expect(condition(wi, 'Ready')).toEqual(ready);
    expect(condition(wi, 'Resolved')).toMatchObject({ status: 'True' });
    const managers = Object.fromEntries(
      ((wi.metadata as { managedFields?: V1ManagedFieldsEntry[] }).managedFields ?? [])
        .filter((m) => m.subresource === 'status')
        .map((m) => [m.manager, JSON.stringify(m.fieldsV1)]),
    );
    expect(managers[FIELD_MANAGER.poller]).toContain('f:digest');
    expect(managers[FIELD_MANAGER.poller]).not.toContain('f:workloadCount');
    expect(managers[FIELD_MANAGER.poller]).toContain('k:{\\"type\\":\\"Resolved\\"}');
    expect(managers[FIELD_MANAGER.poller]).not.toContain('k:{\\"type\\":\\"Ready\\"}');
    expect(managers[FIELD_MANAGER.controller]).toContain('f:workloadCount');

    // And the other way round: the controller's next apply leaves the poller's baseline alone.
    await controllerApply({
      workloadCount: 2,
      conditions: [{ ...ready, message: 'watching 2 workload(s)' }],
    });
    const after = await getWatchedImage(clients, ns, 'web');
    expect(after.status!.digest).toBe(wi.status!.digest);
    expect(condition(after, 'Resolved')).toEqual(condition(wi, 'Resolved'));
  });
});

describe('idempotence', () => {
  it('two runs at once create exactly one ImageUpdate per change', async () => {
    const ns = await namespace('concurrent');
    const names = ['a', 'b', 'c'];
    for (const name of names) {
      await pushImage({ info, repository: repo(`concurrent-${name}`), tag: 'v1' });
      await createWatchedImage(clients, ns, name, { image: `${open.host}/${repo(`concurrent-${name}`)}:v1` });
    }
    const t0 = Date.now();
    await poll(ns, { at: t0 });
    const moved: Record<string, string> = {};
    for (const name of names)
      moved[name] = await pushImage({ info, repository: repo(`concurrent-${name}`), tag: 'v1' });

    // Both runs read the WatchedImages before either writes anything: both see every change.
    let listed = 0;
    let release = () => {};
    const bothListed = new Promise<void>((resolve) => {
      release = resolve;
    });
    const racing = clusterWith({
      listWatchedImages: async (n) => {
        const items = await cluster.listWatchedImages(n);
        if (++listed === 2) release();
        await bothListed;
        return items;
      },
    });
    const at = t0 + 6 * MINUTE;
    const runs = await Promise.all([poll(ns, { at, cluster: racing }), poll(ns, { at, cluster: racing })]);
    expect(runs.map((r) => r.summary.changed)).toEqual([3, 3]);
    expect(runs[0]!.summary.imageUpdatesCreated + runs[1]!.summary.imageUpdatesCreated).toBe(3);
    const updates = await listImageUpdates(clients, ns);
    expect(updates.map((u) => u.metadata!.name)).toEqual(
      names.map((n) => imageUpdateName(n, moved[n]!)).sort((x, y) => x.localeCompare(y)),
    );
    for (const name of names)
      expect((await getWatchedImage(clients, ns, name)).status!.digest).toBe(moved[name]);
  });

  it('a run killed between the ImageUpdate and the status write: the next run adds nothing and moves the baseline', async () => {
    const ns = await namespace('killed');
    const first = await pushImage({ info, repository: repo('killed'), tag: 'v1' });
    await pushImage({ info, repository: repo('killed-other'), tag: 'v1' });
    await createWatchedImage(clients, ns, 'web', { image: `${open.host}/${repo('killed')}:v1` });
    await createWatchedImage(clients, ns, 'other', { image: `${open.host}/${repo('killed-other')}:v1` });
    const t0 = Date.now();
    await poll(ns, { at: t0 });
    const second = await pushImage({ info, repository: repo('killed'), tag: 'v1' });

    // The process "dies" right after creating web's ImageUpdate: its status write never happens.
    const dying = clusterWith({
      applyStatus: async (wi, status) => {
        if (wi.metadata.name === 'web') throw new Error('killed');
        await cluster.applyStatus(wi, status);
      },
    });
    const killed = await poll(ns, { at: t0 + 6 * MINUTE, cluster: dying });
    expect(killed.summary).toMatchObject({ changed: 1, imageUpdatesCreated: 1 });
    expect((await getWatchedImage(clients, ns, 'web')).status!.digest).toBe(first);
    expect(Date.parse((await getWatchedImage(clients, ns, 'other')).status!.lastCheckedTime!)).toBe(
      t0 + 6 * MINUTE,
    );
    expect(killed.logs.some((l) => l.includes('could not record the result') && l.includes('killed'))).toBe(
      true,
    );

    // web was never marked checked, so the next run takes it at once.
    const next = await poll(ns, { at: t0 + 6 * MINUTE + 1000 });
    expect(next.summary).toMatchObject({ checked: 1, notDue: 1, changed: 1, imageUpdatesCreated: 0 });
    const updates = await listImageUpdates(clients, ns);
    expect(updates.map((u) => [u.metadata!.name, u.spec.fromDigest, u.spec.toDigest])).toEqual([
      [imageUpdateName('web', second), first, second],
    ]);
    expect((await getWatchedImage(clients, ns, 'web')).status!.digest).toBe(second);
  });
});

describe('request budget', () => {
  it('steady state sends no GET: one HEAD per distinct reference, one token per repository', async () => {
    const ns = await namespace('steady');
    await pushImage({ info, repository: repo('steady-a'), tag: 'v1' });
    await pushImage({ info, repository: repo('steady-b'), tag: 'v1' });
    await pushImage({ info, registry: 'token', repository: repo('steady-t'), tag: 'v1' });
    await pushImage({ info, registry: 'basic', repository: repo('steady-s'), tag: 'v1' });
    const secret = {
      metadata: { name: 'registries' },
      type: 'kubernetes.io/dockerconfigjson',
      data: {
        '.dockerconfigjson': b64(
          JSON.stringify({
            auths: {
              [token.host]: { auth: b64(`${token.username}:${token.password}`) },
              [basic.host]: { auth: b64(`${basic.username}:${basic.password}`) },
            },
          }),
        ),
      },
    };
    await core.createNamespacedSecret({ namespace: ns, body: secret });
    const pullSecrets = [{ name: 'registries' }];
    await createWatchedImage(clients, ns, 'a', { image: `${open.host}/${repo('steady-a')}:v1` });
    // Two WatchedImages of one reference: one lookup.
    await createWatchedImage(clients, ns, 'a2', { image: `${open.host}/${repo('steady-a')}:v1` });
    await createWatchedImage(clients, ns, 'b', { image: `${open.host}/${repo('steady-b')}:v1` });
    await createWatchedImage(clients, ns, 't', {
      image: `${token.host}/${repo('steady-t')}:v1`,
      pullSecrets,
    });
    await createWatchedImage(clients, ns, 's', {
      image: `${basic.host}/${repo('steady-s')}:v1`,
      pullSecrets,
    });
    const t0 = Date.now();
    expect((await poll(ns, { at: t0 })).summary).toMatchObject({ baselined: 5, resolutions: 4 });

    for (let run = 1; run <= 3; run++) {
      const { summary, stats } = await poll(ns, { at: t0 + run * 6 * MINUTE });
      expect(summary).toMatchObject({ checked: 5, unchanged: 5, failed: 0, resolutions: 4 });
      expect(summary.requests).toEqual({ head: 5, get: 0, token: 1, total: 6 });
      // 4 references: 4 HEADs, plus one anonymous HEAD to learn the token registry's challenge: its
      // realm is on another host that no realmHosts names, so the one remembered in status is not
      // used. The basic registry's remembered challenge is: its credentials go to it up front.
      expect(stats).toMatchObject({ head: 5, get: 0, token: 1 });
    }
    expect(await listImageUpdates(clients, ns)).toEqual([]);

    // A client kept across runs (a long-lived caller) knows the challenges and holds the token: each
    // run's summary counts only its own requests, here one HEAD per reference.
    const shared = new RegistryClient({ registries: hostOptions() });
    try {
      const first = await poll(ns, { at: t0 + 30 * MINUTE, registry: shared });
      expect(first.summary.requests).toEqual({ head: 5, get: 0, token: 1, total: 6 });
      const second = await poll(ns, { at: t0 + 36 * MINUTE, registry: shared });
      expect(second.summary.requests).toEqual({ head: 4, get: 0, token: 0, total: 4 });
      expect(shared.stats()).toMatchObject({ head: 9, get: 0, token: 1 });
    } finally {
      shared.close();
    }
  });
});

describe('request budget, many references', () => {
  it('one anonymous HEAD per registry, not per lookup in flight, and one token for all its repositories: M HEADs + 1, 1 token', async () => {
    const ns = await namespace('budget');
    await core.createNamespacedSecret({
      namespace: ns,
      body: dockerConfigJsonSecret('registry', token.host, token.username!, token.password!),
    });
    // 12 references in 3 repositories: more lookups than the run has in flight (8).
    for (let r = 0; r < 3; r++) {
      for (let t = 0; t < 4; t++) {
        await pushImage({ info, registry: 'token', repository: repo(`budget-${r}`), tag: `t${t}` });
        await createWatchedImage(clients, ns, `wi-${r}-${t}`, {
          image: `${token.host}/${repo(`budget-${r}`)}:t${t}`,
          pullSecrets: [{ name: 'registry' }],
        });
      }
    }
    const { summary } = await poll(ns);
    expect(summary).toMatchObject({ baselined: 12, failed: 0, resolutions: 12 });
    // The first lookup learns the registry's challenge and asks one token for the three repositories
    // (repeated scope parameters); the other eleven send it up front.
    expect(summary.requests).toEqual({ head: 13, get: 0, token: 1, total: 14 });
  });
});

describe('the registry challenge, remembered across runs', () => {
  const realmHost = new URL(token.tokenRealm).host;
  const challengeOf = (registry: string, realm = token.tokenRealm) => ({
    registry,
    scheme: 'Bearer',
    realm,
    service: token.tokenService,
  });

  /** The token registry behind a recording proxy, with three WatchedImages and their pull secret. */
  async function tokenRegistryNamespace(prefix: string): Promise<{ ns: string; proxy: FaultProxy }> {
    const ns = await namespace(prefix);
    const proxy = await startFaultProxy({ target: token.url });
    proxies.push(proxy);
    await core.createNamespacedSecret({
      namespace: ns,
      body: dockerConfigJsonSecret('registry', proxy.host, token.username!, token.password!),
    });
    for (const name of ['a', 'b', 'c']) {
      await pushImage({ info, registry: 'token', repository: repo(`${prefix}-${name}`), tag: 'v1' });
      await createWatchedImage(clients, ns, name, {
        image: `${proxy.host}/${repo(`${prefix}-${name}`)}:v1`,
        pullSecrets: [{ name: 'registry' }],
      });
    }
    return { ns, proxy };
  }

  /** The 401s the registry sent from request `from` on. */
  const unauthorized = (proxy: FaultProxy, from: number) =>
    proxy.requests.slice(from).filter((r) => r.status === 401).length;

  it('the second run fetches its token first: no 401, one token, one HEAD per reference', async () => {
    const { ns, proxy } = await tokenRegistryNamespace('remember');
    const registries = hostOptions({ [proxy.host]: { plainHttp: true, realmHosts: [realmHost] } });
    const t0 = Date.now();
    const first = await poll(ns, { at: t0, registries });
    expect(first.summary).toMatchObject({ baselined: 3, failed: 0 });
    expect(first.summary.requests).toEqual({ head: 4, get: 0, token: 1, total: 5 });
    expect(unauthorized(proxy, 0)).toBe(1);
    for (const name of ['a', 'b', 'c']) {
      expect((await getWatchedImage(clients, ns, name)).status!.registryChallenge).toEqual(
        challengeOf(proxy.host),
      );
    }

    for (let run = 1; run <= 2; run++) {
      const mark = proxy.requests.length;
      const { summary } = await poll(ns, { at: t0 + run * 6 * MINUTE, registries });
      expect(summary).toMatchObject({ checked: 3, unchanged: 3, failed: 0 });
      expect(summary.requests).toEqual({ head: 3, get: 0, token: 1, total: 4 });
      expect(unauthorized(proxy, mark)).toBe(0);
    }

    // Without realmHosts the realm, on another host than the registry, is not taken from memory:
    // the run learns it from the registry, as it would with no memory at all.
    const mark = proxy.requests.length;
    const plain = await poll(ns, {
      at: t0 + 18 * MINUTE,
      registries: hostOptions({ [proxy.host]: { plainHttp: true } }),
    });
    expect(plain.summary).toMatchObject({ checked: 3, unchanged: 3, failed: 0 });
    expect(plain.summary.requests).toEqual({ head: 4, get: 0, token: 1, total: 5 });
    expect(unauthorized(proxy, mark)).toBe(1);
  });

  it('a status edited to point the realm elsewhere sends nothing there: the run asks the registry and corrects the memory', async () => {
    const { ns, proxy } = await tokenRegistryNamespace('hostile');
    // The worst case: the other realm relays to the real token service, so it would even hand out
    // tokens that work. It must never see a request, least of all one with the pull secret.
    const thief = await startFaultProxy({ target: new URL(token.tokenRealm).origin });
    proxies.push(thief);
    const stolen = challengeOf(proxy.host, `${thief.url}/token`);
    const tamper = async () => {
      for (const name of ['a', 'b', 'c']) {
        await applyStatus(kc, {
          resource: WATCHED_IMAGE,
          namespace: ns,
          name,
          fieldManager: 'someone-else',
          status: { registryChallenge: stolen },
        });
      }
    };
    const t0 = Date.now();
    await poll(ns, { at: t0, registries: hostOptions({ [proxy.host]: { plainHttp: true } }) });

    // With an allow-list that names the real realm: refused there, as a live challenge would be.
    // Without one: refused for being on neither the registry nor a listed host.
    const cases: [string, Record<string, RegistryHostOptions>][] = [
      ['allow-list', hostOptions({ [proxy.host]: { plainHttp: true, realmHosts: [realmHost] } })],
      ['no allow-list', hostOptions({ [proxy.host]: { plainHttp: true } })],
    ];
    for (const [i, [what, registries]] of cases.entries()) {
      await tamper();
      expect((await getWatchedImage(clients, ns, 'a')).status!.registryChallenge).toEqual(stolen);
      const mark = proxy.requests.length;
      const { summary, logs } = await poll(ns, { at: t0 + (i + 1) * 6 * MINUTE, registries });
      expect(summary, what).toMatchObject({ checked: 3, unchanged: 3, failed: 0 });
      expect(thief.requests, what).toEqual([]);
      // Learned from the registry once, as a run with no memory does.
      expect(unauthorized(proxy, mark), what).toBe(1);
      expect(
        logs.some((l) => l.includes('not using the challenge remembered for this registry')),
        what,
      ).toBe(true);
      for (const name of ['a', 'b', 'c']) {
        expect((await getWatchedImage(clients, ns, name)).status!.registryChallenge, what).toEqual(
          challengeOf(proxy.host),
        );
      }
    }
  });
});

describe('the CLI', () => {
  const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  let work: string;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'poller-cli-'));
  });
  afterAll(async () => {
    await rm(work, { recursive: true, force: true });
  });

  async function cli(args: string[]): Promise<{ code: number | null; lines: string[] }> {
    const child = spawn(process.execPath, ['--conditions=@kubewatcher/source', main, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      out += c.toString();
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    const lines = out.split('\n').filter(Boolean);
    for (const line of lines) console.error(line); // shown only if the test fails
    return { code, lines };
  }

  it('runs once, exits 0 and ends with a summary line', async () => {
    const ns = await namespace('cli');
    const openDigest = await pushImage({ info, repository: repo('cli-open'), tag: 'v1' });
    const basicDigest = await pushImage({
      info,
      registry: 'basic',
      repository: repo('cli-basic'),
      tag: 'v1',
    });
    await core.createNamespacedSecret({
      namespace: ns,
      body: dockerConfigJsonSecret('registry', basic.host, basic.username!, basic.password!),
    });
    await createWatchedImage(clients, ns, 'open', { image: `${open.host}/${repo('cli-open')}:v1` });
    await createWatchedImage(clients, ns, 'basic', {
      image: `${basic.host}/${repo('cli-basic')}:v1`,
      pullSecrets: [{ name: 'registry' }],
    });
    const config = join(work, 'registries.yaml');
    await writeFile(config, `"${basic.host}":\n  caFile: ${JSON.stringify(basic.caFile)}\n`);
    const args = [
      '--kubeconfig',
      info.kubeconfig,
      '--namespace',
      ns,
      '--plain-http',
      open.host,
      '--registries-config',
      config,
      '--log-format',
      'json',
      // Not there: the run says so and writes every status, as without the flag.
      '--check-record',
      `${ns}/no-such-record`,
    ];

    const first = await cli(args);
    expect(first.code).toBe(0);
    expect(first.lines.map((l) => JSON.parse(l))).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message: expect.stringContaining('check record ConfigMap not found'),
        configMap: `${ns}/no-such-record`,
      }),
    );
    const summary = JSON.parse(first.lines.at(-1)!);
    expect(summary).toMatchObject({
      level: 'info',
      message: 'run complete',
      component: 'poller',
      dryRun: false,
      watchedImages: 2,
      checked: 2,
      baselined: 2,
      failed: 0,
      resolutions: 2,
      requests: { head: 3, get: 0, token: 0, total: 3 },
    });
    expect((await getWatchedImage(clients, ns, 'open')).status!.digest).toBe(openDigest);
    expect((await getWatchedImage(clients, ns, 'basic')).status!.digest).toBe(basicDigest);
    expect(first.lines.join('\n')).not.toContain(basic.password!);

    const second = await cli(args);
    expect(second.code).toBe(0);
    expect(JSON.parse(second.lines.at(-1)!)).toMatchObject({
      message: 'run complete',
      notDue: 2,
      checked: 0,
    });
  });

  it('exits 1 when it cannot reach the API server, 2 on bad flags', async () => {
    const kubeconfig = join(work, 'unreachable.kubeconfig');
    const original = await readFile(info.kubeconfig, 'utf8');
    await writeFile(kubeconfig, original.replace(info.apiServer, `https://127.0.0.1:${await closedPort()}`));
    const down = await cli(['--kubeconfig', kubeconfig, '--log-format', 'json']);
    expect(down.code).toBe(1);
    expect(JSON.parse(down.lines.at(-1)!)).toMatchObject({
      level: 'error',
      message: 'run failed: the poller could not read WatchedImages from the cluster',
    });

    const bad = await cli(['--kubeconfig', info.kubeconfig, '--log-format', 'json', '--timeout', 'soon']);
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.lines.at(-1)!).message).toContain('--timeout: invalid duration "soon"');

    const budget = await cli([
      '--kubeconfig',
      info.kubeconfig,
      '--log-format',
      'json',
      '--run-timeout',
      '0s',
    ]);
    expect(budget.code).toBe(2);
    expect(JSON.parse(budget.lines.at(-1)!).message).toContain('--run-timeout: invalid duration "0s"');

    for (const ref of ['kubewatcher-system', 'Kubewatcher/checks', 'a/b/c']) {
      const refused = await cli([
        '--kubeconfig',
        info.kubeconfig,
        '--log-format',
        'json',
        '--check-record',
        ref,
      ]);
      expect(refused.code).toBe(2);
      expect(JSON.parse(refused.lines.at(-1)!).message).toContain(
        `--check-record: "${ref}" is not NAMESPACE/NAME`,
      );
    }

    for (const [config, message] of [
      ['"*":\n  plainHttp: true\n', '--registries-config: *.plainHttp is not an option (realmHosts)'],
      [
        'ghcr.io:\n  realmHosts: ghcr.io\n',
        '--registries-config: ghcr.io.realmHosts must be a list of host[:port] names',
      ],
    ] as const) {
      const file = join(work, 'bad-registries.yaml');
      await writeFile(file, config);
      const refused = await cli([
        '--kubeconfig',
        info.kubeconfig,
        '--log-format',
        'json',
        '--registries-config',
        file,
      ]);
      expect(refused.code).toBe(2);
      expect(JSON.parse(refused.lines.at(-1)!).message).toContain(message);
    }
  });
});
