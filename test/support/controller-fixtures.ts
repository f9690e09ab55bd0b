/**
 * Fixtures for tests and benchmarks of the controller against a real local control plane: the CRDs,
 * namespaces, workloads, WatchedImages, ImageUpdates written the way the poller writes them, polling
 * helpers, and the controller run as a child process (`packages/controller/src/main.ts`).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  AppsV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  PatchStrategy,
  setHeaderOptions,
  type V1Container,
  type V1CronJob,
  type V1DaemonSet,
  type V1Deployment,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import {
  API_VERSION,
  FIELD_MANAGER,
  GROUP,
  IMAGE_UPDATE,
  type ImageUpdate,
  imageUpdateName,
  LABEL,
  nameLabelValue,
  shortDigest,
  VERSION,
  WATCHED_IMAGE,
  type WatchedImage,
  type WatchedImageSpec,
} from '../../packages/shared/src/index.ts';
import { loadKubeConfig } from '../../packages/shared/src/kube.ts';
import type { LocalClusterInfo } from '../../scripts/lib/cluster-info.ts';
import { shippedNodeArgs } from '../../scripts/lib/programs.ts';
import { installCrds as installCrdsAs } from './crds.ts';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../', import.meta.url));
export const CONTROLLER_MAIN = `${root}packages/controller/src/main.ts`;

export const WI = { group: GROUP, version: VERSION, plural: WATCHED_IMAGE.plural };
export const IU = { group: GROUP, version: VERSION, plural: IMAGE_UPDATE.plural };
export const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
const serverSideApply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);

/** The API clients a controller test needs, over the admin kubeconfig. */
export interface Clients {
  kc: KubeConfig;
  core: CoreV1Api;
  apps: AppsV1Api;
  custom: CustomObjectsApi;
  coordination: CoordinationV1Api;
}

export function clientsFor(info: LocalClusterInfo): Clients {
  return clientsOf(loadKubeConfig(info.kubeconfig));
}

/** The API clients over any kubeconfig (e.g. a service account's token). */
export function clientsOf(kc: KubeConfig): Clients {
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    coordination: kc.makeApiClient(CoordinationV1Api),
  };
}

export async function kubectl(info: LocalClusterInfo, ...args: string[]): Promise<string> {
  const { stdout } = await run(`${info.binDir}/kubectl`, ['--kubeconfig', info.kubeconfig, ...args], {
    maxBuffer: 64 * 1024 * 1024,
  });
  return stdout;
}

/** Installs the CRDs (server-side apply, idempotent) and waits until both kinds serve. */
export function installCrds(info: LocalClusterInfo): Promise<void> {
  return installCrdsAs(info, 'kubewatcher-controller-test');
}

/**
 * A kubeconfig holding an hour's token of a ServiceAccount (TokenRequest), to act with exactly the
 * rights RBAC gives it. `namespace` becomes the context's namespace.
 */
export async function serviceAccountKubeConfig(
  info: LocalClusterInfo,
  clients: Pick<Clients, 'core'>,
  namespace: string,
  name: string,
): Promise<KubeConfig> {
  const { status } = await clients.core.createNamespacedServiceAccountToken({
    namespace,
    name,
    body: { spec: { expirationSeconds: 3600 } },
  });
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'local', server: info.apiServer, caFile: info.apiServerCaFile }],
    users: [{ name, token: status!.token }],
    contexts: [{ name, cluster: 'local', user: name, namespace }],
    currentContext: name,
  });
  return kc;
}

/** The shipped poller CronJob (manifests/base) in `namespace`, suspended: only tests start its runs. */
export async function createSuspendedPollerCronJob(
  clients: Pick<Clients, 'kc'>,
  namespace: string,
): Promise<V1CronJob> {
  const cronJob = parseYaml(readFileSync(`${root}manifests/base/poller/cronjob.yaml`, 'utf8')) as V1CronJob;
  cronJob.metadata!.namespace = namespace;
  cronJob.spec!.suspend = true;
  return clients.kc.makeApiClient(BatchV1Api).createNamespacedCronJob({ namespace, body: cronJob });
}

