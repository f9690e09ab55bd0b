/**
 * Auto-watch benchmark: Deployments in namespaces labelled `kubewatcher.io/watch: "true"`, no
 * WatchedImage written by hand. Starts its own local control plane (scripts/lib/local-cluster.ts) in
 * a temp folder, runs the controller in this process (its own metrics registry, so its write counter
 * is read directly), prints a table, stops everything. It asserts nothing.
 *
 *   node --conditions=@kubewatcher/source bench/auto-watch.ts [--deployments 5000] [--namespaces 50]
 *     [--images 1000] [--relists 12] [--keep] [--reuse DIR]
 *
 * Deployment i runs `bench.local/app-<i mod images>:v1` in namespace `i mod namespaces`, so each image
 * is run by deployments/images Deployments of one namespace and the controller should generate exactly
 * `images` WatchedImages (when images is a multiple of namespaces).
 *
 * 1. First sync: from the controller's start (caches synced) to every generated WatchedImage existing,
 *    and the API writes that took: the controller's kubewatcher_generated_watchedimage_writes_total,
 *    and the API server's own count (apiserver_request_total) of create/patch/delete on watchedimages.
 * 2. Second sync: a new controller over the same cluster; its writes once it has planned every namespace.
 * 3. Relists: a controller whose informers relist every few seconds, `--relists` times (12 is an hour
 *    at the default 5 minutes); the writes they cost.
 */

import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import { type RunningController, startController } from '../packages/controller/test/controller-harness.ts';
import { settleWithLimit, type WatchedImage } from '../packages/shared/src/index.ts';
import type { LocalClusterInfo } from '../scripts/lib/cluster-info.ts';
import {
  type Clients,
  clientsFor,
  deployment,
  installCrds,
  kubectl,
  parseMetrics,
  type Sample,
  until,
  WI,
} from '../test/support/controller-fixtures.ts';
import { loadAverages, openBenchEnvironment } from './environment.ts';

