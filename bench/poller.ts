/**
 * Poller benchmark: registry requests, run time and peak memory of one poller run over N WatchedImages.
 *
 *   node --conditions=@kubewatcher/source bench/poller.ts [--sizes 100,1000,5000] [--repeats 3]
 *        [--repositories 10] [--env DIR] [--dist | --bundle] [--node-options="--max-semi-space-size=2 ..."]
 *        [--compare-bundle FILE]
 *
 * `--dist` runs the built program as the CronJob does (the start-up snapshot
 * packages/poller/dist/bundle/main.blob with the CronJob's node flags, from scripts/lib/programs.ts; after
 * `pnpm -r run build`); `--bundle` the ES module bundle beside it (main.mjs, what the image ran before the
 * snapshot) with the same flags; by default the sources run through Node's type stripping (slower start,
 * ~20 MB more). `--node-options` are passed to
 * the poller's node on top (V8 heap flags, to see what other container args would do).
 * Starts its own local environment (control plane + registries, scripts/lib/local-cluster.ts) in a temp
 * folder and stops it at the end; `--env DIR` uses one already running there (`scripts/local-cluster up
 * --dir DIR`) instead. For each size N it pushes M = N/5 distinct references (tags spread over
 * `--repositories` repositories) to the token-auth registry, creates N WatchedImages (each reference
 * watched five times) in a fresh namespace with one pull secret, and runs the poller CLI as a child
 * process twice: the first run (every WatchedImage takes its baseline) and a steady-state run
 * (`--ignore-interval`: every WatchedImage checked again before it is due, nothing changed), then,
 * unless `--skip-due`, a due run once the WatchedImages' 2m interval has passed (the scheduled check,
 * nothing changed). Each namespace has its check record ConfigMap and the poller runs with
 * `--check-record`, as the CronJob does, so the due run writes about half of the statuses and records
 * the rest; `--without-check-record` runs without it (every scheduled check written), and
 * `--compare-check-record` runs both, interleaved as `--compare-bundle` does. Per run it reports:
 *
 * - registry requests by kind from the poller's own count (RegistryClient.stats(), in the run summary)
 *   and, as a cross-check, from the registry's access log (HEAD/GET of manifests with the poller's
 *   User-Agent) and the token server's log (pull-scope token requests);
 * - the WatchedImage status writes and all requests kube-apiserver counted during the run
 *   (apiserver_request_total from its /metrics);
 * - the run's own duration (summary.durationMs) and the wall time of the whole process (Node start,
 *   module loading and exit included);
 * - the peak RSS and CPU seconds of the poller process (`/usr/bin/time -v`, else bench/process-usage.ts
 *   loaded into it), and the CPU seconds kube-apiserver spent meanwhile (its /proc figures): on a shared
 *   machine the CPU seconds say more than the wall time.
 *
 * Each size is repeated `--repeats` times in fresh namespaces; the table shows medians. It prints
 * numbers and asserts nothing (see bench/README.md for the targets and the last results).
 *
 * `--compare-bundle FILE` compares two builds on the same machine at the same time: FILE (an ES module
 * bundle, e.g. a copy of another checkout's packages/poller/dist/bundle/main.mjs, run with the CronJob's
 * node flags) runs beside this checkout's program, each in its own namespace, run by run (first A,
 * first B, steady A, steady B, due A, due B), so both meet the same load; the table has a row per program.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { loadKubeConfig } from '../packages/shared/src/index.ts';
import type { LocalClusterInfo } from '../scripts/lib/cluster-info.ts';
import { pushTestImage } from '../scripts/lib/images.ts';
import { findRunningLocalCluster, startLocalCluster } from '../scripts/lib/local-cluster.ts';
import { ENTRY_FILE, PROGRAMS, shippedNodeArgs } from '../scripts/lib/programs.ts';
import {
  apiserverRequests,
  createWatchedImage,
  metricValue,
  type Sample,
} from '../test/support/controller-fixtures.ts';
import { installCrds } from '../test/support/crds.ts';
import {
  componentPid,
  GNU_TIME,
  type ProcessUsage,
  readProcessUsage,
  USAGE_FILE_ENV,
} from './process-usage.ts';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const USER_AGENT = 'kubewatcher-poller';
const PULL_SECRET = 'bench-registry';
/** The check record ConfigMap, in each bench namespace (the manifests ship one in kubewatcher-system). */
const CHECK_RECORD = 'kubewatcher-poller-checks';
const CREATE_CONCURRENCY = 16;
const TARGET = { seconds: 15, rssMb: 150 };
/**
 * Long enough that the steady run, right after a first run of a minute or so, checks before anything
 * is due; short enough to wait for the due run.
 */
