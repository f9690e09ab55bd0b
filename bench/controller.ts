/**
 * Controller benchmark: starts its own local control plane (scripts/lib/local-cluster.ts) in a temp
 * folder, runs the controller as the process it ships as (`packages/controller/src/main.ts`, leader
 * election on), measures, prints a table, stops everything. It asserts nothing.
 *
 *   node --conditions=@kubewatcher/source bench/controller.ts [--updates 200] [--deployments 5000]
 *     [--namespaces 50] [--watched-images 1000] [--rollout 500] [--idle-seconds 60] [--keep] [--reuse DIR]
 *
 * `--reuse DIR` runs against the environment `scripts/local-cluster up --dir DIR` started (objects that
 * exist already are kept, so a second run skips the creation), `--keep` keeps the temp folder.
 * The controller runs as the image runs it: shared and controller are built (tsc, the bundle, its
 * start-up snapshot) and the snapshot started with the Deployment's node flags
 * (scripts/lib/programs.ts); `--source` runs `src/main.ts` instead (Node's type stripping adds ~30 MB
 * of RSS).
 * `--node-options` passes further V8/Node flags to the controller (e.g. "--max-semi-space-size=4"),
 * `--concurrency` its workers per queue (default 2, the CLI's default).
 *
 * (a) Latency from ImageUpdate creation to the workload patched (seen by a watch on Deployments),
 *     over `--updates` updates applied one after another.
 * (b) At scale (Deployments with replicas 0 across namespaces, WatchedImages matching them): time to
 *     the first full sync, the controller's peak RSS, API requests per minute while idle (the API
 *     server's apiserver_request_total, with and without the controller, over a quiet period), and
 *     the time to roll out one update that touches `--rollout` Deployments.
 */

import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { Watch } from '@kubernetes/client-node';
import {
  ANNOTATION,
  type ImageUpdate,
  imageUpdateName,
  type WatchedImage,
} from '../packages/shared/src/index.ts';
import type { LocalClusterInfo } from '../scripts/lib/cluster-info.ts';
import { buildStartupSnapshot, PROGRAMS } from '../scripts/lib/programs.ts';
import {
  apiserverRequests,
  type Clients,
  ControllerProcess,
  clientsFor,
  createImageUpdate,
  createWatchedImage,
  deployment,
  getImageUpdate,
  installCrds,
  metricValue,
  type Sample,
  scrape,
  testDigest,
  until,
  WI,
} from '../test/support/controller-fixtures.ts';
import { loadAverages, openBenchEnvironment } from './environment.ts';

