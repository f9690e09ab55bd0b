/**
 * Kubewatcher and Keel side by side, on the same local control plane, registry and workloads.
 *
 *   KEEL_BIN=/path/to/keel node --conditions=@kubewatcher/source bench/keel-vs-kubewatcher.ts
 *        [--sizes 50,500] [--repeats 3] [--intervals 10,60] [--systems kubewatcher,keel] [--json FILE] [--keep]
 *
 * For each size N, poll interval, repeat and system, in a fresh local environment (scripts/lib/local-cluster.ts):
 * M = N/5 repositories on the token-auth registry, reached through a counting proxy (bench/registry-proxy.ts);
 * N Deployments (replicas 1, five per image, a dockerconfigjson pull secret); the system under test polling
 * every interval (10 s, and the shipped 1 m); a steady window of six cycles (three at 1 m) to count registry
 * requests, with the API server's own CPU and request rate over the system's lifetime; then K = M/2 tags
 * re-pushed, timed from push to the Deployment's generation bump (a watch) and to rollout complete; the
 * generation bumps of every Deployment counted to check that each re-pushed tag rolled its Deployments
 * exactly once and nothing else moved. CPU seconds and peak RSS come from /proc (bench/process-usage.ts),
 * for each poller run from GNU time (the kernel's rusage of the exited child).
 * A system that has not baselined every repository within 5 minutes is reported with how far it got, and
 * the run goes on.
 *
 * Kubewatcher: the controller as a process, the poller run every interval, both under their service
 * accounts, both exactly what the image ships: the bundles of `pnpm -r run build` (built first) with the
 * manifests' node flags (scripts/lib/programs.ts), in a working directory that holds the image's
 * /app/package.json; below 1 m with --ignore-interval (the API's minimum interval is 1m), at 1 m as the CronJob
 * runs it. Keel: the binary named by KEEL_BIN (never built here), `keel --no-incluster` with POLL=true,
 * annotations force + match-tag + poll + @every <interval>, started with only PATH, HOME and its own
 * variables, AUTH_MODE=external-proxy so that its HTTP server binds 127.0.0.1:9300 (checked free
 * first). Without KEEL_BIN only Kubewatcher runs, and the report says so. Keel tries HTTPS before HTTP:
 * TLS handshakes against the plain-HTTP proxy are counted as their own kind.
 *
 * It asserts nothing: it prints a Markdown table of medians over the repeats, and writes every raw figure
 * as JSON.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { constants, existsSync, openSync, readFileSync } from 'node:fs';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { AppsV1Api, KubeConfig, type V1Deployment, Watch } from '@kubernetes/client-node';
import { imageWorkingDir } from '../scripts/lib/image-build.ts';
import { pushTestImage } from '../scripts/lib/images.ts';
import { SYSTEM_NAMESPACE } from '../scripts/lib/in-cluster.ts';
import {
  type LocalClusterInfo,
  logTail,
  resolveBinDir,
  startLocalCluster,
} from '../scripts/lib/local-cluster.ts';
import {
  installForLocalProcesses,
  serviceAccountKubeconfig,
  startShippedProgram,
} from '../scripts/lib/local-processes.ts';
import { buildShippedPrograms, shippedNodeArgs } from '../scripts/lib/programs.ts';
import { waitFor } from '../scripts/lib/wait-for.ts';
import { apiserverRequests, metricValue } from '../test/support/controller-fixtures.ts';
import {
  componentPid,
  GNU_TIME,
  type ProcessUsage,
  readProcessUsage,
  readTimedUsage,
  timedArgs,
} from './process-usage.ts';
import {
  type CountingProxy,
  REQUEST_KINDS,
  type RequestCounts,
  startCountingProxy,
} from './registry-proxy.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const NAMESPACE = 'bench';
const TAG = 'stable';
const PULL_SECRET = 'bench-registry';
const DEPLOYMENTS_PER_IMAGE = 5;
/** Poll cycles counted in the steady window, and watched after the rollouts for doubled updates. */
const steadyCycles = (intervalMs: number) => (intervalMs >= 60_000 ? 3 : 6);
const graceCycles = (intervalMs: number) => Math.max(1, Math.ceil(30_000 / intervalMs));
/** How long a system gets to baseline every repository before the run goes on without. */
const BASELINE_TIMEOUT_MS = 300_000;
/** Keel's HTTP server (webhooks, UI, metrics) listens here; it cannot be moved. */
const KEEL_PORT = 9300;
const PUSH_CONCURRENCY = 4;

type SystemName = 'kubewatcher' | 'keel';
const SYSTEMS: readonly SystemName[] = ['kubewatcher', 'keel'];

const usage = `Usage: node --conditions=@kubewatcher/source bench/keel-vs-kubewatcher.ts [options]

  --sizes LIST      Deployments per run, comma separated (default 50,500); images = size / 5
  --repeats N       runs per size and system; the table shows medians (default 3)
  --intervals LIST  poll intervals in seconds for both systems, comma separated (default 10,60:
                    10 s, and the shipped 1 m)
  --systems LIST    kubewatcher,keel (default both; Keel runs only when KEEL_BIN names its binary)
  --json FILE       where to write every raw figure (default: a file in the temp folder)
  --keep            keep each run's environment folder (logs) instead of removing it`;