const { values: args } = parseArgs({
  options: {
    deployments: { type: 'string', default: '5000' },
    namespaces: { type: 'string', default: '50' },
    images: { type: 'string', default: '1000' },
    relists: { type: 'string', default: '12' },
    keep: { type: 'boolean', default: false },
    reuse: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(
    'node --conditions=@kubewatcher/source bench/auto-watch.ts [--deployments N] [--namespaces N] [--images N] [--relists N] [--keep] [--reuse DIR]',
  );
  process.exit(0);
}
const N = {
  deployments: Number(args.deployments),
  namespaces: Number(args.namespaces),
  images: Number(args.images),
  relists: Number(args.relists),
};
const RELIST_MS = 5000;

const say = (line: string) => console.error(`bench: ${line}`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const rows: { measure: string; value: string }[] = [];

/** Runs `fn` over `items`, `limit` at a time; the first failure fails the run. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  const failed = (await settleWithLimit(items, limit, fn)).find((o) => o.status === 'rejected');
  if (failed) throw failed.reason;
}

async function created(request: Promise<unknown>): Promise<void> {
  try {
    await request;
  } catch (err) {
    if ((err as { code?: number }).code !== 409) throw err;
  }
}

/** create, apply, patch, update and delete requests on watchedimages and their status, by the API server's count. */
async function watchedImageWrites(info: LocalClusterInfo): Promise<Map<string, number>> {
  const samples: Sample[] = parseMetrics(await kubectl(info, 'get', '--raw', '/metrics')).filter(
    (s) =>
      s.name === 'apiserver_request_total' &&
      s.labels.resource === 'watchedimages' &&
      ['POST', 'APPLY', 'PATCH', 'PUT', 'DELETE'].includes(s.labels.verb ?? ''),
  );
  const out = new Map<string, number>();
  for (const s of samples) {
    const key = `${s.labels.verb} watchedimages${s.labels.subresource ? `/${s.labels.subresource}` : ''}`;
    out.set(key, (out.get(key) ?? 0) + s.value);
  }
  return out;
}

function delta(before: Map<string, number>, after: Map<string, number>): string {
  const parts: string[] = [];
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) parts.push(`${k} ${d}`);
  }
  return parts.length > 0 ? parts.join(', ') : 'none';
}

async function generatedCount(clients: Clients): Promise<number> {
  const list = (await clients.custom.listClusterCustomObject({
    ...WI,
    labelSelector: 'app.kubernetes.io/managed-by=kubewatcher',
  })) as { items: WatchedImage[] };
  return list.items.length;
}

const writesOf = (c: RunningController) => c.metric('kubewatcher_generated_watchedimage_writes_total');

/** How many generated WatchedImages report `workloads` workloads in their status. */
async function generatedReporting(clients: Clients, workloads: number): Promise<number> {
  const list = (await clients.custom.listClusterCustomObject({
    ...WI,
    labelSelector: 'app.kubernetes.io/managed-by=kubewatcher',
  })) as { items: WatchedImage[] };
  return list.items.filter((w) => w.status?.workloadCount === workloads).length;
}

/** Waits until every queue of the controller is empty. */
async function quiet(c: RunningController): Promise<void> {
  await until(
    () => c.metric('kubewatcher_workqueue_depth'),
    (depth) => depth === 0,
    { what: 'every queue empty', timeoutMs: 600_000, intervalMs: 500 },
  );
}

/** Waits until the auto-watch queue has planned every namespace once and is empty. */
async function plannedEveryNamespace(c: RunningController): Promise<void> {
  await until(
    async () => ({
      reconciles: await c.metric('kubewatcher_reconcile_total', { controller: 'autowatch' }),
      depth: await c.metric('kubewatcher_workqueue_depth', { name: 'autowatch' }),
    }),
    (m) => m.reconciles >= N.namespaces && m.depth === 0,
    { what: 'every namespace planned', timeoutMs: 600_000, intervalMs: 500 },
  );
}

async function run(clients: Clients, info: LocalClusterInfo): Promise<void> {
  const namespaces = Array.from({ length: N.namespaces }, (_, i) => `aw-${String(i).padStart(3, '0')}`);
  say(
    `creating ${N.namespaces} labelled namespaces and ${N.deployments} Deployments over ${N.images} images`,
  );
  await pool(namespaces, 8, (name) =>
    created(
      clients.core.createNamespace({
        body: { metadata: { name, labels: { 'kubewatcher.io/watch': 'true' } } },
      }),
    ),
  );
  const indices = Array.from({ length: N.deployments }, (_, i) => i);
  let count = 0;
  await pool(indices, 32, async (i) => {
    await created(
      clients.apps.createNamespacedDeployment({
        namespace: namespaces[i % N.namespaces]!,
        body: deployment(`app-${String(i).padStart(5, '0')}`, {
          containers: { app: `bench.local/app-${i % N.images}:v1` },
          replicas: 0,
        }),
      }),
    );
    if (++count % 1000 === 0) say(`${count} Deployments`);
  });
  const expected = new Set(indices.map((i) => `${i % N.namespaces}/${i % N.images}`)).size;

  // kube-controller-manager's own work on new Deployments (ReplicaSets, status; ~20 requests/s) would
  // otherwise share the API server with the sync measured.
  say('waiting for kube-controller-manager to observe every Deployment');
  await until(
    async () => {
      const { items } = await clients.apps.listDeploymentForAllNamespaces();
      return items.filter((d) => (d.status?.observedGeneration ?? 0) < (d.metadata?.generation ?? 1)).length;
    },
    (behind) => behind === 0,
    { what: 'kube-controller-manager to observe every Deployment', timeoutMs: 2_700_000, intervalMs: 5000 },
  );

  // A reused environment holds the generated WatchedImages of an earlier run: start over.
  if ((await generatedCount(clients)) > 0) {
    say('deleting the generated WatchedImages of an earlier run');
    await pool(namespaces, 8, (namespace) =>
      clients.custom.deleteCollectionNamespacedCustomObject({
        ...WI,
        namespace,
        labelSelector: 'app.kubernetes.io/managed-by=kubewatcher',
      }),
    );
    await until(
      () => generatedCount(clients),
      (n) => n === 0,
      {
        what: 'the old generated WatchedImages to go',
        timeoutMs: 300_000,
        intervalMs: 1000,
      },
    );
  }

  // 1. First sync.
  say('first sync');
  const before1 = await watchedImageWrites(info);
  const first = await startController(clients.kc, { ownNamespace: 'kubewatcher-system' });
  let firstWrites = 0;
  try {
    const started = performance.now();
    for (const i of first.controller.informers) await i.waitForSync();
    const synced = performance.now();
    await until(
      () => generatedCount(clients),
      (n) => n >= expected,
      {
        what: `${expected} generated WatchedImages`,
        timeoutMs: 1_200_000,
        intervalMs: 250,
      },
    );
    const allThere = performance.now();
    await plannedEveryNamespace(first);
    firstWrites = await writesOf(first);
    // The WatchedImage reconciler then reports each one's workloads: after that the cluster is quiet.
    const perImage = N.deployments / expected;
    await until(
      () => generatedReporting(clients, perImage),
      (n) => n >= expected,
      {
        what: `${expected} generated WatchedImages reporting ${perImage} workloads`,
        timeoutMs: 1_200_000,
        intervalMs: 1000,
      },
    );
    const reporting = performance.now();
    await quiet(first);
    rows.push(
      {
        measure: 'generated WatchedImages expected / found',
        value: `${expected} / ${await generatedCount(clients)}`,
      },
      { measure: '1. start → caches synced', value: seconds(synced - started) },
      {
        measure: '1. caches synced → every generated WatchedImage exists',
        value: seconds(allThere - synced),
      },
      {
        measure: '1. caches synced → every one reports its workloads (status)',
        value: seconds(reporting - synced),
      },
      { measure: '1. generated WatchedImage writes (controller counter)', value: String(firstWrites) },
      {
        measure: '1. API server writes on watchedimages during the first sync',
        value: delta(before1, await watchedImageWrites(info)),
      },
    );
  } finally {
    await first.stop();
  }

  // 2. Second sync: a restart.
  say('second sync (restart)');
  const before2 = await watchedImageWrites(info);
  const second = await startController(clients.kc, { ownNamespace: 'kubewatcher-system' });
  try {
    const started = performance.now();
    await plannedEveryNamespace(second);
    await quiet(second);
    rows.push(
      { measure: '2. restart → every namespace planned', value: seconds(performance.now() - started) },
      {
        measure: '2. generated WatchedImage writes after the restart',
        value: String(await writesOf(second)),
      },
      {
        measure: '2. API server writes on watchedimages',
        value: delta(before2, await watchedImageWrites(info)),
      },
    );
  } finally {
    await second.stop();
  }

  // 3. Relists.
  say(`relists: ${N.relists} of every informer, one each ${RELIST_MS / 1000}s`);
  const third = await startController(clients.kc, {
    ownNamespace: 'kubewatcher-system',
    relistIntervalMs: RELIST_MS,
  });
  try {
    await plannedEveryNamespace(third);
    const before3 = await watchedImageWrites(info);
    const writes3 = await writesOf(third);
    const relists = () =>
      third.metric('kubewatcher_informer_restarts_total', { informer: 'deployments', reason: 'relist' });
    const r0 = await relists();
    await until(relists, (n) => n - r0 >= N.relists, {
      what: `${N.relists} relists`,
      timeoutMs: N.relists * RELIST_MS * 4 + 60_000,
      intervalMs: 1000,
    });
    await plannedEveryNamespace(third);
    rows.push(
      {
        measure: `3. generated WatchedImage writes over ${N.relists} relists`,
        value: String((await writesOf(third)) - writes3),
      },
      {
        measure: '3. API server writes on watchedimages over the relists',
        value: delta(before3, await watchedImageWrites(info)),
      },
    );
  } finally {
    await third.stop();
  }
}

function printTable() {
  const width = Math.max(...rows.map((r) => r.measure.length));
  const load = loadAverages();
  console.log(
    [
      '',
      `${N.deployments} Deployments, ${N.namespaces} namespaces, ${N.images} images; machine: ${cpus().length} CPUs, load average at start ${startLoad}, at end ${load}`,
      ...rows.map((r) => `${r.measure.padEnd(width)}  ${r.value}`),
      '',
    ].join('\n'),
  );
}

const startLoad = loadAverages();
const cluster = await openBenchEnvironment({ reuse: args.reuse, keep: args.keep, say });
const clients = clientsFor(cluster.info);
try {
  await installCrds(cluster.info);
  await run(clients, cluster.info);
} finally {
  printTable();
  await cluster.close();
}
