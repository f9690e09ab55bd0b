/**
 * What one WatchedImage status write costs kube-apiserver, and what of it each part of the request
 * costs: the same batch of writes in several variants (patch type, identity, admission policy, CRD
 * rules, status shape, a watcher), each measured as kube-apiserver's and etcd's CPU milliseconds per
 * write (their /proc figures), median of `--rounds`. It asserts nothing and prints one line per batch
 * and a table of medians.
 *
 *   KUBEWATCHER_APISERVER_PROFILING=1 scripts/local-cluster up --dir /tmp/env   # profiling: optional
 *   node --conditions=@kubewatcher/source bench/status-writes.ts --env /tmp/env [--count 2000]
 *        [--rounds 3] [--variants apply,merge,...] [--profile DIR [--profile-seconds 20]]
 *
 * Production's setup: the CRDs and the shipped admission policies (manifests/base/admission), the
 * poller's ServiceAccount and ClusterRole (manifests/base/rbac/poller.yaml), its writes made with a
 * token of that ServiceAccount through packages/shared's applyStatus (server-side apply of the status
 * subresource, field manager kubewatcher-poller), eight in flight as in a poller run; kube-controller-
 * manager's metadata informers watch WatchedImages as on any cluster. `--count` WatchedImages in a
 * fresh namespace, each with the status a poller run writes after a resolve. The variants run in turn,
 * `--rounds` times over (so a change of load meets them all); each time one unmeasured batch (the
 * objects take that variant's shape) and one measured batch, every write changing lastCheckedTime
 * (what a scheduled check sends). `--help` lists the variants.
 * With `--profile DIR`, each variant's first turn also takes a CPU profile of kube-apiserver
 * (/debug/pprof/profile, needs the environment started with KUBEWATCHER_APISERVER_PROFILING=1) while
 * it repeats its batch, into DIR/VARIANT.pprof (`go tool pprof -top -cum FILE`), and prints the writes
 * made meanwhile. At the end the namespace and the admission policies are deleted (they refuse the
 * admin's status writes, which bench/poller.ts makes) and the CRDs restored.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, PatchStrategy, Watch } from '@kubernetes/client-node';
import { parseAllDocuments, stringify as toYaml } from 'yaml';
import {
  API_VERSION,
  applyStatus,
  FIELD_MANAGER,
  GROUP,
  loadKubeConfig,
  requestJson,
  reuseConnections,
  VERSION,
  WATCHED_IMAGE,
} from '../packages/shared/src/index.ts';
import { findRunningLocalCluster } from '../scripts/lib/local-cluster.ts';
import { createWatchedImage, serviceAccountKubeConfig } from '../test/support/controller-fixtures.ts';
import { installCrds } from '../test/support/crds.ts';
import { componentPid, readProcessUsage } from './process-usage.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const VARIANTS = {
  apply: "the poller's write: applyStatus as the poller's ServiceAccount",
  'apply-noop': 'the same apply with nothing changed (no etcd write)',
  merge: 'a JSON merge patch of the whole poller status instead',
  'merge-min': 'a JSON merge patch of lastCheckedTime alone',
  'apply-split': 'an apply of lastCheckedTime alone, under a field manager of its own',
  'apply-warn-fields': "applyStatus's request without fieldValidation=Ignore (the server's default, Warn)",
  'apply-vap-all-rules': 'the imageupdates policy without its matchCondition (every rule evaluated)',
  'apply-no-vap': 'the admission policies deleted',
  'apply-admin-no-vap': 'as the admin (system:masters), policies deleted: what bench/poller.ts measures',
  'apply-no-cel': 'the WatchedImage CRD without its x-kubernetes-validations rules',
  'apply-no-challenge': 'the status without registryChallenge',
  'apply-small': 'the status with only digest, lastCheckedTime and the Resolved condition',
  'apply-min': 'the status with only lastCheckedTime',
  'apply-watched': 'with one more watcher of all WatchedImages (as the controller has)',
  get: 'a GET of the WatchedImage, as the admin: the floor of any request',
} as const;
type Variant = keyof typeof VARIANTS;
const VARIANT_NAMES = Object.keys(VARIANTS) as Variant[];

const { values: args } = parseArgs({
  options: {
    env: { type: 'string' },
    count: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '3' },
    variants: { type: 'string', default: VARIANT_NAMES.join(',') },
    profile: { type: 'string' },
    'profile-seconds': { type: 'string', default: '20' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help || !args.env) {
  console.log(
    'node --conditions=@kubewatcher/source bench/status-writes.ts --env DIR [--count 2000] [--rounds 3] [--variants A,B] [--profile DIR [--profile-seconds 20]]\n' +
      '  --env DIR  an environment started by `scripts/local-cluster up --dir DIR`\nvariants:\n' +
      VARIANT_NAMES.map((v) => `  ${v.padEnd(20)} ${VARIANTS[v]}`).join('\n'),
  );
  process.exit(args.help ? 0 : 2);
}
const count = Number(args.count);
const rounds = Number(args.rounds);
const IN_FLIGHT = 8;
const variants = args.variants.split(',') as Variant[];
const unknown = variants.filter((v) => !(v in VARIANTS));
if (unknown.length > 0) {
  console.error(`bench/status-writes.ts: unknown --variants ${unknown.join(', ')} (see --help)`);
  process.exit(2);
}

const info = await findRunningLocalCluster(args.env);
if (!info) throw new Error(`no environment in ${args.env}`);
const kubectl = (...a: string[]) =>
  run(join(info.binDir, 'kubectl'), ['--kubeconfig', info.kubeconfig, ...a], { maxBuffer: 256 << 20 });
const [apiserverPid, etcdPid] = await Promise.all([
  componentPid(info, 'kube-apiserver'),
  componentPid(info, 'etcd'),
]);
const cpuOf = (pid: number | undefined) =>
  pid ? (readProcessUsage(pid)?.cpuSeconds ?? Number.NaN) : Number.NaN;

const admin = loadKubeConfig(info.kubeconfig);
const core = admin.makeApiClient(CoreV1Api);
const custom = admin.makeApiClient(CustomObjectsApi);
const namespace = `status-writes-${Date.now().toString(36)}`;
const nameOf = (i: number) => `wi-${i}`;
const wiPath = (i: number) =>
  `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${WATCHED_IMAGE.plural}/${nameOf(i)}`;

// --- production's objects -------------------------------------------------------------------------
const ADMISSION = ['imageupdates.yaml', 'controller.yaml'].map((f) =>
  join(repoRoot, 'manifests/base/admission', f),
);
await installCrds(info, 'kubewatcher-bench');
await kubectl('apply', '--server-side', '-f', join(repoRoot, 'manifests/base/namespace.yaml'));
await kubectl(
  'apply',
  '--server-side',
  '-n',
  'kubewatcher-system',
  '-f',
  join(repoRoot, 'manifests/base/rbac/poller.yaml'),
);
await kubectl('apply', '--server-side', ...ADMISSION.flatMap((f) => ['-f', f]));
const poller = reuseConnections(
  await serviceAccountKubeConfig(info, { core }, 'kubewatcher-system', 'kubewatcher-poller'),
);

function status(time: string, shape: 'full' | 'small' | 'min' = 'full'): Record<string, unknown> {
  const digest = `sha256:${'e0'.repeat(32)}`;
  if (shape === 'min') return { lastCheckedTime: time };
  const conditions = [
    {
      type: 'Resolved',
      status: 'True',
      reason: 'Resolved',
      message: `127.0.0.1:5000/bench/app-0:t0 resolves to ${digest}`,
      lastTransitionTime: '2026-01-01T00:00:00Z',
      observedGeneration: 1,
    },
  ];
  if (shape === 'small') return { digest, lastCheckedTime: time, conditions };
  return {
    resolvedImage: '127.0.0.1:5000/bench/app-0:t0',
    digest,
    shortDigest: 'e0'.repeat(6),
    lastCheckedTime: time,
    lastChangedTime: '2026-01-01T00:00:00Z',
    registryChallenge: {
      registry: '127.0.0.1:5000',
      scheme: 'Bearer',
      realm: 'http://localhost:5001/token',
      service: 'kubewatcher-local-registry',
    },
    conditions,
  };
}

const apply = (kc: KubeConfig, i: number, st: unknown) =>
  applyStatus(kc, {
    resource: WATCHED_IMAGE,
    namespace,
    name: nameOf(i),
    fieldManager: FIELD_MANAGER.poller,
    status: st,
  });

/** applyStatus's request without its fieldValidation=Ignore (the server's default, Warn). */
const applyWarningOfUnknownFields = (kc: KubeConfig, i: number, st: unknown) =>
  requestJson(kc, {
    method: 'PATCH',
    path: `${wiPath(i)}/status`,
    query: { fieldManager: FIELD_MANAGER.poller, force: 'true' },
    contentType: PatchStrategy.ServerSideApply,
    ignoreResponse: true,
    body: {
      apiVersion: API_VERSION,
      kind: WATCHED_IMAGE.kind,
      metadata: { name: nameOf(i), namespace },
      status: st,
    },
  });