const INTERVAL = '2m';
/** The poller checks a WatchedImage up to 15 s early (plan.ts, dueTolerance): wait a little longer. */
const DUE_AFTER_MS = 120_000 - 15_000 + 2_000;

const { values: flags } = parseArgs({
  options: {
    sizes: { type: 'string', default: '100,1000,5000' },
    repeats: { type: 'string', default: '3' },
    repositories: { type: 'string', default: '10' },
    env: { type: 'string' },
    'node-options': { type: 'string', default: '' },
    dist: { type: 'boolean', default: false },
    bundle: { type: 'boolean', default: false },
    'skip-due': { type: 'boolean', default: false },
    'compare-bundle': { type: 'string' },
    'without-check-record': { type: 'boolean', default: false },
    'compare-check-record': { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (flags.help) {
  console.log(
    'node --conditions=@kubewatcher/source bench/poller.ts [--sizes 100,1000,5000] [--repeats 3] [--repositories 10] [--env DIR] [--node-options="--max-semi-space-size=2 --max-old-space-size=128"] [--dist | --bundle] [--skip-due] [--compare-bundle FILE] [--without-check-record | --compare-check-record]',
  );
  process.exit(0);
}
const sizes = flags.sizes.split(',').map((s) => Number(s.trim()));
const repeats = Number(flags.repeats);
const repositoryCount = Number(flags.repositories);
if (sizes.some((n) => !Number.isInteger(n) || n < 5) || !(repeats >= 1) || !(repositoryCount >= 1)) {
  console.error('bench/poller.ts: --sizes takes integers ≥ 5; --repeats and --repositories integers ≥ 1');
  process.exit(2);
}

const say = (line: string) => console.error(`[bench] ${line}`);
const extraNodeOptions = flags['node-options'].split(/\s+/).filter(Boolean);
// Node's arguments up to the poller's own: the shipped program (the start-up snapshot and the CronJob's
// node flags, after `pnpm -r run build`) or the sources (type stripping); `extra` node flags with them.
const pollerNodeArgs = (extra: string[]) =>
  flags.dist
    ? shippedNodeArgs('poller', repoRoot, extra)
    : flags.bundle
      ? [...PROGRAMS.poller.nodeFlags, ...extra, join(repoRoot, PROGRAMS.poller.bundleDir, ENTRY_FILE)]
      : [...extra, '--conditions=@kubewatcher/source', join(repoRoot, 'packages/poller/src/main.ts')];

/**
 * A poller program to measure: node's arguments up to the poller's own, `extra` node flags with them,
 * and whether it runs with the check record.
 */
interface Program {
  label: string;
  nodeArgs: (extra: string[]) => string[];
  checkRecord: boolean;
}
const compareBundle = flags['compare-bundle'];
if (compareBundle !== undefined && !existsSync(compareBundle)) {
  console.error(`bench/poller.ts: --compare-bundle ${compareBundle} does not exist`);
  process.exit(2);
}
if (compareBundle !== undefined && flags['compare-check-record']) {
  console.error(
    'bench/poller.ts: --compare-bundle and --compare-check-record compare one thing each: pick one',
  );
  process.exit(2);
}
const withRecord = !flags['without-check-record'];
const programs: Program[] = [
  {
    label: compareBundle === undefined && !flags['compare-check-record'] ? '' : 'A',
    nodeArgs: pollerNodeArgs,
    checkRecord: withRecord,
  },
  ...(compareBundle === undefined
    ? []
    : [
        {
          label: 'B',
          nodeArgs: (extra: string[]) => [...PROGRAMS.poller.nodeFlags, ...extra, compareBundle],
          checkRecord: withRecord,
        },
      ]),
  // The same program without the record, run by run beside A.
  ...(flags['compare-check-record'] ? [{ label: 'B', nodeArgs: pollerNodeArgs, checkRecord: false }] : []),
];

// ---------------------------------------------------------------------------------------------------
// Images: one image per repository pushed with crane, then each further tag as a manifest PUT with
// its own annotation (a distinct digest over the same blobs): a thousand tags in seconds.

interface Reference {
  repository: string;
  tag: string;
}

function references(m: number): Reference[] {
  return Array.from({ length: m }, (_, j) => ({
    repository: `bench/app-${j % repositoryCount}`,
    tag: `t${Math.floor(j / repositoryCount)}`,
  }));
}

async function registryToken(info: LocalClusterInfo, repository: string): Promise<string> {
  const { token } = info.registries;
  const url = new URL(token.tokenRealm);
  url.searchParams.set('service', token.tokenService);
  url.searchParams.set('scope', `repository:${repository}:pull,push`);
  const res = await fetch(url, {
    headers: {
      authorization: `Basic ${Buffer.from(`${token.username}:${token.password}`).toString('base64')}`,
    },
  });
  if (!res.ok) throw new Error(`token for ${repository}: ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** Makes every reference exist in the token registry (tags already pushed are left as they are). */
async function pushReferences(info: LocalClusterInfo, refs: readonly Reference[], pushed: Set<string>) {
  const { token } = info.registries;
  const byRepository = new Map<string, string[]>();
  for (const r of refs) {
    if (pushed.has(`${r.repository}:${r.tag}`)) continue;
    byRepository.set(r.repository, [...(byRepository.get(r.repository) ?? []), r.tag]);
  }
  for (const [repository, tags] of byRepository) {
    const base = await pushTestImage({ info, registry: 'token', repository, tag: 'base' });
    const bearer = `Bearer ${await registryToken(info, repository)}`;
    const manifestUrl = (ref: string) => `${token.url}/v2/${repository}/manifests/${ref}`;
    const got = await fetch(manifestUrl(base.digest), {
      headers: { authorization: bearer, accept: base.mediaType },
    });
    if (!got.ok) throw new Error(`GET ${repository}@${base.digest}: ${got.status}`);
    const manifest = (await got.json()) as Record<string, unknown>;
    await forEachLimit(tags, CREATE_CONCURRENCY, async (tag) => {
      const body = JSON.stringify({ ...manifest, annotations: { 'io.kubewatcher.bench/tag': tag } });
      const res = await fetch(manifestUrl(tag), {
        method: 'PUT',
        headers: { authorization: bearer, 'content-type': base.mediaType },
        body,
      });
      if (res.status !== 201) throw new Error(`PUT ${repository}:${tag}: ${res.status} ${await res.text()}`);
      pushed.add(`${repository}:${tag}`);
    });
  }
}

// ---------------------------------------------------------------------------------------------------
// Cluster side

async function createNamespaceWithWatchedImages(
  info: LocalClusterInfo,
  namespace: string,
  n: number,
  refs: readonly Reference[],
): Promise<number> {
  const kc = loadKubeConfig(info.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const { token } = info.registries;
  await core.createNamespace({ body: { metadata: { name: namespace } } });
  await core.createNamespacedConfigMap({ namespace, body: { metadata: { name: CHECK_RECORD } } });
  const auth = Buffer.from(`${token.username}:${token.password}`).toString('base64');
  await core.createNamespacedSecret({
    namespace,
    body: {
      metadata: { name: PULL_SECRET },
      type: 'kubernetes.io/dockerconfigjson',
      data: {
        '.dockerconfigjson': Buffer.from(JSON.stringify({ auths: { [token.host]: { auth } } })).toString(
          'base64',
        ),
      },
    },
  });
  const started = performance.now();
  await forEachLimit(
    Array.from({ length: n }, (_, i) => i),
    CREATE_CONCURRENCY,
    async (i) => {
      const ref = refs[i % refs.length]!;
      await createWatchedImage({ custom }, namespace, `wi-${i}`, {
        image: `${token.host}/${ref.repository}:${ref.tag}`,
        pullSecrets: [{ name: PULL_SECRET }],
        interval: INTERVAL,
      });
    },
  );
  return (performance.now() - started) / 1000;
}

// ---------------------------------------------------------------------------------------------------
// One poller run as a child process, measured

interface RunMeasure {
  summary: {
    watchedImages: number;
    checked: number;
    baselined: number;
    unchanged: number;
    failed: number;
    resolutions: number;
    checksRecorded: number;
    requests: { head: number; get: number; token: number; total: number };
    durationMs: number;
  };
  /** The same requests as the registry and the token server saw them. */
  observed: { head: number; get: number; token: number };
  /**
   * What kube-apiserver counted meanwhile (apiserver_request_total): WatchedImage status writes
   * (APPLY or PATCH of watchedimages/status) and every request.
   */
  statusWrites: number;
  apiRequests: number;
  wallSeconds: number;
  peakRssMb: number;
  /** CPU seconds of the poller process, and of kube-apiserver and etcd while it ran. */
  pollerCpu: number;
  apiserverCpu: number;
  etcdCpu: number;
}

/** pid of a component of the local environment, from its `pids` record. */
async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

async function readFrom(file: string, offset: number): Promise<string> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const buffer = Buffer.alloc(Math.max(0, size - offset));
    await handle.read(buffer, 0, buffer.length, offset);
    return buffer.toString('utf8');
  } finally {
    await handle.close();
  }
}

async function runPoller(
  info: LocalClusterInfo,
  program: Program,
  namespace: string,
  extra: string[],
): Promise<RunMeasure> {
  const accessLog = join(info.dir, 'logs', 'registry-token.log');
  const tokenLog = join(info.dir, 'logs', 'token-server.log');
  const [accessStart, tokenStart] = await Promise.all([fileSize(accessLog), fileSize(tokenLog)]);

  const useTime = existsSync(GNU_TIME);
  const work = await mkdtemp(join(tmpdir(), 'bench-poller-'));
  const usageFile = join(work, 'usage.jsonl');
  // The token registry over plain HTTP, its token service named in realmHosts: then the challenge
  // the first run remembers in status is used up front by the next (no anonymous 401 per run).
  const registriesFile = join(work, 'registries.json');
  const { token } = info.registries;
  await writeFile(
    registriesFile,
    JSON.stringify({ [token.host]: { plainHttp: true, realmHosts: [new URL(token.tokenRealm).host] } }),
  );
  // Without GNU time, the process reports its own CPU and peak RSS as it exits (sources only: a process
  // started from a snapshot runs no --import).
  const nodeArgs = program.nodeArgs(
    useTime
      ? extraNodeOptions
      : [...extraNodeOptions, `--import=${join(repoRoot, 'bench/process-usage.ts')}`],
  );
  const [apiserverPid, etcdPid] = await Promise.all([
    componentPid(info, 'kube-apiserver'),
    componentPid(info, 'etcd'),
  ]);
  const serverCpu = () => ({
    apiserver: apiserverPid ? (readProcessUsage(apiserverPid)?.cpuSeconds ?? Number.NaN) : Number.NaN,
    etcd: etcdPid ? (readProcessUsage(etcdPid)?.cpuSeconds ?? Number.NaN) : Number.NaN,
  });
  const requestsBefore = await apiserverRequests(info);
  const serverBefore = serverCpu();
  const pollerArgs = [
    '--kubeconfig',
    info.kubeconfig,
    '--namespace',
    namespace,
    '--registries-config',
    registriesFile,
    '--log-format',
    'json',
    // As the CronJob runs it: every other unchanged scheduled check goes into the record.
    ...(program.checkRecord ? ['--check-record', `${namespace}/${CHECK_RECORD}`] : []),
    ...extra,
  ];
  const [command, args] = useTime
    ? [GNU_TIME, ['-v', process.execPath, ...nodeArgs, ...pollerArgs]]
    : [process.execPath, [...nodeArgs, ...pollerArgs]];
  const started = performance.now();
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, [USAGE_FILE_ENV]: usageFile },
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => {
    output += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    output += c.toString();
  });
  const code = await new Promise<number | null>((done, fail) => {
    child.once('error', fail);
    child.once('close', done);
  });
  const wallSeconds = (performance.now() - started) / 1000;
  const serverAfter = serverCpu();
  const requestsAfter = await apiserverRequests(info);
  if (code !== 0) throw new Error(`poller exited with ${code}:\n${output.slice(-4000)}`);

  let summary: RunMeasure['summary'] | undefined;
  let rssKb = Number.NaN;
  let cpu = 0;
  for (const line of output.split('\n')) {
    if (line.startsWith('{')) {
      const entry = JSON.parse(line) as { message?: string };
      if (entry.message === 'run complete') summary = entry as unknown as RunMeasure['summary'];
    }
    const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(line);
    if (rss) rssKb = Number(rss[1]);
    const time = /(User|System) time \(seconds\): ([\d.]+)/.exec(line);
    if (time) cpu += Number(time[2]);
  }
  if (!useTime) {
    const usage = JSON.parse((await readFile(usageFile, 'utf8')).trim().split('\n').at(-1)!) as ProcessUsage;
    rssKb = usage.peakRssBytes / 1024;
    cpu = usage.cpuSeconds;
  }
  await rm(work, { recursive: true, force: true });
  if (!summary) throw new Error(`no 'run complete' line in the poller's output:\n${output.slice(-4000)}`);

  // The token server appends its log asynchronously: give it a moment.
  await delay(300);
  const observed = { head: 0, get: 0, token: 0 };
  for (const line of (await readFrom(accessLog, accessStart)).split('\n')) {
    // Combined log format: 127.0.0.1 - - [date] "HEAD /v2/x/manifests/t HTTP/1.1" 200 0 "" "kubewatcher-poller"
    const m = /"(HEAD|GET) (\S+) HTTP\/[\d.]+" \d+ .*"([^"]*)"$/.exec(line);
    if (!m || m[3] !== USER_AGENT || !m[2]!.includes('/manifests/')) continue;
    if (m[1] === 'HEAD') observed.head++;
    else observed.get++;
  }
  for (const line of (await readFrom(tokenLog, tokenStart)).split('\n')) {
    // Only pull scopes: the bench's own pushes ask for push,pull.
    // One line per token request, whatever number of pull scopes it carries.
    if (/ GET \/token .*scope=repository:\S+:pull( repository:\S+:pull)* granted=/.test(line))
      observed.token++;
  }
  const counted = (samples: Sample[], labels: Record<string, string>) =>
    metricValue(samples, 'apiserver_request_total', labels);
  // Server-side apply is counted as verb APPLY, other patches as PATCH.
  const statusWrites = (samples: Sample[]) =>
    ['APPLY', 'PATCH'].reduce(
      (sum, verb) => sum + counted(samples, { verb, resource: 'watchedimages', subresource: 'status' }),
      0,
    );
  return {
    summary,
    observed,
    statusWrites: statusWrites(requestsAfter) - statusWrites(requestsBefore),
    // The bench's own /metrics scrape before the run is counted too: one GET.
    apiRequests: counted(requestsAfter, {}) - counted(requestsBefore, {}) - 1,
    wallSeconds,
    peakRssMb: rssKb / 1024,
    pollerCpu: cpu,
    apiserverCpu: serverAfter.apiserver - serverBefore.apiserver,
    etcdCpu: serverAfter.etcd - serverBefore.etcd,
  };
}

// ---------------------------------------------------------------------------------------------------

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Row {
  n: number;
  m: number;
  program: string;
  run: 'first' | 'steady' | 'due';
  measures: RunMeasure[];
}

function table(rows: Row[]): string {
  const header = [
    'N',
    'M',
    ...(programs.length > 1 ? ['program'] : []),
    'run',
    'HEAD',
    'GET',
    'token',
    'log HEAD/GET/token',
    'target requests',
    'requests per tag',
    'status writes',
    'recorded',
    'API requests',
    'run s',
    'process s',
    'poller CPU s',
    'apiserver CPU s',
    'apiserver ms per write',
    'peak RSS MB',
  ];
  const lines = rows.map((r) => {
    const med = (f: (m: RunMeasure) => number) => median(r.measures.map(f));
    return [
      String(r.n),
      String(r.m),
      ...(programs.length > 1 ? [r.program] : []),
      r.run,
      String(med((x) => x.summary.requests.head)),
      String(med((x) => x.summary.requests.get)),
      String(med((x) => x.summary.requests.token)),
      `${med((x) => x.observed.head)}/${med((x) => x.observed.get)}/${med((x) => x.observed.token)}`,
      // The first run learns the registry's challenge with one anonymous HEAD; later runs remember
      // it (status.registryChallenge). One token carries every repository (up to 20 scopes).
      `${r.run === 'first' ? r.m + 1 : r.m} HEAD + ${Math.ceil(Math.min(repositoryCount, r.m) / 20)} token`,
      (med((x) => x.summary.requests.total) / r.m).toFixed(2),
      String(med((x) => x.statusWrites)),
      String(med((x) => x.summary.checksRecorded ?? 0)),
      String(med((x) => x.apiRequests)),
      (med((x) => x.summary.durationMs) / 1000).toFixed(2),
      med((x) => x.wallSeconds).toFixed(2),
      med((x) => x.pollerCpu).toFixed(2),
      med((x) => x.apiserverCpu).toFixed(1),
      // Per status write: the figure least moved by the machine's load (the list pages' share is
      // small); '-' for runs that write nothing.
      med((x) => x.statusWrites) > 0
        ? med((x) => (x.apiserverCpu * 1000) / Math.max(1, x.statusWrites)).toFixed(2)
        : '-',
      med((x) => x.peakRssMb).toFixed(0),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [fmt(header), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)].join('\n');
}

async function main(): Promise<void> {
  let info: LocalClusterInfo;
  let stop = async () => {};
  if (flags.env) {
    const running = await findRunningLocalCluster(flags.env);
    if (!running) throw new Error(`no local environment runs in ${flags.env}`);
    info = running;
    say(`using the environment in ${flags.env}`);
  } else {
    const dir = await mkdtemp(join(tmpdir(), 'kubewatcher-bench-'));
    say(`starting a local environment in ${dir}`);
    const cluster = await startLocalCluster({ dir, log: (l) => say(l) });
    info = cluster.info;
    stop = async () => {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }

  const rows: Row[] = [];
  try {
    await installCrds(info, 'kubewatcher-bench');
    const pushed = new Set<string>();
    const tag = Date.now().toString(36);
    for (const n of sizes) {
      const m = Math.max(1, Math.floor(n / 5));
      const refs = references(m);
      say(`N=${n}: pushing ${m} references over ${Math.min(repositoryCount, m)} repositories`);
      await pushReferences(info, refs, pushed);
      const rowsOf = programs.map((p) => ({
        first: { n, m, program: p.label, run: 'first', measures: [] } as Row,
        steady: { n, m, program: p.label, run: 'steady', measures: [] } as Row,
        due: { n, m, program: p.label, run: 'due', measures: [] } as Row,
      }));
      const line = (p: Program, r: number, run: string, x: RunMeasure) =>
        say(
          `N=${n} #${r}${p.label ? ` ${p.label}` : ''} ${run.padEnd(7)} ${JSON.stringify(x.summary.requests)} log ${JSON.stringify(x.observed)} status writes ${x.statusWrites}, API requests ${x.apiRequests}, run ${x.summary.durationMs} ms, process ${x.wallSeconds.toFixed(2)} s, CPU ${x.pollerCpu.toFixed(2)} s (apiserver ${x.apiserverCpu.toFixed(1)} s), RSS ${x.peakRssMb.toFixed(0)} MB, checked ${x.summary.checked}, baselined ${x.summary.baselined}, unchanged ${x.summary.unchanged}, failed ${x.summary.failed}, load ${loadavg()[0]!.toFixed(1)}`,
        );
      for (let r = 1; r <= repeats; r++) {
        const namespaces: string[] = [];
        for (const p of programs) {
          const namespace = `bench-${tag}-${n}-${r}${p.label ? `-${p.label.toLowerCase()}` : ''}`;
          const createSeconds = await createNamespaceWithWatchedImages(info, namespace, n, refs);
          say(`N=${n} #${r}: created ${n} WatchedImages in ${namespace} in ${createSeconds.toFixed(1)} s`);
          namespaces.push(namespace);
        }
        // Run by run, program by program: both programs meet the same load.
        for (const [i, p] of programs.entries()) {
          const a = await runPoller(info, p, namespaces[i]!, []);
          line(p, r, 'first', a);
          rowsOf[i]!.first.measures.push(a);
        }
        let steadyEnded = 0;
        for (const [i, p] of programs.entries()) {
          const b = await runPoller(info, p, namespaces[i]!, ['--ignore-interval']);
          line(p, r, 'steady', b);
          rowsOf[i]!.steady.measures.push(b);
          // The steady run may have moved lastCheckedTime: the interval counts from its end.
          steadyEnded = Date.now();
        }
        if (flags['skip-due']) continue;
        // Once spec.interval has passed since the steady run, every WatchedImage is due: the scheduled check.
        await delay(Math.max(0, steadyEnded + DUE_AFTER_MS - Date.now()));
        for (const [i, p] of programs.entries()) {
          const c = await runPoller(info, p, namespaces[i]!, []);
          line(p, r, 'due', c);
          rowsOf[i]!.due.measures.push(c);
        }
      }
      for (const { first, steady, due } of rowsOf) {
        rows.push(first, steady, ...(due.measures.length > 0 ? [due] : []));
      }
    }
  } finally {
    await stop();
  }

  const out = [
    `Poller benchmark: medians of ${repeats} run(s) per row; ${repositoryCount} repositories on the token-auth registry; one pull secret.`,
    'HEAD/GET/token: the poller\'s count (RegistryClient.stats()); "log": the registry access log and the token server log.',
    'run s: summary.durationMs (list → resolve → write); process s: the whole child process, Node start and exit included.',
    'CPU s: the poller process (user + system), and kube-apiserver during the run.',
    'status writes: APPLY/PATCH of watchedimages/status, and API requests: all requests, as kube-apiserver counted them (apiserver_request_total) during the run.',
    "recorded: scheduled checks left unwritten in the check record (--check-record, one ConfigMap update per run), the poller's summary.checksRecorded; 0 for a program run without it.",
    ...(flags['compare-check-record']
      ? [
          "program A: this checkout's with --check-record; program B: the same without it (every scheduled check writes its status); run by run, interleaved.",
        ]
      : flags['without-check-record']
        ? ['Run without --check-record: every scheduled check writes its status.']
        : []),
    ...(compareBundle === undefined
      ? []
      : [
          `program A: this checkout's; program B: ${compareBundle} (an ES module bundle, the CronJob's node flags); run by run, interleaved.`,
        ]),
    `Poller: ${flags.dist ? `the start-up snapshot as the CronJob runs it (node ${shippedNodeArgs('poller', '.').join(' ')})` : flags.bundle ? `the ES module bundle (node ${PROGRAMS.poller.nodeFlags.join(' ')} main.mjs)` : 'sources (type stripping), default V8 flags'}${extraNodeOptions.length ? `, plus node ${extraNodeOptions.join(' ')}` : ''}; machine: ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(1)} at the end.`,
    `Targets: requests = M HEAD (M + 1 in the first run, which learns the challenge) and one token per registry and credential, ≤ 1.1 per tag in steady state; N=5000 under ${TARGET.seconds} s; peak RSS under ${TARGET.rssMb} MB.`,
    '',
    table(rows),
  ].join('\n');
  console.log(out);
  if (process.env.BENCH_OUT) await writeFile(process.env.BENCH_OUT, `${out}\n`);
  const problems = rows
    .filter((r) => r.measures.some((x) => x.summary.failed > 0))
    .map((r) => `N=${r.n} ${r.run}: some WatchedImages failed`);
  for (const p of problems) say(p);
}

await main();