const { values: opts } = parseArgs({
  options: {
    sizes: { type: 'string', default: '50,500' },
    repeats: { type: 'string', default: '3' },
    intervals: { type: 'string', default: '10,60' },
    systems: { type: 'string', default: SYSTEMS.join(',') },
    json: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  console.log(usage);
  process.exit(0);
}
const sizes = opts.sizes.split(',').map(Number);
const repeats = Number(opts.repeats);
const intervals = opts.intervals.split(',').map((x) => Number(x) * 1000);
const systems = opts.systems.split(',') as SystemName[];
if (
  sizes.some((n) => !Number.isInteger(n) || n < DEPLOYMENTS_PER_IMAGE) ||
  !Number.isInteger(repeats) ||
  repeats < 1 ||
  intervals.some((ms) => !(ms >= 1000)) ||
  systems.some((s) => !SYSTEMS.includes(s))
) {
  console.error(usage);
  process.exit(2);
}

const benchStarted = Date.now();
const say = (line: string) => {
  const s = Math.round((Date.now() - benchStarted) / 1000);
  console.error(
    `[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}`,
  );
};

// ---------------------------------------------------------------------------------------------------
// What one run measures

interface RunResult {
  system: SystemName;
  n: number;
  intervalMs: number;
  images: number;
  repushed: number;
  repeat: number;
  /** Repositories the system had baselined when BASELINE_TIMEOUT_MS ran out (all of them, normally). */
  baselined: number;
  /** kube-apiserver over the system's lifetime: its CPU seconds and the requests it counted per minute. */
  apiserverCpuSeconds: number;
  apiserverRequestsPerMinute: number;
  /** Registry requests per poll cycle, by kind, over the steady window (no pushes). */
  requestsPerCycle: RequestCounts;
  cycles: number;
  /** Push → generation bump of each Deployment of a re-pushed tag (ms). */
  pushToPatchMs: number[];
  /** Push → that generation rolled out (ms). */
  pushToRolloutMs: number[];
  cpuSeconds: number;
  peakRssBytes: number;
  /** Kubewatcher: the controller's and the largest poller run's figures. */
  split?: {
    controller: ProcessUsage;
    pollerCpuSeconds: number;
    pollerPeakRssBytes: number;
    pollerRuns: number;
  };
  /** From the system's start to its stop (ms). */
  lifetimeMs: number;
  /** Kubewatcher: how long each poller run took (ms). */
  pollRunMs?: number[];
  expected: number;
  rolledOnce: number;
  missed: number;
  doubled: number;
  /** Deployments of tags that were not re-pushed whose generation moved. */
  wronglyTouched: number;
  /** Seconds the whole run took, environment included. */
  runSeconds: number;
}

// ---------------------------------------------------------------------------------------------------
// Small helpers

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
}

function median(values: readonly number[]): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? (v[mid] as number) : ((v[mid - 1] as number) + (v[mid] as number)) / 2;
}

function kubectlFor(info: LocalClusterInfo) {
  return async (args: string[], kubeconfig = info.kubeconfig) => {
    const { stdout } = await run(join(info.binDir, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], {
      maxBuffer: 64 << 20,
    });
    return stdout.trimEnd();
  };
}
type Kubectl = ReturnType<typeof kubectlFor>;

