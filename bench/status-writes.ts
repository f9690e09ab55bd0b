/**
 * What one WatchedImage status write costs the API server, by patch type: the floor under the poller's
 * run time (every check writes `lastCheckedTime`). It asserts nothing and prints one line per round.
 *
 *   scripts/local-cluster up --dir /tmp/env
 *   node --conditions=@kubewatcher/source bench/status-writes.ts --env /tmp/env [--count 1000] [--rounds 2]
 *
 * It installs the CRDs (a server-side apply, nothing changes when they are current). In a fresh
 * namespace it creates `--count` WatchedImages, gives each a poller-like status with a server-side
 * apply (the baseline), then, `--rounds` times: a server-side apply that changes only
 * `lastCheckedTime` (what a steady-state check sends), a JSON merge patch of `lastCheckedTime` alone,
 * and a server-side apply again after it (the field's owner changed in between). Eight writes are in
 * flight at once, as in a poller run. Per round: wall time, and the CPU milliseconds kube-apiserver and
 * etcd spent per write (their /proc figures). The namespace is deleted at the end.
 */
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { API_VERSION, FIELD_MANAGER, loadKubeConfig, WATCHED_IMAGE } from '../packages/shared/src/index.ts';
import { findRunningLocalCluster } from '../scripts/lib/local-cluster.ts';
import { createWatchedImage, WI } from '../test/support/controller-fixtures.ts';
import { installCrds } from '../test/support/crds.ts';
import { componentPid, readProcessUsage } from './process-usage.ts';

const { values: args } = parseArgs({
  options: {
    env: { type: 'string' },
    count: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help || !args.env) {
  console.log(
    'node --conditions=@kubewatcher/source bench/status-writes.ts --env DIR [--count N] [--rounds N]\n  --env DIR  an environment started by `scripts/local-cluster up --dir DIR`',
  );
  process.exit(args.help ? 0 : 2);
}
const count = Number(args.count);
const rounds = Number(args.rounds);
const IN_FLIGHT = 8;

const info = await findRunningLocalCluster(args.env);
if (!info) {
  console.error(`no running environment in ${args.env} (scripts/local-cluster up --dir ${args.env})`);
  process.exit(1);
}
const [apiserverPid, etcdPid] = await Promise.all([
  componentPid(info, 'kube-apiserver'),
  componentPid(info, 'etcd'),
]);
const cpuOf = (pid: number | undefined) =>
  pid === undefined ? Number.NaN : (readProcessUsage(pid)?.cpuSeconds ?? Number.NaN);

const kc = loadKubeConfig(info.kubeconfig);
const custom = kc.makeApiClient(CustomObjectsApi);
const core = kc.makeApiClient(CoreV1Api);
const namespace = `status-writes-${Date.now().toString(36)}`;
const target = { ...WI, namespace };
const nameOf = (i: number) => `img-${i}`;

/** Runs `write` for every index, IN_FLIGHT at a time. */
async function forEach(write: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) await write(next++);
    }),
  );
}

function pollerStatus(lastCheckedTime: string) {
  return {
    resolvedImage: 'registry.example.com/team/app:v1',
    digest: `sha256:${'a'.repeat(64)}`,
    shortDigest: 'a'.repeat(12),
    lastCheckedTime,
    lastChangedTime: '2026-01-01T00:00:00Z',
    conditions: [
      {
        type: 'Resolved',
        status: 'True',
        reason: 'Resolved',
        message: 'the tag resolved to its current digest',
        lastTransitionTime: '2026-01-01T00:00:00Z',
        observedGeneration: 1,
      },
    ],
  };
}

const apply = (i: number, time: string) =>
  custom.patchNamespacedCustomObjectStatus(
    {
      ...target,
      name: nameOf(i),
      body: {
        apiVersion: API_VERSION,
        kind: WATCHED_IMAGE.kind,
        metadata: { name: nameOf(i), namespace },
        status: pollerStatus(time),
      },
      fieldManager: FIELD_MANAGER.poller,
      force: true,
    },
    setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
  );

const mergePatch = (i: number, time: string) =>
  custom.patchNamespacedCustomObjectStatus(
    {
      ...target,
      name: nameOf(i),
      body: { status: { lastCheckedTime: time } },
      fieldManager: FIELD_MANAGER.poller,
    },
    setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
  );

async function measure(label: string, write: (i: number) => Promise<unknown>): Promise<void> {
  const api0 = cpuOf(apiserverPid);
  const etcd0 = cpuOf(etcdPid);
  const started = performance.now();
  await forEach(write);
  const seconds = (performance.now() - started) / 1000;
  const perWrite = (before: number, pid: number | undefined) =>
    (((cpuOf(pid) - before) * 1000) / count).toFixed(2);
  console.log(
    `${label.padEnd(46)} ${count} writes in ${seconds.toFixed(1)} s (${Math.round(count / seconds)}/s); ` +
      `CPU per write: kube-apiserver ${perWrite(api0, apiserverPid)} ms, etcd ${perWrite(etcd0, etcdPid)} ms`,
  );
}

await installCrds(info, 'kubewatcher-bench');
await core.createNamespace({ body: { metadata: { name: namespace } } });
try {
  await forEach((i) =>
    createWatchedImage({ custom }, namespace, nameOf(i), {
      image: `registry.example.com/team/app${i % 100}:v1`,
    }),
  );
  const at = (round: number, minute: number) =>
    `2026-01-01T${String(round + 1).padStart(2, '0')}:${String(minute).padStart(2, '0')}:00Z`;
  await measure('server-side apply, first status', (i) => apply(i, at(0, 0)));
  for (let r = 1; r <= rounds; r++) {
    await measure(`server-side apply, lastCheckedTime only (${r})`, (i) => apply(i, at(r, 1)));
    await measure(`merge patch of lastCheckedTime (${r})`, (i) => mergePatch(i, at(r, 2)));
    await measure(`server-side apply after the merge patch (${r})`, (i) => apply(i, at(r, 3)));
  }
} finally {
  await core.deleteNamespace({ name: namespace });
}