async function forEach(write: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < count) await write(next++);
    }),
  );
}

// --- switches: the VAP and the CRD's CEL rules ----------------------------------------------------
/** Whether the VAP refuses the admin's write of status.digest (it does while installed). */
async function vapActive(): Promise<boolean> {
  try {
    await requestJson(admin, {
      method: 'PATCH',
      path: `${wiPath(0)}/status`,
      contentType: PatchStrategy.MergePatch,
      query: { dryRun: 'All' },
      body: { status: { digest: `sha256:${'f'.repeat(64)}` } },
      ignoreResponse: true,
    });
    return false;
  } catch {
    return true;
  }
}
async function setVap(on: boolean) {
  if (on) await kubectl('apply', '--server-side', ...ADMISSION.flatMap((f) => ['-f', f]));
  else await kubectl('delete', '--ignore-not-found', ...ADMISSION.flatMap((f) => ['-f', f]));
  for (let t = 0; (await vapActive()) !== on; t++) {
    if (t > 100) throw new Error(`VAP still ${on ? 'inactive' : 'active'}`);
    await delay(200);
  }
}
/** The shipped imageupdates policy without its matchConditions: every rule evaluated on every write. */
async function setVapAllRules(on: boolean) {
  if (!on) return setVap(true);
  const docs = parseAllDocuments(await readFile(ADMISSION[0]!, 'utf8')).map((d) => d.toJS());
  delete docs.find((d) => d.kind === 'ValidatingAdmissionPolicy').spec.matchConditions;
  const file = join(info!.dir, 'imageupdates-all-rules.yaml');
  await writeFile(file, docs.map((d) => toYaml(d)).join('---\n'));
  await kubectl('apply', '--server-side', '--force-conflicts', '-f', file);
  await delay(3000);
  if (!(await vapActive())) throw new Error('policy inactive');
}
const CRD_FILE = join(repoRoot, 'crds/kubewatcher.io_watchedimages.yaml');
function stripCel(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(stripCel);
  if (node && typeof node === 'object') {
    return Object.fromEntries(
      Object.entries(node)
        .filter(([k]) => k !== 'x-kubernetes-validations')
        .map(([k, v]) => [k, stripCel(v)]),
    );
  }
  return node;
}
/** Whether the CRD's CEL rules refuse an uppercase repository name (they do while present). */
async function celActive(): Promise<boolean> {
  try {
    await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: WATCHED_IMAGE.plural,
      namespace,
      dryRun: 'All',
      body: {
        apiVersion: API_VERSION,
        kind: WATCHED_IMAGE.kind,
        metadata: { name: 'probe', namespace },
        spec: { image: 'Upper/App:v1' },
      },
    });
    return false;
  } catch {
    return true;
  }
}
async function setCel(on: boolean) {
  if (on) await installCrds(info!, 'kubewatcher-bench');
  else {
    const docs = parseAllDocuments(await readFile(CRD_FILE, 'utf8')).map((d) => d.toJS());
    const file = join(info!.dir, 'watchedimages-no-cel.yaml');
    await writeFile(file, docs.map((d) => toYaml(stripCel(d))).join('---\n'));
    await kubectl(
      'apply',
      '--server-side',
      '--force-conflicts',
      '--field-manager=kubewatcher-bench',
      '-f',
      file,
    );
  }
  for (let t = 0; (await celActive()) !== on; t++) {
    if (t > 100) throw new Error(`CEL rules still ${on ? 'absent' : 'present'}`);
    await delay(200);
  }
  await delay(1000);
}