const { values: args } = parseArgs({
  options: {
    updates: { type: 'string', default: '200' },
    deployments: { type: 'string', default: '5000' },
    namespaces: { type: 'string', default: '50' },
    'watched-images': { type: 'string', default: '1000' },
    rollout: { type: 'string', default: '500' },
    'idle-seconds': { type: 'string', default: '60' },
    keep: { type: 'boolean', default: false },
    reuse: { type: 'string' },
    source: { type: 'boolean', default: false },
    'node-options': { type: 'string', default: '' },
    concurrency: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(
    'node --conditions=@kubewatcher/source bench/controller.ts [--updates N] [--deployments N] [--namespaces N] [--watched-images N] [--rollout N] [--idle-seconds S] [--keep] [--reuse DIR] [--source] [--node-options "..."] [--concurrency N]',
  );
  process.exit(0);
}
const N = {
  updates: Number(args.updates),
  deployments: Number(args.deployments),
  namespaces: Number(args.namespaces),
  watchedImages: Number(args['watched-images']),
  rollout: Number(args.rollout),
  idleSeconds: Number(args['idle-seconds']),
};
if (N.rollout > N.deployments || N.watchedImages < N.namespaces) {
  throw new Error('--rollout must be at most --deployments, --watched-images at least --namespaces');
}

const say = (line: string) => console.error(`bench: ${line}`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const millis = (ms: number) => `${ms.toFixed(0)} ms`;
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MB`;

interface Row {
  measure: string;
  value: string;
  target: string;
  met?: boolean;
}
const rows: Row[] = [];

// ---------------------------------------------------------------------------------------------------

/** Runs `fn` over `items`, at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** VmRSS and VmHWM (the kernel's peak resident set) of a process, in KiB. */
async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: field('VmRSS'), peak: field('VmHWM') };
}

type WatchEvent = { type: string; object: Record<string, unknown> & { metadata?: Record<string, unknown> } };

/**
 * A watch from now on, calling `onEvent` for each event, that reconnects from the last resourceVersion
 * when the connection ends (client-node's Watch gives up after 30 s without data). Returns a stop function.
 */
async function watchFrom(
  clients: Clients,
  path: string,
  onEvent: (e: WatchEvent) => void,
): Promise<() => void> {
  let stopped = false;
  let resourceVersion: string | undefined;
  let current: AbortController | undefined;
  const connect = async (): Promise<void> => {
    if (stopped) return;
    current = await new Watch(clients.kc).watch(
      path,
      { allowWatchBookmarks: true, ...(resourceVersion ? { resourceVersion } : {}) },
      (type, object) => {
        if (type === 'ERROR') {
          if ((object as { code?: number }).code === 410) resourceVersion = undefined;
          return;
        }
        resourceVersion = (object as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
        if (type !== 'BOOKMARK') onEvent({ type, object });
      },
      () => {
        if (!stopped) setTimeout(() => void connect().catch(() => undefined), 100);
      },
    );
  };
  await connect();
  return () => {
    stopped = true;
    current?.abort();
  };
}

/** Awaits a create call; AlreadyExists (a reused environment) is fine. */
async function created(request: Promise<unknown>): Promise<void> {
  try {
    await request;
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
}

async function createNamespaces(clients: Clients, names: readonly string[]) {
  await pool(names, 8, (name) => created(clients.core.createNamespace({ body: { metadata: { name } } })));
}

/** Requests per (verb, resource) between two scrapes of apiserver_request_total, per minute. */
function requestRates(before: Sample[], after: Sample[], minutes: number, resources: readonly string[]) {
  const key = (s: Sample) =>
    `${s.labels.verb} ${s.labels.resource}${s.labels.subresource ? `/${s.labels.subresource}` : ''}`;
  const sum = (samples: Sample[]) => {
    const m = new Map<string, number>();
    for (const s of samples) {
      if (!resources.includes(s.labels.resource ?? '')) continue;
      m.set(key(s), (m.get(key(s)) ?? 0) + s.value);
    }
    return m;
  };
  const a = sum(before);
  const b = sum(after);
  const out = new Map<string, number>();
  for (const [k, v] of b) {
    const d = v - (a.get(k) ?? 0);
    if (d > 0) out.set(k, d / minutes);
  }
  return out;
}

const CONTROLLER_RESOURCES = [
  'watchedimages',
  'imageupdates',
  'deployments',
  'statefulsets',
  'daemonsets',
  'leases',
  'events',
] as const;

function startControllerProcess(kubeconfig: string): ControllerProcess {
  return new ControllerProcess(
    kubeconfig,
    [
      '--leader-elect',
      '--leader-election-namespace',
      'kubewatcher-system',
      '--log-level',
      'info',
      '--concurrency',
      String(args.concurrency),
    ],
    { dist: !args.source, nodeOptions: args['node-options'].split(' ').filter(Boolean) },
  );
}

/**
 * Builds shared and controller (tsc), the controller's bundle and its start-up snapshot, so what runs is
 * the code in the tree.
 */
async function buildController(): Promise<void> {
  const tsc = fileURLToPath(new URL('../node_modules/.bin/tsc', import.meta.url));
  for (const pkg of ['shared', 'controller']) {
    const config = fileURLToPath(new URL(`../packages/${pkg}/tsconfig.build.json`, import.meta.url));
    await promisify(execFile)(tsc, ['-p', config]).catch((err: { stdout?: string }) => {
      throw new Error(`building ${pkg} failed:\n${err.stdout ?? String(err)}`);
    });
  }
  // The package's own build does the same (tsc, then rolldown with the repository's config).
  const controllerDir = fileURLToPath(new URL('../packages/controller/', import.meta.url));
  await promisify(execFile)(
    join(controllerDir, 'node_modules/.bin/rolldown'),
    ['-c', '../../rolldown.config.ts'],
    {
      cwd: controllerDir,
    },
  ).catch((err: { stdout?: string; stderr?: string }) => {
    throw new Error(`bundling the controller failed:\n${err.stderr ?? ''}${err.stdout ?? String(err)}`);
  });
  await buildStartupSnapshot(fileURLToPath(new URL(`../${PROGRAMS.controller.bundleDir}`, import.meta.url)));
}

// ---------------------------------------------------------------------------------------------------
// (a) latency

async function benchLatency(clients: Clients, kubeconfig: string): Promise<void> {
  const ns = `bench-latency-${Date.now().toString(36)}`;
  await createNamespaces(clients, [ns]);
  const image = 'bench.local/latency:v1';
  await clients.apps.createNamespacedDeployment({
    namespace: ns,
    body: deployment('web', { containers: { app: image }, replicas: 1 }),
  });
  const wi = await createWatchedImage(clients, ns, 'web', { image });
  const proc = startControllerProcess(kubeconfig);
  try {
    await proc.ready;
    await until(
      () =>
        clients.custom.getNamespacedCustomObject({
          ...WI,
          namespace: ns,
          name: 'web',
        }) as Promise<WatchedImage>,
      (w) => w.status?.workloadCount === 1,
      { what: 'the controller to see the Deployment', timeoutMs: 120_000 },
    );

    const patchedAt = new Map<string, number>();
    const finishedAt = new Map<string, number>();
    const waiters = new Map<string, () => void>();
    const stops = [
      await watchFrom(clients, `/apis/apps/v1/namespaces/${ns}/deployments`, ({ type, object }) => {
        const by = (object.metadata?.annotations as Record<string, string> | undefined)?.[
          ANNOTATION.imageUpdate
        ];
        if (type === 'MODIFIED' && by && !patchedAt.has(by)) patchedAt.set(by, performance.now());
      }),
      await watchFrom(
        clients,
        `/apis/kubewatcher.io/v1alpha1/namespaces/${ns}/imageupdates`,
        ({ object }) => {
          const u = object as unknown as ImageUpdate;
          const phase = u.status?.phase;
          if ((phase === 'Succeeded' || phase === 'Failed') && !finishedAt.has(u.metadata.name)) {
            finishedAt.set(u.metadata.name, performance.now());
            waiters.get(u.metadata.name)?.();
          }
        },
      ),
    ];
    const toPatch: number[] = [];
    const toDone: number[] = [];
    let failed = 0;
    for (let i = 1; i <= N.updates; i++) {
      const digest = testDigest(i);
      const started = performance.now();
      const name = imageUpdateName('web', digest);
      const finished = new Promise<void>((resolve) => waiters.set(name, resolve));
      await createImageUpdate(clients, wi, digest);
      await Promise.race([finished, new Promise((resolve) => setTimeout(resolve, 120_000))]);
      const patched = patchedAt.get(name);
      const done = finishedAt.get(name);
      if (patched === undefined || done === undefined) {
        failed++;
        continue;
      }
      toPatch.push(patched - started);
      toDone.push(done - started);
      if (i % 50 === 0) say(`latency: ${i}/${N.updates} updates`);
    }
    for (const stop of stops) stop();
    toPatch.sort((a, b) => a - b);
    toDone.sort((a, b) => a - b);
    const p99 = percentile(toPatch, 99);
    rows.push(
      {
        measure: `(a) created → workload patched, p50 (${toPatch.length} updates)`,
        value: millis(percentile(toPatch, 50)),
        target: '',
      },
      {
        measure: '(a) created → workload patched, p99',
        value: millis(p99),
        target: '< 300 ms',
        met: p99 < 300,
      },
      {
        measure: '(a) created → workload patched, max',
        value: millis(toPatch.at(-1) ?? Number.NaN),
        target: '',
      },
      {
        measure: '(a) created → Succeeded (rollout of 1 replica), p50 / p99',
        value: `${millis(percentile(toDone, 50))} / ${millis(percentile(toDone, 99))}`,
        target: '',
      },
    );
    if (failed > 0)
      rows.push({
        measure: '(a) updates that did not finish within 120 s',
        value: String(failed),
        target: '0',
        met: false,
      });
  } finally {
    await proc.stop();
  }
}

// ---------------------------------------------------------------------------------------------------
// (b) scale

interface Layout {
  namespaces: string[];
  /** [namespace, name, images by container] */
  deployments: { namespace: string; name: string; containers: Record<string, string> }[];
  watchedImages: { namespace: string; name: string; image: string; expected: number }[];
  /** The WatchedImage whose update touches `N.rollout` Deployments. */
  big: { namespace: string; name: string };
}

/**
 * Namespace 0 holds `N.rollout` Deployments that all run a shared image (the big rollout); the others
 * are spread evenly over the remaining namespaces. Every namespace has the same number of
 * WatchedImages, each watching one of the `app-K` images its Deployments run.
 */
function layout(): Layout {
  const namespaces = Array.from({ length: N.namespaces }, (_, i) => `bench-${String(i).padStart(2, '0')}`);
  const perNamespace = Math.floor(N.watchedImages / N.namespaces);
  const counters = new Map<string, number>();
  const deployments: Layout['deployments'] = [];
  for (let i = 0; i < N.deployments; i++) {
    const namespace =
      i < N.rollout || namespaces.length === 1
        ? namespaces[0]!
        : namespaces[1 + ((i - N.rollout) % (namespaces.length - 1))]!;
    const index = counters.get(namespace) ?? 0;
    counters.set(namespace, index + 1);
    const containers: Record<string, string> = { app: `bench.local/app-${index % perNamespace}:v1` };
    if (namespace === namespaces[0] && i < N.rollout) containers.shared = 'bench.local/shared:v1';
    deployments.push({ namespace, name: `app-${String(index).padStart(4, '0')}`, containers });
  }
  const watchedImages: Layout['watchedImages'] = [];
  for (const namespace of namespaces) {
    const inNs = deployments.filter((d) => d.namespace === namespace);
    for (let k = 0; k < perNamespace; k++) {
      const shared = namespace === namespaces[0] && k === perNamespace - 1;
      const image = shared ? 'bench.local/shared:v1' : `bench.local/app-${k}:v1`;
      const expected = inNs.filter((d) => Object.values(d.containers).includes(image)).length;
      watchedImages.push({ namespace, name: shared ? 'shared' : `app-${k}`, image, expected });
    }
  }
  return { namespaces, deployments, watchedImages, big: { namespace: namespaces[0]!, name: 'shared' } };
}

/**
 * (b): the objects of `layout()`, then, with the controller running, the first full sync, the idle
 * request rates (against a baseline without it) and one update that touches `--rollout` Deployments.
 */
async function benchScale(clients: Clients, info: LocalClusterInfo): Promise<void> {
  const plan = layout();
  await createScaleObjects(clients, plan);
  await waitForKubeControllerManager(clients);

  // Idle baseline: the cluster's own requests to the same resources without the controller.
  say(`scale: ${N.idleSeconds}s idle baseline without the controller`);
  const baseline = (await idleRequests(info)).rates;

  say('scale: starting the controller');
  const spawned = performance.now();
  const proc = startControllerProcess(info.kubeconfig);
  try {
    const { url } = await proc.ready;
    await measureFirstSync(clients, plan, proc, spawned);
    await waitUntilQuiet(url);
    say(`scale: ${N.idleSeconds}s idle with the controller`);
    rows.push(...idleRows(await idleRequests(info, url), baseline));
    say(`scale: one update touching ${N.rollout} Deployments`);
    await measureBigRollout(clients, plan, proc);
  } finally {
    await proc.stop();
  }
}

/** The namespaces, Deployments (replicas 0) and WatchedImages of the layout; a reused run's are kept. */
async function createScaleObjects(clients: Clients, plan: Layout): Promise<void> {
  say(
    `scale: creating ${plan.namespaces.length} namespaces, ${plan.deployments.length} Deployments, ${plan.watchedImages.length} WatchedImages`,
  );
  await createNamespaces(clients, plan.namespaces);
  let count = 0;
  await pool(plan.deployments, 32, async (d) => {
    await created(
      clients.apps.createNamespacedDeployment({
        namespace: d.namespace,
        body: deployment(d.name, { containers: d.containers, replicas: 0 }),
      }),
    );
    if (++count % 1000 === 0) say(`scale: ${count} Deployments`);
  });
  if (reused) await deleteWatchedImages(clients, plan.namespaces);
  await pool(plan.watchedImages, 32, (w) =>
    created(createWatchedImage(clients, w.namespace, w.name, { image: w.image })),
  );
}

/**
 * A reused environment holds the WatchedImages (and their status) of an earlier run: start over, so
 * the sync measured afterwards writes every status again.
 */
async function deleteWatchedImages(clients: Clients, namespaces: readonly string[]): Promise<void> {
  say('scale: recreating the WatchedImages of the reused environment');
  await pool(namespaces, 8, (namespace) =>
    clients.custom.deleteCollectionNamespacedCustomObject({ ...WI, namespace }),
  );
  const benchNamespaces = new Set(namespaces);
  await until(
    async () => {
      const list = (await clients.custom.listClusterCustomObject({ ...WI })) as { items: WatchedImage[] };
      return list.items.filter((w) => benchNamespaces.has(w.metadata.namespace ?? '')).length;
    },
    (left) => left === 0,
    { what: 'the old WatchedImages to go', timeoutMs: 120_000 },
  );
}

/**
 * Lets kube-controller-manager finish with the new Deployments (ReplicaSets, status) first. Its client
 * sends at most 20 requests/s (--kube-api-qps default) and each Deployment costs it about four
 * (ReplicaSet, ReplicaSet status, Deployment status), so 5,000 take it ~20 minutes.
 */
async function waitForKubeControllerManager(clients: Clients): Promise<void> {
  say('scale: waiting for kube-controller-manager to process every Deployment');
  await until(
    async () => {
      const { items } = await clients.apps.listDeploymentForAllNamespaces();
      return items.filter((d) => (d.status?.observedGeneration ?? 0) < (d.metadata?.generation ?? 1)).length;
    },
    (behind) => behind === 0,
    { what: 'kube-controller-manager to observe every Deployment', timeoutMs: 2_700_000, intervalMs: 5000 },
  );
}

/** Start → caches synced → every WatchedImage status lists its workloads; the RSS after it. */
async function measureFirstSync(
  clients: Clients,
  plan: Layout,
  proc: ControllerProcess,
  spawned: number,
): Promise<void> {
  const cachesSynced = await proc
    .waitForLog('leading: caches synced, workers started')
    .then(() => performance.now());
  const expected = new Map(plan.watchedImages.map((w) => [`${w.namespace}/${w.name}`, w.expected]));
  await until(
    async () => {
      const list = (await clients.custom.listClusterCustomObject({ ...WI })) as { items: WatchedImage[] };
      return list.items
        .filter((w) => expected.has(`${w.metadata.namespace}/${w.metadata.name}`))
        .filter((w) => w.status?.workloadCount !== expected.get(`${w.metadata.namespace}/${w.metadata.name}`))
        .map((w) => ({
          key: `${w.metadata.namespace}/${w.metadata.name}`,
          expected: expected.get(`${w.metadata.namespace}/${w.metadata.name}`),
          status: w.status,
        }));
    },
    (pending) => pending.length === 0,
    { what: 'every WatchedImage status to list its workloads', timeoutMs: 600_000, intervalMs: 250 },
  );
  const fullSync = performance.now() - spawned;
  const afterSync = await memoryOf(proc.pid);
  rows.push(
    {
      measure: `(b) start → caches synced (${plan.deployments.length} Deployments, ${plan.watchedImages.length} WatchedImages)`,
      value: seconds(cachesSynced - spawned),
      target: '',
    },
    {
      measure: '(b) start → first full sync (every WatchedImage status written)',
      value: seconds(fullSync),
      target: '< 20 s',
      met: fullSync < 20_000,
    },
    { measure: '(b) RSS after the sync', value: mib(afterSync.rss), target: '' },
  );
}

/** Waits until nothing is queued and no reconcile ran between two scrapes 5 s apart. */
async function waitUntilQuiet(url: string): Promise<void> {
  let last = -1;
  await until(
    async () => {
      const m = await scrape(url);
      const total = metricValue(m, 'kubewatcher_reconcile_total');
      const quiet = total === last && metricValue(m, 'kubewatcher_workqueue_depth') === 0;
      last = total;
      return quiet;
    },
    (quiet) => quiet,
    { what: 'the controller to go quiet', timeoutMs: 300_000, intervalMs: 5000 },
  );
}

interface IdleRequests {
  /** Requests per minute by `VERB resource[/subresource]`, to the resources the controller uses. */
  rates: Map<string, number>;
  /** The controller's relists and reconciles in the period, when a controller runs. */
  relists?: number;
  reconciles?: number;
}

/** The API server's requests over `--idle-seconds` of quiet; with `controllerUrl`, its own counters. */
async function idleRequests(info: LocalClusterInfo, controllerUrl?: string): Promise<IdleRequests> {
  const before = await apiserverRequests(info);
  const ctlBefore = controllerUrl ? await scrape(controllerUrl) : undefined;
  await new Promise((resolve) => setTimeout(resolve, N.idleSeconds * 1000));
  const rates = requestRates(before, await apiserverRequests(info), N.idleSeconds / 60, CONTROLLER_RESOURCES);
  if (!controllerUrl || !ctlBefore) return { rates };
  const ctlAfter = await scrape(controllerUrl);
  const delta = (name: string, labels?: Record<string, string>) =>
    metricValue(ctlAfter, name, labels) - metricValue(ctlBefore, name, labels);
  return {
    rates,
    relists: delta('kubewatcher_informer_restarts_total', { reason: 'relist' }),
    reconciles: delta('kubewatcher_reconcile_total'),
  };
}

/** The controller's share of the idle requests: each request kind, by verb, and LIST against relists. */
function idleRows(withController: IdleRequests, baseline: Map<string, number>): Row[] {
  const out: Row[] = [];
  const rates = withController.rates;
  const keys = [...new Set([...rates.keys(), ...baseline.keys()])].sort();
  const byVerb = new Map<string, number>();
  for (const k of keys) {
    const delta = (rates.get(k) ?? 0) - (baseline.get(k) ?? 0);
    out.push({
      measure: `(b) idle requests/min ${k} (with controller − without)`,
      value: `${(rates.get(k) ?? 0).toFixed(1)} − ${(baseline.get(k) ?? 0).toFixed(1)} = ${delta.toFixed(1)}`,
      target: '',
    });
    const verb = k.split(' ')[0]!;
    byVerb.set(verb, (byVerb.get(verb) ?? 0) + delta);
  }
  const lists = byVerb.get('LIST') ?? 0;
  const relists = withController.relists ?? 0;
  out.push(
    {
      measure: '(b) idle requests/min by verb (controller share)',
      value: [...byVerb].map(([v, n]) => `${v} ${n.toFixed(1)}`).join(', '),
      target: '',
    },
    {
      measure: `(b) idle LIST/min (informer relists in the period: ${relists}, reconciles: ${withController.reconciles ?? 0})`,
      value: lists.toFixed(1),
      target: 'only the relists',
      met: relists > 0 || lists <= 0.5,
    },
  );
  return out;
}

/** When the big rollout's Deployments were patched and observed, and when its ImageUpdate finished. */
interface RolloutTimes {
  patched: Set<string>;
  firstPatch: number;
  lastPatch: number;
  observed: Set<string>;
  lastObserved: number;
  finished: number;
  phase: string;
}

/**
 * Watches the namespace's Deployments (patched by ImageUpdate `iuName`, then observed by
 * kube-controller-manager) and the ImageUpdate's phase, recording the times into `times`.
 */
async function followRollout(
  clients: Clients,
  namespace: string,
  iuName: string,
  times: RolloutTimes,
): Promise<() => void> {
  const stops = [
    await watchFrom(clients, `/apis/apps/v1/namespaces/${namespace}/deployments`, ({ type, object }) => {
      const by = (object.metadata?.annotations as Record<string, string> | undefined)?.[
        ANNOTATION.imageUpdate
      ];
      const name = String(object.metadata?.name);
      if (type === 'MODIFIED' && by === iuName && !times.patched.has(name)) {
        times.patched.add(name);
        times.lastPatch = performance.now();
        times.firstPatch ||= times.lastPatch;
      }
      // kube-controller-manager's share: when its Deployment controller has acted on the patch.
      const status = object.status as { observedGeneration?: number } | undefined;
      const generation = Number(object.metadata?.generation ?? 0);
      if (by === iuName && !times.observed.has(name) && (status?.observedGeneration ?? 0) >= generation) {
        times.observed.add(name);
        times.lastObserved = performance.now();
      }
    }),
    await watchFrom(
      clients,
      `/apis/kubewatcher.io/v1alpha1/namespaces/${namespace}/imageupdates`,
      ({ object }) => {
        const u = object as unknown as ImageUpdate;
        if (u.metadata.name !== iuName) return;
        times.phase = u.status?.phase ?? '';
        if ((times.phase === 'Succeeded' || times.phase === 'Failed') && !times.finished) {
          times.finished = performance.now();
        }
      },
    ),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}

/** The big rollout: one update that touches `--rollout` Deployments, timed from its creation. */
async function measureBigRollout(clients: Clients, plan: Layout, proc: ControllerProcess): Promise<void> {
  const big = (await clients.custom.getNamespacedCustomObject({
    ...WI,
    namespace: plan.big.namespace,
    name: plan.big.name,
  })) as WatchedImage;
  const digest = testDigest(1);
  const iuName = imageUpdateName(plan.big.name, digest);
  const times: RolloutTimes = {
    patched: new Set(),
    firstPatch: 0,
    lastPatch: 0,
    observed: new Set(),
    lastObserved: 0,
    finished: 0,
    phase: '',
  };
  const stop = await followRollout(clients, plan.big.namespace, iuName, times);
  const startRollout = performance.now();
  await createImageUpdate(clients, big, digest);
  let polls = 0;
  await until(
    async () => {
      // The watch gives the exact time; a slow poll makes sure a lost watch event cannot hang the run.
      if (!times.finished && ++polls % 20 === 0) {
        const u = await getImageUpdate(clients, plan.big.namespace, iuName);
        times.phase = u.status?.phase ?? '';
        if (times.phase === 'Succeeded' || times.phase === 'Failed') times.finished = performance.now();
      }
      return times.finished;
    },
    (f) => f > 0,
    { what: 'the big update to finish', timeoutMs: 900_000, intervalMs: 100 },
  );
  stop();
  const end = await memoryOf(proc.pid);
  rows.push(
    {
      measure: `(b) one update → first Deployment patched`,
      value: millis(times.firstPatch - startRollout),
      target: '',
    },
    {
      measure: `(b) one update → all ${times.patched.size} Deployments patched`,
      value: seconds(times.lastPatch - startRollout),
      target: '',
    },
    {
      measure: `(b) one update → all ${times.observed.size} Deployments observed by kube-controller-manager`,
      value: seconds(times.lastObserved - startRollout),
      target: '',
    },
    {
      measure: `(b) one update → ${times.phase} (${N.rollout} Deployments rolled out)`,
      value: seconds(times.finished - startRollout),
      target: '',
    },
    {
      measure: '(b) controller peak RSS (VmHWM: sync, idle and the big rollout)',
      value: mib(end.peak),
      target: '< 250 MB',
      met: end.peak < 250 * 1024,
    },
  );
}

// ---------------------------------------------------------------------------------------------------

function printTable() {
  const width = Math.max(...rows.map((r) => r.measure.length));
  const valueWidth = Math.max(...rows.map((r) => r.value.length));
  const lines = rows.map((r) => {
    const verdict = r.met === undefined ? '' : r.met ? 'met' : 'MISSED';
    return `${r.measure.padEnd(width)}  ${r.value.padStart(valueWidth)}  ${r.target.padEnd(16)} ${verdict}`.trimEnd();
  });
  const load = loadAverages();
  const setup = [
    `controller: ${args.source ? 'src/main.ts (type stripping)' : 'the bundle, as shipped'}, --concurrency ${args.concurrency}`,
    args['node-options'] ? `, node ${args['node-options']}` : '',
    `; machine: ${cpus().length} CPUs, load average at start ${startLoad}, at end ${load}`,
  ].join('');
  console.log(
    ['', setup, `${'measure'.padEnd(width)}  ${'value'.padStart(valueWidth)}  target`, ...lines, ''].join(
      '\n',
    ),
  );
}

const startLoad = loadAverages();
const cluster = await openBenchEnvironment({ reuse: args.reuse, keep: args.keep, say });
const reused = cluster.reused;
const clients = clientsFor(cluster.info);
try {
  if (!args.source) {
    say('building shared and controller (dist/, dist/bundle/, the start-up snapshot)');
    await buildController();
  }
  await installCrds(cluster.info);
  await createNamespaces(clients, ['kubewatcher-system']);
  if (N.updates > 0) {
    say(`latency: ${N.updates} updates, one after another`);
    await benchLatency(clients, cluster.info.kubeconfig);
  }
  if (N.deployments > 0) await benchScale(clients, cluster.info);
} finally {
  printTable();
  await cluster.close();
}