/** Creates a namespace with a random suffix (and `labels`) and returns its name. */
export async function createNamespace(
  clients: Pick<Clients, 'core'>,
  prefix: string,
  labels: Record<string, string> = {},
): Promise<string> {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  await clients.core.createNamespace({
    body: { metadata: { name, labels: { 'kubewatcher.io/test': prefix, ...labels } } },
  });
  return name;
}

/** Deletes a namespace without waiting (kube-controller-manager empties it). */
export async function deleteNamespace(clients: Clients, name: string): Promise<void> {
  await clients.core.deleteNamespace({ name }).catch(() => undefined);
}

/** A `sha256:` digest: `seq` in the first hex digits (so names of later updates sort later), then random. */
export function testDigest(seq: number): string {
  const random = createHash('sha256').update(randomBytes(16)).digest('hex');
  return `sha256:${seq.toString(16).padStart(4, '0')}${random.slice(4)}`;
}

// ---------------------------------------------------------------------------------------------------
// Workloads

export interface WorkloadOptions {
  /** Containers as `name → image`, in order. */
  containers: Record<string, string>;
  initContainers?: Record<string, string>;
  labels?: Record<string, string>;
  replicas?: number;
  /** Pods select this node label; e.g. one that no node has, so new pods stay Pending. */
  nodeSelector?: Record<string, string>;
  /** Deployments only; default 60. */
  progressDeadlineSeconds?: number;
  /** Deployments only: how long a pod must be ready to count as available; default 0. */
  minReadySeconds?: number;
}

function podTemplate(name: string, o: WorkloadOptions) {
  const containers = (map: Record<string, string>): V1Container[] =>
    Object.entries(map).map(([n, image]) => ({ name: n, image }));
  return {
    metadata: { labels: { app: name } },
    spec: {
      containers: containers(o.containers),
      ...(o.initContainers ? { initContainers: containers(o.initContainers) } : {}),
      ...(o.nodeSelector ? { nodeSelector: o.nodeSelector } : {}),
      terminationGracePeriodSeconds: 0,
    },
  };
}

export function deployment(name: string, o: WorkloadOptions): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels: { app: name, ...o.labels } },
    spec: {
      replicas: o.replicas ?? 2,
      progressDeadlineSeconds: o.progressDeadlineSeconds ?? 60,
      ...(o.minReadySeconds !== undefined ? { minReadySeconds: o.minReadySeconds } : {}),
      selector: { matchLabels: { app: name } },
      template: podTemplate(name, o),
    },
  };
}

export function statefulSet(name: string, o: WorkloadOptions): V1StatefulSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: { name, labels: { app: name, ...o.labels } },
    spec: {
      replicas: o.replicas ?? 2,
      serviceName: name,
      podManagementPolicy: 'Parallel',
      selector: { matchLabels: { app: name } },
      template: podTemplate(name, o),
    },
  };
}

export function daemonSet(name: string, o: WorkloadOptions): V1DaemonSet {
  return {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name, labels: { app: name, ...o.labels } },
    spec: { selector: { matchLabels: { app: name } }, template: podTemplate(name, o) },
  };
}

/** A batch/v1 CronJob (suspended: the test control plane never needs to run its Jobs). */
export function cronJob(name: string, o: WorkloadOptions) {
  return {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name, labels: { app: name, ...o.labels } },
    spec: {
      schedule: '0 3 * * *',
      suspend: true,
      jobTemplate: {
        spec: {
          template: {
            ...podTemplate(name, o),
            spec: { ...podTemplate(name, o).spec, restartPolicy: 'Never' },
          },
        },
      },
    },
  };
}

export const CRONJOBS = { group: 'batch', version: 'v1', plural: 'cronjobs' } as const;

/** The image of each container and init container, by name. */
export function imagesOf(w: V1Deployment | V1StatefulSet | V1DaemonSet): Record<string, string | undefined> {
  const pod = w.spec?.template.spec;
  return Object.fromEntries(
    [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])].map((c) => [c.name, c.image]),
  );
}