// --- measuring ----------------------------------------------------------------------------------
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
let stamp = 0;
const nextTime = () => new Date(Date.UTC(2026, 0, 2, 0, 0, stamp++)).toISOString();

/** A JSON merge patch of the status, as the poller. */
const mergePatch = (i: number, st: unknown) =>
  requestJson(poller, {
    method: 'PATCH',
    path: `${wiPath(i)}/status`,
    query: { fieldManager: FIELD_MANAGER.poller },
    contentType: PatchStrategy.MergePatch,
    body: { status: st },
    ignoreResponse: true,
  });

function writerOf(v: Variant): (time: string) => (i: number) => Promise<unknown> {
  switch (v) {
    case 'apply':
    case 'apply-no-vap':
    case 'apply-no-cel':
    case 'apply-watched':
    case 'apply-vap-all-rules':
      return (t) => (i) => apply(poller, i, status(t));
    case 'apply-warn-fields':
      return (t) => (i) => applyWarningOfUnknownFields(poller, i, status(t));
    case 'merge-min':
      return (t) => (i) => mergePatch(i, { lastCheckedTime: t });
    case 'apply-split':
      // lastCheckedTime under a manager of its own: the other fields stay the main manager's.
      return (t) => (i) =>
        applyStatus(poller, {
          resource: WATCHED_IMAGE,
          namespace,
          name: nameOf(i),
          fieldManager: `${FIELD_MANAGER.poller}-check`,
          status: { lastCheckedTime: t },
        });
    case 'apply-no-challenge':
      return (t) => (i) => {
        const { registryChallenge: _, ...rest } = status(t);
        return apply(poller, i, rest);
      };
    case 'apply-noop': {
      const fixed = status('2026-01-01T12:00:00Z');
      return () => (i) => apply(poller, i, fixed);
    }
    case 'apply-admin-no-vap':
      return (t) => (i) => apply(admin, i, status(t));
    case 'apply-small':
      return (t) => (i) => apply(poller, i, status(t, 'small'));
    case 'apply-min':
      return (t) => (i) => apply(poller, i, status(t, 'min'));
    case 'merge':
      return (t) => (i) => mergePatch(i, status(t));
    case 'get':
      return () => (i) => requestJson(admin, { method: 'GET', path: wiPath(i), ignoreResponse: true });
  }
}