/** The children of process `pid` (Linux's /proc/PID/task/PID/children). */
function readChildPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Signals a process we started, then SIGKILL after `graceMs`; resolves once it has exited. */
async function stopChild(child: ChildProcess, signal: NodeJS.Signals, graceMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------------
// Deployments, followed with a watch: when each one's generation moves and when that generation is rolled out

interface DeploymentTrack {
  image: string;
  generation: number;
  bumps: { at: number; generation: number }[];
  /** generation → first time it was seen fully rolled out. */
  completed: Map<number, number>;
}

function rolledOut(d: V1Deployment): boolean {
  const want = d.spec?.replicas ?? 1;
  const s = d.status ?? {};
  return (
    (s.observedGeneration ?? 0) >= (d.metadata?.generation ?? 0) &&
    (s.updatedReplicas ?? 0) === want &&
    (s.availableReplicas ?? 0) === want &&
    (s.replicas ?? 0) === want
  );
}

class DeploymentTracker {
  readonly tracks = new Map<string, DeploymentTrack>();
  readonly #kc: KubeConfig;
  readonly #namespace: string;
  #resourceVersion = '';
  #abort: AbortController | undefined;
  #stopped = false;

  constructor(kc: KubeConfig, namespace: string) {
    this.#kc = kc;
    this.#namespace = namespace;
  }

  async start(): Promise<void> {
    await this.#list();
    await this.#watch();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
  }

  allRolledOut(): boolean {
    return [...this.tracks.values()].every((t) => t.completed.has(t.generation));
  }

  #observe(d: V1Deployment, at: number): void {
    const name = d.metadata?.name ?? '';
    const generation = d.metadata?.generation ?? 0;
    let track = this.tracks.get(name);
    if (!track) {
      track = {
        image: d.spec?.template?.spec?.containers?.[0]?.image ?? '',
        generation,
        bumps: [],
        completed: new Map(),
      };
      this.tracks.set(name, track);
    } else if (generation > track.generation) {
      track.bumps.push({ at, generation });
      track.generation = generation;
    }
    if (generation === track.generation && rolledOut(d) && !track.completed.has(generation)) {
      track.completed.set(generation, at);
    }
  }

  async #list(): Promise<void> {
    const list = await this.#kc
      .makeApiClient(AppsV1Api)
      .listNamespacedDeployment({ namespace: this.#namespace });
    const at = Date.now();
    for (const d of list.items) this.#observe(d, at);
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
  }

  async #watch(): Promise<void> {
    if (this.#stopped) return;
    this.#abort = await new Watch(this.#kc).watch(
      `/apis/apps/v1/namespaces/${this.#namespace}/deployments`,
      { resourceVersion: this.#resourceVersion, allowWatchBookmarks: true },
      (type, obj: V1Deployment & { code?: number }) => {
        const at = Date.now();
        if (type === 'ERROR') {
          // 410 Gone: our resourceVersion is too old; relist on restart.
          this.#resourceVersion = '';
          return;
        }
        if (obj.metadata?.resourceVersion) this.#resourceVersion = obj.metadata.resourceVersion;
        if (type === 'ADDED' || type === 'MODIFIED') this.#observe(obj, at);
      },
      () => {
        // The watch ends on its inactivity timeout or an error: resume where it stopped.
        if (this.#stopped) return;
        void (async () => {
          await delay(200);
          if (!this.#resourceVersion) await this.#list().catch(() => {});
          await this.#watch().catch(() => {});
        })();
      },
    );
  }
}

// ---------------------------------------------------------------------------------------------------
// The systems under test

interface SystemHandle {
  /** When the system had started (its processes up). */
  startedAt: number;
  /** Waits until every watched tag has a baseline digest, or the time is up: how many have. */
  baselined(repositories: string[], proxy: CountingProxy): Promise<number>;
  /** The start of a steady window whose cycles can be counted exactly, and how to count them. */
  steadyWindow(proxy: CountingProxy): Promise<{ counts: RequestCounts; cycles: number }>;
  /** Stops the system; returns its CPU and memory figures. */
  stop(): Promise<Pick<RunResult, 'cpuSeconds' | 'peakRssBytes' | 'split' | 'pollRunMs'>>;
}

interface RunContext {
  info: LocalClusterInfo;
  kubectl: Kubectl;
  dir: string;
  proxyHost: string;
  imageRefs: string[];
  intervalMs: number;
}

interface PollerRun {
  startedAt: number;
  endedAt?: number;
  code?: number | null;
}

/** Runs the poller every interval, as a CronJob with concurrencyPolicy Forbid would: a busy tick is skipped. */
class PollerLoop {
  readonly runs: PollerRun[] = [];
  skipped = 0;
  #t0 = 0;
  #timer: NodeJS.Timeout | undefined;
  #current: Promise<void> | undefined;
  #child: ChildProcess | undefined;
  #stopped = false;
  readonly #args: string[];
  readonly #usageFile: string;
  readonly #logFile: string;
  readonly #cwd: string;
  readonly #intervalMs: number;

  constructor(args: string[], files: { usage: string; log: string; cwd: string }, intervalMs: number) {
    this.#intervalMs = intervalMs;
    this.#args = args;
    this.#usageFile = files.usage;
    this.#logFile = files.log;
    this.#cwd = files.cwd;
  }

  start(): void {
    this.#t0 = Date.now();
    this.#tick(0);
  }

  /** When the next run is due. */
  nextTickAt(): number {
    const k = Math.floor((Date.now() - this.#t0) / this.#intervalMs) + 1;
    return this.#t0 + k * this.#intervalMs;
  }

  async idle(): Promise<void> {
    await this.#current;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    // The signal goes to the poller, not to GNU time above it, so that its figures are still written.
    const time = this.#child?.pid;
    const poller = time ? readChildPids(time)[0] : undefined;
    const signal = (name: NodeJS.Signals) => {
      try {
        if (poller) process.kill(poller, name);
      } catch {
        // already exited
      }
    };
    signal('SIGTERM');
    const timer = setTimeout(() => signal('SIGKILL'), 15_000);
    await this.#current;
    clearTimeout(timer);
  }

  #tick(k: number): void {
    if (this.#stopped) return;
    if (this.#current) this.skipped++;
    else this.#current = this.#runOnce().finally(() => (this.#current = undefined));
    this.#timer = setTimeout(() => this.#tick(k + 1), this.#t0 + (k + 1) * this.#intervalMs - Date.now());
  }

  async #runOnce(): Promise<void> {
    const entry: PollerRun = { startedAt: Date.now() };
    this.runs.push(entry);
    const fd = openSync(this.#logFile, 'a');
    // The CronJob's program (bundle and node flags) in a working directory like the image's /app, its
    // CPU and peak RSS taken by GNU time from the kernel's account of the child (wait4), from outside.
    const child = spawn(
      GNU_TIME,
      timedArgs(this.#usageFile, process.execPath, [...shippedNodeArgs('poller', repoRoot), ...this.#args]),
      { cwd: this.#cwd, stdio: ['ignore', fd, fd] },
    );
    this.#child = child;
    entry.code = await new Promise<number | null>((done) => {
      child.once('exit', (code) => done(code));
      child.once('error', () => done(null));
    });
    this.#child = undefined;
    entry.endedAt = Date.now();
  }
}

function watchedImages(ctx: RunContext): object[] {
  return ctx.imageRefs.map((image, i) => ({
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'WatchedImage',
    metadata: { name: `img-${String(i).padStart(3, '0')}`, namespace: NAMESPACE },
    spec: { image, interval: '1m' },
  }));
}

async function startKubewatcher(ctx: RunContext): Promise<SystemHandle> {
  const { info, kubectl, dir } = ctx;
  const controllerKubeconfig = await serviceAccountKubeconfig(kubectl, info, dir, 'kubewatcher-controller');
  const pollerKubeconfig = await serviceAccountKubeconfig(kubectl, info, dir, 'kubewatcher-poller');
  const controllerLog = join(dir, 'logs', 'kubewatcher-controller.log');
  const startedAt = Date.now();
  const cwd = imageWorkingDir(dir);
  const controller = startShippedProgram(
    'controller',
    ['--kubeconfig', controllerKubeconfig, '--metrics-addr', '127.0.0.1:0', '--log-format', 'json'],
    { cwd, logFile: controllerLog },
  );
  const pid = controller.pid ?? 0;
  await waitFor(
    async () => (await readFile(controllerLog, 'utf8').catch(() => '')).includes('workers started'),
    120_000,
    () => `the controller did not start:\n${logTail(controllerLog)}`,
  );
  const usageFile = join(dir, 'poller-usage.txt');
  const loop = new PollerLoop(
    [
      '--kubeconfig',
      pollerKubeconfig,
      '--plain-http',
      ctx.proxyHost,
      // Faster than the API's 1m minimum, the poller has to be told to check anyway.
      ...(ctx.intervalMs < 60_000 ? ['--ignore-interval'] : []),
      // The check record install.yaml ships, as the CronJob passes it.
      '--check-record',
      `${SYSTEM_NAMESPACE}/kubewatcher-poller-checks`,
      '--log-format',
      'json',
    ],
    { usage: usageFile, log: join(dir, 'logs', 'kubewatcher-poller.log'), cwd },
    ctx.intervalMs,
  );
  loop.start();

  return {
    startedAt,
    async baselined() {
      const count = async () =>
        (await kubectl(['-n', NAMESPACE, 'get', 'wi', '-o', 'jsonpath={.items[*].status.digest}']))
          .split(' ')
          .filter(Boolean).length;
      return untilCount(count, ctx.imageRefs.length);
    },
    async steadyWindow(proxy) {
      // Start just before a run is due; count the requests of exactly the runs that start in the window
      // (only the poller talks to the registry).
      await delay(Math.max(0, loop.nextTickAt() - Date.now() - 100));
      const from = Date.now();
      await delay(steadyCycles(ctx.intervalMs) * ctx.intervalMs);
      const to = Date.now();
      await loop.idle();
      const runs = loop.runs.filter((r) => r.startedAt >= from && r.startedAt < to);
      const last = runs.at(-1)?.endedAt ?? to;
      return { counts: proxy.countBetween(from, Math.max(to, last + 1)), cycles: runs.length };
    },
    async stop() {
      const controllerUsage = readProcessUsage(pid) ?? { cpuSeconds: Number.NaN, peakRssBytes: Number.NaN };
      await loop.stop();
      await stopChild(controller, 'SIGTERM');
      const pollers = readTimedUsage(await readFile(usageFile, 'utf8').catch(() => ''));
      const pollerCpu = pollers.reduce((s, u) => s + u.cpuSeconds, 0);
      const pollerPeak = Math.max(0, ...pollers.map((u) => u.peakRssBytes));
      return {
        cpuSeconds: controllerUsage.cpuSeconds + pollerCpu,
        // The controller runs all the time and a poller run beside it: their peaks add up.
        peakRssBytes: controllerUsage.peakRssBytes + pollerPeak,
        split: {
          controller: controllerUsage,
          pollerCpuSeconds: pollerCpu,
          pollerPeakRssBytes: pollerPeak,
          pollerRuns: pollers.length,
        },
        pollRunMs: loop.runs.filter((r) => r.endedAt).map((r) => (r.endedAt as number) - r.startedAt),
      };
    },
  };
}

function keelAnnotations(intervalMs: number): Record<string, string> {
  return {
    'keel.sh/policy': 'force',
    'keel.sh/match-tag': 'true',
    'keel.sh/trigger': 'poll',
    'keel.sh/pollSchedule': `@every ${intervalMs / 1000}s`,
  };
}

/** Whether nothing listens on 127.0.0.1:`port` (and so Keel can bind it). */
async function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const probe = createServer();
    probe.once('error', () => done(false));
    probe.listen(port, '127.0.0.1', () => probe.close(() => done(true)));
  });
}

/**
 * Keel's environment: PATH, HOME and its own variables only, so that nothing of the caller's
 * (DEBUG, KUBERNETES_CONFIG, proxies) breaks or redirects it. AUTH_MODE=external-proxy is the one
 * setting under which Keel binds its HTTP server to 127.0.0.1 instead of every address.
 */
function keelEnvironment(dir: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: dir,
    XDG_DATA_HOME: dir,
    POLL: 'true',
    INSECURE_REGISTRY: 'true',
    AUTH_MODE: 'external-proxy',
  };
}

async function startKeel(ctx: RunContext, keelPath: string): Promise<SystemHandle> {
  const { info, dir } = ctx;
  if (!(await portFree(KEEL_PORT)))
    throw new Error(`port ${KEEL_PORT} on 127.0.0.1 is in use: Keel cannot start (it always listens there)`);
  const logFile = join(dir, 'logs', 'keel.log');
  const fd = openSync(logFile, 'a');
  const startedAt = Date.now();
  // Keel runs out of cluster with the admin kubeconfig (it has no least-privilege role to run under here).
  const keel = spawn(keelPath, ['--no-incluster', `--kubeconfig=${info.kubeconfig}`], {
    cwd: dir,
    detached: true,
    stdio: ['ignore', fd, fd],
    env: keelEnvironment(dir),
  });
  const pid = keel.pid ?? 0;
  await delay(3000);
  if (!isAlive(pid)) throw new Error(`keel exited at start:\n${logTail(logFile)}`);

  return {
    startedAt,
    async baselined(repositories, proxy) {
      // Keel keeps its baselines in memory: the first successful manifest request for a repository is it.
      const count = async () => {
        const seen = new Set(
          proxy.requests
            .filter((r) => r.status === 200 && (r.kind === 'head' || r.kind === 'getManifest'))
            .map((r) => r.path.replace(/^\/v2\/|\/manifests\/[^/]+$/g, '')),
        );
        return repositories.filter((r) => seen.has(r)).length;
      };
      const done = await untilCount(count, repositories.length);
      if (done === repositories.length) await delay(ctx.intervalMs);
      return done;
    },
    async steadyWindow(proxy) {
      // Each poll job fires every interval from its own start: any window of N intervals holds
      // exactly N checks of each.
      const cycles = steadyCycles(ctx.intervalMs);
      const from = Date.now();
      await delay(cycles * ctx.intervalMs);
      return { counts: proxy.countBetween(from, Date.now()), cycles };
    },
    async stop() {
      const u = readProcessUsage(pid) ?? { cpuSeconds: Number.NaN, peakRssBytes: Number.NaN };
      // Keel shuts down on SIGINT (os.Interrupt) only.
      await stopChild(keel, 'SIGINT');
      return { cpuSeconds: u.cpuSeconds, peakRssBytes: u.peakRssBytes };
    },
  };
}

/** Polls `count` every 2 s until it reaches `total` or BASELINE_TIMEOUT_MS has passed; the last count. */
async function untilCount(count: () => Promise<number>, total: number): Promise<number> {
  const deadline = Date.now() + BASELINE_TIMEOUT_MS;
  for (;;) {
    const n = await count().catch(() => 0);
    if (n >= total || Date.now() >= deadline) return n;
    await delay(2000);
  }
}

/** kube-apiserver's CPU seconds and request count so far. */
async function apiserverLoad(info: LocalClusterInfo): Promise<{ cpuSeconds: number; requests: number }> {
  const pid = await componentPid(info, 'kube-apiserver');
  const cpuSeconds = pid ? (readProcessUsage(pid)?.cpuSeconds ?? Number.NaN) : Number.NaN;
  const requests = metricValue(await apiserverRequests(info), 'apiserver_request_total');
  return { cpuSeconds, requests };
}

// ---------------------------------------------------------------------------------------------------
// One run

function deployment(name: string, image: string, annotations: Record<string, string>): object {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace: NAMESPACE, labels: { app: name }, annotations },
    spec: {
      replicas: 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { imagePullSecrets: [{ name: PULL_SECRET }], containers: [{ name: 'app', image }] },
      },
    },
  };
}

async function runOnce(
  system: SystemName,
  n: number,
  intervalMs: number,
  repeat: number,
  binDir: string,
  keelPath: string | undefined,
): Promise<RunResult> {
  const runStarted = Date.now();
  const images = Math.floor(n / DEPLOYMENTS_PER_IMAGE);
  const repositories = Array.from({ length: images }, (_, i) => `bench/img-${String(i).padStart(3, '0')}`);
  // Every other image is re-pushed, so pushed and untouched tags are interleaved.
  const repushed = new Set(repositories.filter((_, i) => i % 2 === 0));
  const dir = await mkdtemp(join(tmpdir(), `kubewatcher-bench-${system}-${n}-`));
  const label = `${system} N=${n} every ${intervalMs / 1000} s #${repeat}`;
  say(`${label}: starting a local environment in ${dir}`);
  const cluster = await startLocalCluster({ dir, binDir });
  let proxy: CountingProxy | undefined;
  let tracker: DeploymentTracker | undefined;
  let handle: SystemHandle | undefined;
  try {
    const { info } = cluster;
    const kubectl = kubectlFor(info);
    proxy = await startCountingProxy({
      registryUrl: info.registries.token.url,
      tokenRealm: info.registries.token.tokenRealm,
    });
    const imageRefs = repositories.map((r) => `${proxy?.host}/${r}:${TAG}`);
    const ctx: RunContext = { info, kubectl, dir, proxyHost: proxy.host, imageRefs, intervalMs };
    // One fake node holds every pod, surge pods of rollouts included.
    await kubectl([
      'patch',
      'node',
      'kwok-node-0',
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status: { capacity: { pods: '5000' }, allocatable: { pods: '5000' } } }),
    ]);

    say(`${label}: pushing ${images} images`);
    await forEachLimit(repositories, PUSH_CONCURRENCY, async (repository) => {
      await pushTestImage({ info, registry: 'token', repository, tag: TAG });
    });
    if (system === 'kubewatcher') await installForLocalProcesses(kubectl, repoRoot);
    await kubectl(['create', 'namespace', NAMESPACE]);
    const token = info.registries.token;
    await kubectl([
      '-n',
      NAMESPACE,
      'create',
      'secret',
      'docker-registry',
      PULL_SECRET,
      `--docker-server=${proxy.host}`,
      `--docker-username=${token.username}`,
      `--docker-password=${token.password}`,
    ]);
    const annotations = system === 'keel' ? keelAnnotations(intervalMs) : {};
    const items: object[] = [];
    for (let j = 0; j < n; j++) {
      const image = imageRefs[Math.floor(j / DEPLOYMENTS_PER_IMAGE)] as string;
      items.push(deployment(`app-${String(j).padStart(3, '0')}`, image, annotations));
    }
    if (system === 'kubewatcher') items.push(...watchedImages(ctx));
    const file = join(dir, 'workloads.json');
    await writeFile(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
    say(`${label}: creating ${n} Deployments over ${images} images`);
    await kubectl(['create', '-f', file]);

    const kc = new KubeConfig();
    kc.loadFromFile(info.kubeconfig);
    tracker = new DeploymentTracker(kc, NAMESPACE);
    await tracker.start();
    const t = tracker;
    await waitFor(
      async () => t.tracks.size === n && t.allRolledOut(),
      600_000,
      () => 'the Deployments did not all become available',
    );

    say(`${label}: starting ${system}`);
    const loadBefore = await apiserverLoad(info);
    handle =
      system === 'kubewatcher' ? await startKubewatcher(ctx) : await startKeel(ctx, keelPath as string);
    const baselined = await handle.baselined(repositories, proxy);
    if (baselined < repositories.length)
      say(
        `${label}: only ${baselined} of ${repositories.length} repositories baselined after ${BASELINE_TIMEOUT_MS / 1000} s; going on`,
      );
    say(`${label}: counting requests over ${steadyCycles(intervalMs)} cycles`);
    const steady = await handle.steadyWindow(proxy);

    say(`${label}: re-pushing ${repushed.size} tags`);
    const pushStart = Date.now();
    const pushedAt = new Map<string, number>();
    await forEachLimit([...repushed], PUSH_CONCURRENCY, async (repository) => {
      await pushTestImage({ info, registry: 'token', repository, tag: TAG });
      pushedAt.set(`${proxy?.host}/${repository}:${TAG}`, Date.now());
    });
    const expected = [...t.tracks].filter(([, tr]) => pushedAt.has(tr.image));
    const done = () =>
      expected.every(([, tr]) => {
        const bump = tr.bumps.find((b) => b.at >= pushStart);
        return bump !== undefined && tr.completed.has(bump.generation);
      });
    const patience = 120_000 + n * 600;
    const rolled = await waitFor(
      async () => done(),
      patience,
      () => 'timed out',
    ).then(
      () => true,
      () => false,
    );
    const outcome = rolled
      ? 'rollouts done'
      : `not every expected Deployment rolled out within ${patience / 1000} s`;
    say(`${label}: ${outcome}; watching ${graceCycles(intervalMs)} more cycles for doubled updates`);
    await delay(graceCycles(intervalMs) * intervalMs);
    const stoppedAt = Date.now();
    const systemStart = handle.startedAt;
    const loadAfter = await apiserverLoad(info);
    const figures = await handle.stop();
    handle = undefined;
    tracker.stop();

    const pushToPatchMs: number[] = [];
    const pushToRolloutMs: number[] = [];
    let rolledOnce = 0;
    let missed = 0;
    let doubled = 0;
    let wronglyTouched = 0;
    for (const [, tr] of t.tracks) {
      const bumps = tr.bumps.filter((b) => b.at >= systemStart);
      const pushed = pushedAt.get(tr.image);
      if (pushed === undefined) {
        if (bumps.length > 0) wronglyTouched++;
        continue;
      }
      if (bumps.length === 0) missed++;
      else if (bumps.length === 1) rolledOnce++;
      else doubled++;
      const bump = bumps.find((b) => b.at >= pushStart);
      if (bump) {
        pushToPatchMs.push(bump.at - pushed);
        const complete = tr.completed.get(bump.generation);
        if (complete !== undefined) pushToRolloutMs.push(complete - pushed);
      }
    }
    const perCycle = Object.fromEntries(
      Object.entries(steady.counts).map(([k, v]) => [k, steady.cycles > 0 ? v / steady.cycles : Number.NaN]),
    ) as RequestCounts;
    const result: RunResult = {
      system,
      n,
      intervalMs,
      images,
      repushed: repushed.size,
      repeat,
      baselined,
      apiserverCpuSeconds: loadAfter.cpuSeconds - loadBefore.cpuSeconds,
      // The two scrapes themselves are counted too (the first one in the second).
      apiserverRequestsPerMinute:
        (loadAfter.requests - loadBefore.requests - 1) / ((stoppedAt - systemStart) / 60_000),
      requestsPerCycle: perCycle,
      cycles: steady.cycles,
      pushToPatchMs,
      pushToRolloutMs,
      ...figures,
      lifetimeMs: stoppedAt - systemStart,
      expected: expected.length,
      rolledOnce,
      missed,
      doubled,
      wronglyTouched,
      runSeconds: Math.round((Date.now() - runStarted) / 1000),
    };
    say(
      `${label}: ${fmt(perCycle.total, 1)} requests/cycle, push→patch p50 ${fmt(percentile(pushToPatchMs, 50) / 1000, 1)} s, ` +
        `CPU ${fmt(result.cpuSeconds, 1)} s (API server ${fmt(result.apiserverCpuSeconds, 1)} s, ${fmt(result.apiserverRequestsPerMinute, 0)} requests/min), baselined ${baselined}/${images}, peak RSS ${fmt(result.peakRssBytes / 2 ** 20, 0)} MiB, ` +
        `rolled once ${rolledOnce}/${expected.length}, missed ${missed}, doubled ${doubled}, wrongly touched ${wronglyTouched}`,
    );
    return result;
  } finally {
    tracker?.stop();
    await handle?.stop().catch(() => {});
    await proxy?.close();
    await cluster.stop();
    if (!opts.keep) await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------
// The report

function fmt(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : '–';
}

interface Row {
  label: string;
  value: (r: RunResult) => number;
  digits: number;
  /** Sum over the runs instead of the median (counts of events). */
  sum?: boolean;
}

const seconds = (ms: number) => ms / 1000;
const rows: Row[] = [
  ...REQUEST_KINDS.map((kind) => ({
    label: `Registry requests per poll cycle: ${{ head: 'HEAD manifest', getManifest: 'GET manifest', token: 'token', other: 'other (ping, tags, blobs)', tls: 'HTTPS attempt (TLS to the plain-HTTP proxy)' }[kind]}`,
    value: (r: RunResult) => r.requestsPerCycle[kind],
    digits: 1,
  })),
  { label: 'Registry requests per poll cycle: total', value: (r) => r.requestsPerCycle.total, digits: 1 },
  { label: '… of which answered 401', value: (r) => r.requestsPerCycle.unauthorized, digits: 1 },
  {
    label: 'Requests per watched tag per cycle',
    value: (r) => r.requestsPerCycle.total / r.images,
    digits: 2,
  },
  {
    label: 'Push → Deployment patched, p50 (s)',
    value: (r) => seconds(percentile(r.pushToPatchMs, 50)),
    digits: 1,
  },
  {
    label: 'Push → Deployment patched, p99 (s)',
    value: (r) => seconds(percentile(r.pushToPatchMs, 99)),
    digits: 1,
  },
  {
    label: 'Push → rollout complete, p50 (s)',
    value: (r) => seconds(percentile(r.pushToRolloutMs, 50)),
    digits: 1,
  },
  {
    label: 'Push → rollout complete, p99 (s)',
    value: (r) => seconds(percentile(r.pushToRolloutMs, 99)),
    digits: 1,
  },
  {
    label: 'Repositories baselined within 5 min',
    value: (r) => r.baselined,
    digits: 0,
  },
  { label: 'CPU seconds, whole run', value: (r) => r.cpuSeconds, digits: 1 },
  { label: 'CPU seconds per hour', value: (r) => (3600 * r.cpuSeconds) / seconds(r.lifetimeMs), digits: 1 },
  { label: 'CPU, % of one core', value: (r) => (100 * r.cpuSeconds) / seconds(r.lifetimeMs), digits: 1 },
  { label: 'Peak RSS (MiB)', value: (r) => r.peakRssBytes / 2 ** 20, digits: 0 },
  { label: 'API server CPU seconds, whole run', value: (r) => r.apiserverCpuSeconds, digits: 1 },
  {
    label: 'API server CPU, % of one core',
    value: (r) => (100 * r.apiserverCpuSeconds) / seconds(r.lifetimeMs),
    digits: 1,
  },
  {
    label: 'API server requests per minute (all clients)',
    value: (r) => r.apiserverRequestsPerMinute,
    digits: 0,
  },
  { label: 'Deployments rolled exactly once (all runs)', value: (r) => r.rolledOnce, digits: 0, sum: true },
  { label: 'Deployments expected to roll (all runs)', value: (r) => r.expected, digits: 0, sum: true },
  {
    label: 'Missed: not patched when the run ended (all runs)',
    value: (r) => r.missed,
    digits: 0,
    sum: true,
  },
  { label: 'Doubled (all runs)', value: (r) => r.doubled, digits: 0, sum: true },
  { label: 'Touched but not re-pushed (all runs)', value: (r) => r.wronglyTouched, digits: 0, sum: true },
];

function aggregate(runs: RunResult[], row: Row): number {
  const values = runs.map(row.value);
  return row.sum ? values.reduce((s, v) => s + v, 0) : median(values);
}

function report(results: RunResult[], active: SystemName[], keelProblem: string | undefined): string {
  const names: Record<SystemName, string> = { kubewatcher: 'Kubewatcher', keel: 'Keel 0.22.1' };
  const out: string[] = [];
  for (const n of sizes)
    for (const intervalMs of intervals) {
      const bySystem = new Map(
        SYSTEMS.map((s) => [
          s,
          results.filter((r) => r.n === n && r.intervalMs === intervalMs && r.system === s),
        ]),
      );
      const any = results.find((r) => r.n === n && r.intervalMs === intervalMs);
      if (!any) continue;
      const counts = SYSTEMS.map((s) => `${names[s]} ${bySystem.get(s)?.length ?? 0}`).join(', ');
      out.push(
        `### N = ${n} Deployments, ${any.images} watched tags, ${any.repushed} re-pushed, poll every ${intervalMs / 1000} s`,
        '',
        `Medians over the runs (${counts}); counts of events are summed over the runs.`,
        '',
        '| | Kubewatcher | Keel 0.22.1 | Kubewatcher / Keel |',
        '| --- | ---: | ---: | ---: |',
      );
      for (const row of rows) {
        const kw = bySystem.get('kubewatcher') ?? [];
        const keel = bySystem.get('keel') ?? [];
        const a = kw.length > 0 ? aggregate(kw, row) : Number.NaN;
        const b = keel.length > 0 ? aggregate(keel, row) : Number.NaN;
        const ratio =
          !row.sum && Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${fmt(a / b, 2)}×` : '';
        const cell = (v: number, runs: RunResult[]) => (runs.length > 0 ? fmt(v, row.digits) : 'not run');
        out.push(`| ${row.label} | ${cell(a, kw)} | ${cell(b, keel)} | ${ratio} |`);
      }
      const kw = bySystem.get('kubewatcher') ?? [];
      if (kw.length > 0) {
        const m = (f: (r: RunResult) => number) => median(kw.map(f));
        out.push(
          '',
          `Kubewatcher split: controller ${fmt(
            m((r) => r.split?.controller.cpuSeconds ?? Number.NaN),
            1,
          )} CPU s, ` +
            `${fmt(
              m((r) => (r.split?.controller.peakRssBytes ?? Number.NaN) / 2 ** 20),
              0,
            )} MiB peak; ` +
            `poller ${fmt(
              m((r) => r.split?.pollerCpuSeconds ?? Number.NaN),
              1,
            )} CPU s over ` +
            `${fmt(
              m((r) => r.split?.pollerRuns ?? Number.NaN),
              0,
            )} runs, ${fmt(
              m((r) => (r.split?.pollerPeakRssBytes ?? Number.NaN) / 2 ** 20),
              0,
            )} MiB peak per run; ` +
            `a poller run takes ${fmt(m((r) => percentile(r.pollRunMs ?? [], 50)) / 1000, 1)} s (p50).`,
        );
        const getPerCycle = m((r) => r.requestsPerCycle.getManifest);
        const perCycle = m((r) => r.requestsPerCycle.total);
        const cycles6h = (6 * 3600 * 1000) / intervalMs;
        out.push(
          `Docker Hub arithmetic for these ${any.images} tags at ${intervalMs / 1000} s: ${fmt(getPerCycle * cycles6h, 0)} GET manifests ` +
            `(counted as pulls) and ${fmt(perCycle * cycles6h, 0)} requests in all per 6 hours (Kubewatcher).`,
        );
      }
      out.push('');
    }
  if (!active.includes('keel') && systems.includes('keel')) {
    out.push(`Keel was not run: ${keelProblem ?? 'not requested'}`, '');
  }
  out.push(
    'API server figures are kube-apiserver as a whole from the system start to its stop: the control plane and this harness (a Deployment watch) count too, the same for each system.',
    '',
  );
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Main

const binDir = await resolveBinDir();
if (systems.includes('kubewatcher')) {
  if (!existsSync(GNU_TIME)) {
    console.error(
      `bench/keel-vs-kubewatcher.ts: needs GNU time at ${GNU_TIME} (Debian: apt-get install time)`,
    );
    process.exit(2);
  }
  say('building the bundles the image ships (pnpm -r run build)');
  await buildShippedPrograms(repoRoot);
}
// Keel is not built here: its module is not served by the Go module proxy these machines can reach.
const keelPath = process.env.KEEL_BIN || undefined;
let keelProblem: string | undefined;
if (systems.includes('keel')) {
  if (!keelPath)
    keelProblem = 'KEEL_BIN is not set (the path of a Keel 0.22.1 binary); Kubewatcher ran alone';
  else {
    try {
      await access(keelPath, constants.X_OK);
    } catch {
      keelProblem = `KEEL_BIN=${keelPath} is not an executable file; Kubewatcher ran alone`;
    }
  }
  if (keelProblem) say(`Keel is not run: ${keelProblem}`);
}
const active = systems.filter((s) => s !== 'keel' || keelProblem === undefined);
const results: RunResult[] = [];
const failures: string[] = [];
for (const n of sizes) {
  for (const intervalMs of intervals) {
    for (let repeat = 1; repeat <= repeats; repeat++) {
      // Alternate the order, so neither system always runs on a warmer machine.
      const order = repeat % 2 === 1 ? active : [...active].reverse();
      for (const system of order) {
        try {
          results.push(await runOnce(system, n, intervalMs, repeat, binDir, keelPath));
        } catch (err) {
          const message = `${system} N=${n} every ${intervalMs / 1000} s #${repeat} failed: ${(err as Error).message}`;
          failures.push(message);
          say(message);
        }
      }
    }
  }
}

const jsonFile =
  opts.json ?? join(tmpdir(), `kubewatcher-bench-${new Date().toISOString().replaceAll(':', '-')}.json`);
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
  loadAverageAtEnd: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
};
await writeFile(
  jsonFile,
  `${JSON.stringify({ sizes, repeats, intervals, systems: active, keelProblem, machine, failures, results }, null, 2)}\n`,
);
console.log(report(results, active, keelProblem));
if (failures.length > 0) console.log(`Failed runs:\n${failures.map((f) => `- ${f}`).join('\n')}\n`);
console.log(
  `Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node.js ${machine.node}. ` +
    `Took ${Math.round((Date.now() - benchStarted) / 60_000)} min. Raw figures: ${jsonFile}`,
);
process.exit(0);