/** Waits until a Deployment's rollout is complete (what `kubectl rollout status` waits for). */
export async function deploymentRolledOut(clients: Clients, namespace: string, name: string) {
  return until(
    () => clients.apps.readNamespacedDeployment({ namespace, name }),
    (d) => {
      const s = d.status ?? {};
      const want = d.spec?.replicas ?? 1;
      return (
        (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
        (s.updatedReplicas ?? 0) === want &&
        (s.availableReplicas ?? 0) === want &&
        (s.replicas ?? 0) === want
      );
    },
    { what: `Deployment ${namespace}/${name} to roll out`, timeoutMs: 90_000 },
  );
}

// ---------------------------------------------------------------------------------------------------
// WatchedImages and ImageUpdates

export async function createWatchedImage(
  clients: Pick<Clients, 'custom'>,
  namespace: string,
  name: string,
  spec: Partial<WatchedImageSpec> & { image: string },
): Promise<WatchedImage> {
  return (await clients.custom.createNamespacedCustomObject({
    ...WI,
    namespace,
    body: { apiVersion: API_VERSION, kind: WATCHED_IMAGE.kind, metadata: { name, namespace }, spec },
  })) as WatchedImage;
}

export async function getWatchedImage(clients: Pick<Clients, 'custom'>, namespace: string, name: string) {
  return (await clients.custom.getNamespacedCustomObject({ ...WI, namespace, name })) as WatchedImage;
}

export async function getImageUpdate(clients: Pick<Clients, 'custom'>, namespace: string, name: string) {
  return (await clients.custom.getNamespacedCustomObject({ ...IU, namespace, name })) as ImageUpdate;
}

export async function listImageUpdates(
  clients: Pick<Clients, 'custom'>,
  namespace: string,
): Promise<ImageUpdate[]> {
  const list = (await clients.custom.listNamespacedCustomObject({ ...IU, namespace })) as {
    items: ImageUpdate[];
  };
  // The API server lists by name already; sorted here so no test depends on that.
  return list.items.sort((a, b) => a.metadata.name!.localeCompare(b.metadata.name!));
}

/**
 * Creates the ImageUpdate the poller would create for a new digest behind `wi`'s tag: the deterministic
 * name, owned by the WatchedImage (controller: true), labelled with its name; then records the digest
 * on the WatchedImage as the poller does next (the controller applies only an update whose toDigest is
 * the recorded one). `fromDigest` defaults to the digest recorded now, as the poller's does.
 * `recordDigest: false` stops after the create, like a poller killed in between.
 */
export async function createImageUpdate(
  clients: Clients,
  wi: WatchedImage,
  toDigest: string,
  opts: { fromDigest?: string; detectedTime?: string; name?: string; recordDigest?: boolean } = {},
): Promise<ImageUpdate> {
  const namespace = wi.metadata.namespace!;
  const name = opts.name ?? imageUpdateName(wi.metadata.name!, toDigest);
  // The poller's fromDigest is the baseline it recorded: read it, since `wi` may be an older copy.
  const fromDigest =
    opts.fromDigest ?? (await getWatchedImage(clients, namespace, wi.metadata.name!)).status?.digest;
  const created = (await clients.custom.createNamespacedCustomObject({
    ...IU,
    namespace,
    body: {
      apiVersion: API_VERSION,
      kind: IMAGE_UPDATE.kind,
      metadata: {
        name,
        namespace,
        labels: { [LABEL.watchedImage]: nameLabelValue(wi.metadata.name!) },
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: WATCHED_IMAGE.kind,
            name: wi.metadata.name,
            uid: wi.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      spec: {
        watchedImage: wi.metadata.name,
        image: wi.spec.image,
        ...(fromDigest ? { fromDigest } : {}),
        toDigest,
        ...(opts.detectedTime ? { detectedTime: opts.detectedTime } : {}),
      },
    },
  })) as ImageUpdate;
  if (opts.recordDigest !== false) await writeResolved(clients, wi, toDigest);
  return created;
}

/** Approves an ImageUpdate of a Manual WatchedImage, as `kubectl patch iu … -p '{"spec":{"approved":true}}'`. */
export async function approve(clients: Clients, namespace: string, name: string): Promise<void> {
  await clients.custom.patchNamespacedCustomObject(
    { ...IU, namespace, name, body: { spec: { approved: true } } },
    mergePatch,
  );
}

/** Writes the poller's part of a WatchedImage's status (server-side apply as `kubewatcher-poller`). */
export async function writeResolved(clients: Clients, wi: WatchedImage, digest: string): Promise<void> {
  const now = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  await clients.custom.patchNamespacedCustomObjectStatus(
    {
      ...WI,
      namespace: wi.metadata.namespace!,
      name: wi.metadata.name!,
      body: {
        apiVersion: API_VERSION,
        kind: WATCHED_IMAGE.kind,
        metadata: { name: wi.metadata.name, namespace: wi.metadata.namespace },
        status: {
          digest,
          shortDigest: shortDigest(digest),
          lastCheckedTime: now,
          conditions: [
            {
              type: 'Resolved',
              status: 'True',
              reason: 'Resolved',
              message: `${wi.spec.image} resolved to ${shortDigest(digest)}`,
              lastTransitionTime: now,
              observedGeneration: wi.metadata.generation ?? 1,
            },
          ],
        },
      },
      fieldManager: FIELD_MANAGER.poller,
      force: true,
    },
    serverSideApply,
  );
}

/** Polls an ImageUpdate until its phase is one of `phases`; fails with its last status otherwise. */
export function waitForPhase(
  clients: Clients,
  namespace: string,
  name: string,
  phases: string | readonly string[],
  timeoutMs = 90_000,
): Promise<ImageUpdate> {
  const want = typeof phases === 'string' ? [phases] : phases;
  return until(
    () => getImageUpdate(clients, namespace, name),
    (u) => want.includes(u.status?.phase ?? ''),
    { what: `ImageUpdate ${namespace}/${name} to reach ${want.join(' or ')}`, timeoutMs },
  );
}

export interface EventSummary {
  type: string;
  reason: string;
  message: string;
  kind: string;
  name: string;
  host: string;
  component: string;
}

/** Events of a namespace (optionally about one object), oldest first. */
export async function eventsIn(
  clients: Clients,
  namespace: string,
  about?: { kind: string; name: string },
): Promise<EventSummary[]> {
  const fieldSelector = about
    ? `involvedObject.kind=${about.kind},involvedObject.name=${about.name}`
    : undefined;
  const { items } = await clients.core.listNamespacedEvent({
    namespace,
    ...(fieldSelector ? { fieldSelector } : {}),
  });
  return items
    .sort((a, b) =>
      String(a.metadata?.creationTimestamp).localeCompare(String(b.metadata?.creationTimestamp)),
    )
    .map((e) => ({
      type: e.type ?? '',
      reason: e.reason ?? '',
      message: e.message ?? '',
      kind: e.involvedObject.kind ?? '',
      name: e.involvedObject.name ?? '',
      host: e.source?.host ?? '',
      component: e.source?.component ?? '',
    }));
}

// ---------------------------------------------------------------------------------------------------
// Polling

export interface UntilOptions {
  what: string;
  timeoutMs?: number;
  intervalMs?: number;
  /** Treat a thrown error as "not yet" (e.g. 404 before an object exists, a restarting apiserver). */
  ignoreErrors?: boolean;
}

/**
 * Calls `read` until `done(value)` holds and returns that value; fails after the timeout with the last
 * value (or error) seen. For eventual states only: nothing here asserts how long anything takes.
 */
export async function until<T>(
  read: () => Promise<T> | T,
  done: (value: T) => boolean,
  opts: UntilOptions,
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let last: { value: T } | { error: unknown } | undefined;
  for (;;) {
    try {
      const value = await read();
      last = { value };
      if (done(value)) return value;
    } catch (error) {
      if (!opts.ignoreErrors) throw error;
      last = { error };
    }
    if (Date.now() > deadline) {
      const seen =
        last === undefined
          ? 'nothing'
          : 'error' in last
            ? `error ${String((last.error as Error)?.message ?? last.error)}`
            : JSON.stringify(last.value, null, 2)?.slice(0, 4000);
      throw new Error(`timed out waiting for ${opts.what}; last seen: ${seen}`);
    }
    await new Promise((resolve) => setTimeout(resolve, opts.intervalMs ?? 200));
  }
}

// ---------------------------------------------------------------------------------------------------
// Metrics

/** One sample of the Prometheus text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** kube-apiserver's own request counters (`apiserver_request_total`), scraped from its /metrics. */
export async function apiserverRequests(info: LocalClusterInfo): Promise<Sample[]> {
  return parseMetrics(await kubectl(info, 'get', '--raw', '/metrics')).filter(
    (s) => s.name === 'apiserver_request_total',
  );
}

/** The sum of the samples named `name` whose labels include `labels`. */
export function metricValue(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}

export async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`);
  if (!res.ok) throw new Error(`GET ${url}/metrics: HTTP ${res.status}`);
  return parseMetrics(await res.text());
}

// ---------------------------------------------------------------------------------------------------
// The controller as a child process

export interface LogRecord {
  level: string;
  message: string;
  [key: string]: unknown;
}

/**
 * `node --conditions=@kubewatcher/source packages/controller/src/main.ts …` (or, with `dist`, the built
 * bundle with the Deployment's node flags, as the image runs it) with JSON logs collected. `ready` resolves with the probe
 * server's URL and the identity once the process logged its start.
 */
export class ControllerProcess {
  readonly child: ChildProcess;
  readonly logs: LogRecord[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly ready: Promise<{ url: string; identity: string }>;
  readonly #stderr: string[] = [];
  readonly #logWaiters: { match: (r: LogRecord) => boolean; resolve: (r: LogRecord) => void }[] = [];

  constructor(
    kubeconfig: string,
    args: string[],
    opts: { echo?: boolean; dist?: boolean; nodeOptions?: string[] } = {},
  ) {
    this.child = spawn(
      process.execPath,
      [
        ...(opts.nodeOptions ?? []),
        // dist: the start-up snapshot with the Deployment's node flags, as the image runs it (`pnpm -r build` first).
        ...(opts.dist
          ? shippedNodeArgs('controller')
          : ['--conditions=@kubewatcher/source', CONTROLLER_MAIN]),
        '--kubeconfig',
        kubeconfig,
        '--metrics-addr',
        '127.0.0.1:0',
        '--log-format',
        'json',
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    let started: (v: { url: string; identity: string }) => void;
    let failed: (e: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    void this.exited.then(({ code, signal }) =>
      failed(
        new Error(
          `controller exited (${signal ?? code}) before it started:\n${this.#stderr.slice(-20).join('\n')}`,
        ),
      ),
    );
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let nl = buffer.indexOf('\n');
      while (nl >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        nl = buffer.indexOf('\n');
        // Through the console, so a test runner can keep the lines with the test that caused them.
        if (opts.echo) console.error(`[controller ${this.child.pid}] ${line}`);
        this.#stderr.push(line);
        if (this.#stderr.length > 200) this.#stderr.shift();
        try {
          const record = JSON.parse(line) as LogRecord;
          this.logs.push(record);
          for (const w of this.#logWaiters.filter((w) => w.match(record))) {
            this.#logWaiters.splice(this.#logWaiters.indexOf(w), 1);
            w.resolve(record);
          }
          if (record.message === 'controller started') {
            started({ url: String(record.metrics), identity: String(record.identity) });
          }
        } catch {
          // not a log line (a Node warning): kept in the tail only
        }
      }
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Resolves with the first log record (already written or to come) whose message is `message`. */
  waitForLog(message: string): Promise<LogRecord> {
    const seen = this.logs.find((r) => r.message === message);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.#logWaiters.push({ match: (r) => r.message === message, resolve }));
  }

  /** The last lines the process wrote, for failure messages. */
  tail(lines = 30): string {
    return this.#stderr.slice(-lines).join('\n');
  }

  /** Sends `signal` (default SIGKILL) to this process only and waits for it to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL') {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  /** Graceful stop: SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 10_000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.exited;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