async function batch(write: (i: number) => Promise<unknown>) {
  const a0 = cpuOf(apiserverPid);
  const e0 = cpuOf(etcdPid);
  const t0 = performance.now();
  await forEach(write);
  return {
    seconds: (performance.now() - t0) / 1000,
    apiMs: ((cpuOf(apiserverPid) - a0) * 1000) / count,
    etcdMs: ((cpuOf(etcdPid) - e0) * 1000) / count,
  };
}

async function profile(v: Variant, writer: (time: string) => (i: number) => Promise<unknown>) {
  const seconds = Number(args['profile-seconds']);
  const file = join(args.profile!, `${v}.pprof`);
  let done = false;
  const taking = run(
    join(info!.binDir, 'kubectl'),
    ['--kubeconfig', info!.kubeconfig, 'get', '--raw', `/debug/pprof/profile?seconds=${seconds}`],
    { encoding: 'buffer', maxBuffer: 64 << 20 },
  ).finally(() => {
    done = true;
  });
  let writes = 0;
  const t0 = performance.now();
  while (!done) {
    const write = writer(nextTime());
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (!done && next < count) {
          await write(next++);
          writes++;
        }
      }),
    );
  }
  await writeFile(file, (await taking).stdout);
  console.log(`  profile ${file}: ${writes} writes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

await core.createNamespace({ body: { metadata: { name: namespace } } });
let watch: AbortController | undefined;
try {
  await forEach((i) =>
    createWatchedImage({ custom }, namespace, nameOf(i), {
      image: `127.0.0.1:5000/bench/app-${i % 10}:t${i % 100}`,
      pullSecrets: [{ name: 'bench-registry' }],
      interval: '2m',
    }),
  );
  await forEach((i) => apply(poller, i, status(nextTime())));
  console.log(
    `${count} WatchedImages in ${namespace}; ${IN_FLIGHT} writes in flight; load ${loadavg()[0]!.toFixed(2)}`,
  );
  const results = new Map<Variant, { seconds: number; apiMs: number; etcdMs: number }[]>();
  const profiled = new Set<Variant>();
  for (let round = 0; round < rounds; round++) {
    for (const v of variants) {
      if (v.includes('no-vap')) await setVap(false);
      if (v === 'apply-vap-all-rules') await setVapAllRules(true);
      if (v === 'apply-no-cel') await setCel(false);
      if (v === 'apply-watched') {
        watch = await new Watch(admin).watch(
          `/apis/${GROUP}/${VERSION}/${WATCHED_IMAGE.plural}`,
          {},
          () => {},
          () => {},
        );
        await delay(500);
      }
      const writer = writerOf(v);
      try {
        await forEach(writer(nextTime()));
        const r = await batch(writer(nextTime()));
        results.set(v, [...(results.get(v) ?? []), r]);
        console.log(
          `  round ${round + 1} ${v.padEnd(20)} apiserver ${r.apiMs.toFixed(2)} ms/write, etcd ${r.etcdMs.toFixed(2)} ms, load ${loadavg()[0]!.toFixed(2)}`,
        );
        if (args.profile && !profiled.has(v)) {
          profiled.add(v);
          await profile(v, writer);
        }
      } finally {
        watch?.abort();
        watch = undefined;
        if (v.includes('no-vap')) await setVap(true);
        if (v === 'apply-vap-all-rules') await setVapAllRules(false);
        if (v === 'apply-no-cel') await setCel(true);
      }
    }
  }
  const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join('/');
  console.log(
    `\nmedian of ${rounds} rounds, ${count} writes each; load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  for (const [v, rs] of results) {
    console.log(
      `${v.padEnd(20)} apiserver ${median(rs.map((r) => r.apiMs)).toFixed(2)} ms/write ` +
        `(${fmt(rs.map((r) => r.apiMs))}), etcd ${median(rs.map((r) => r.etcdMs)).toFixed(2)} ms, ` +
        `${Math.round(count / median(rs.map((r) => r.seconds)))} writes/s`,
    );
  }
} finally {
  await core.deleteNamespace({ name: namespace });
  // The policies refuse the admin's status writes, which other benches (bench/poller.ts) make.
  await kubectl('delete', '--ignore-not-found', ...ADMISSION.flatMap((f) => ['-f', f]));
}
