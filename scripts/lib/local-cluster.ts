/**
 * The local environment every integration test, the demo and the benchmarks run against: a real
 * control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with one fake node)
 * and three real OCI registries (distribution), all as local processes on free loopback ports.
 *
 * Two owners:
 * - in-process (tests): `startLocalCluster({ dir })` → `{ info, stop }`. The token server runs inside the
 *   owner; the components die with it (exit, SIGINT, SIGTERM, and a watchdog for SIGKILL or a crash).
 * - detached (`scripts/local-cluster up`): `detached: true`; every component, the token server included,
 *   outlives the command and `stopRecordedProcesses(dir)` (`down`) stops exactly the recorded pids.
 *
 * Layout of `dir`: kubeconfig, cluster.json, env, pids, logs/<component>.log, pki/, etcd/, config/,
 * registry/<name>/.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, openSync, readFileSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { hash as bcryptHash } from 'bcryptjs';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import type { LocalClusterInfo } from './cluster-info.ts';
import { createLocalPki } from './pki.ts';
import { startTokenServer, type TokenServer, type TokenServerConfig } from './token-server.ts';

export type { LocalClusterInfo, RegistryEndpoint } from './cluster-info.ts';

export interface StartLocalClusterOptions {
  /** Working folder (created); must not hold a running environment. */
  dir: string;
  /** Folder of the built binaries; default: what `scripts/build-binaries.sh` prints (building if missing). */
  binDir?: string;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
  /**
   * Leave the components running after this process exits (the `up` command). The token server then runs
   * as a child process too. Without it, the environment lives and dies with this process.
   */
  detached?: boolean;
  /** Longest wait for any one readiness step (default 120 s). */
  readyTimeoutMs?: number;
}

export interface LocalCluster {
  info: LocalClusterInfo;
  /** Stops every process of the environment (SIGTERM to each process group, SIGKILL after a grace). */
  stop(): Promise<void>;
  /**
   * Stops kube-apiserver (SIGTERM, SIGKILL after a grace), waits `downMs` (default 0), starts it again
   * with the same flags (same port, certificates and etcd, so clients reconnect to the same URL and find
   * their data) and resolves once it is ready. For tests of watch recovery; needs the owning process.
   */
  restartApiServer(options?: { downMs?: number }): Promise<void>;
}

export const KWOK_NODE_NAME = 'kwok-node-0';
export const TOKEN_SERVICE = 'kubewatcher-local-registry';
const TOKEN_ISSUER = 'kubewatcher-local-token-server';
const REQUIRED_BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kwok',
  'registry',
];
const STOP_GRACE_MS = 5_000;
const scriptsDir = fileURLToPath(new URL('..', import.meta.url));

/** Runs `scripts/build-binaries.sh` (a no-op when everything is built) and returns the folder it prints. */
export async function resolveBinDir(): Promise<string> {
  const child = spawn('bash', [join(scriptsDir, 'build-binaries.sh')], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  const code = await new Promise<number | null>((done, fail) => {
    child.once('error', fail);
    child.once('exit', done);
  });
  if (code !== 0) {
    throw new Error(`scripts/build-binaries.sh failed (exit code ${code}); see its output above`);
  }
  return out.trim().split('\n').at(-1) ?? '';
}

// ---------------------------------------------------------------------------------------------------
// Small pieces: free ports, HTTP probes, log tails, process records

/** Asks the OS for `count` distinct free loopback ports (all held open at once, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((done, fail) => {
          const server = createServer();
          server.once('error', fail);
          server.listen(0, '127.0.0.1', () => done(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  return ports;
}

interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

interface HttpOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** PEM CA bundle to trust (HTTPS). */
  ca?: string;
  /** Skip certificate verification: only for the health ports of components with in-memory certificates. */
  insecure?: boolean;
}

function httpRequest(url: string, options: HttpOptions = {}): Promise<HttpResponse> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  return new Promise((done, fail) => {
    const req = client.request(
      target,
      {
        method: options.method ?? 'GET',
        headers: options.headers,
        ca: options.ca,
        rejectUnauthorized: !options.insecure,
        timeout: 5_000,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          done({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', fail);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timed out: ${options.method ?? 'GET'} ${url}`)));
    req.on('error', fail);
    req.end(options.body);
  });
}

/** The last lines of a log file, indented, for error messages. */
export function logTail(file: string, lines = 25): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return `    (no log at ${file})`;
  }
  const tail = text.trimEnd().split('\n').slice(-lines);
  return tail.length === 0 || tail[0] === ''
    ? `    (${file} is empty)`
    : tail.map((l) => `    ${l}`).join('\n');
}

/** One line of `dir/pids`: the component, its pid (= its process group id) and its start time. */
export interface ProcessRecord {
  name: string;
  pid: number;
  /** Field 22 of /proc/PID/stat: tells a recorded process from a later one that reuses its pid. */
  startTime: string;
}

function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: fields restart after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', startTime: fields[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** Whether the recorded process still runs (a zombie counts as gone; so does a reused pid). */
export function isRecordedProcessAlive(record: ProcessRecord): boolean {
  const stat = procStat(record.pid);
  if (stat) return stat.state !== 'Z' && stat.startTime === record.startTime;
  if (process.platform === 'linux') return false;
  try {
    process.kill(record.pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function readProcessRecords(dir: string): Promise<ProcessRecord[]> {
  let text: string;
  try {
    text = await readFile(join(dir, 'pids'), 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .filter((f): f is [string, string, string] => f.length === 3 && /^\d+$/.test(f[1] ?? ''))
    .map(([name, pid, startTime]) => ({ name, pid: Number(pid), startTime }));
}

/** Whether `promise` settles within `ms` (leaving no timer behind to hold the process open). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((done) => {
    timer = setTimeout(() => done(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

/**
 * Stops exactly the processes recorded in `dir/pids` that still run (SIGTERM to each group, SIGKILL
 * after a grace) and waits until they are gone. Returns the names of those that were running.
 */
export async function stopRecordedProcesses(dir: string, graceMs = STOP_GRACE_MS): Promise<string[]> {
  const running = (await readProcessRecords(dir)).filter(isRecordedProcessAlive);
  // These are not our children (the `up` that started them has exited), so there is no exit event to await.
  const waitGone = async (records: ProcessRecord[], ms: number) => {
    const deadline = Date.now() + ms;
    while (records.some(isRecordedProcessAlive) && Date.now() < deadline) await delay(50);
  };
  for (const tier of stopTiers(running)) {
    for (const r of tier) signalGroup(r.pid, 'SIGTERM');
    await waitGone(tier, graceMs);
    for (const r of tier.filter(isRecordedProcessAlive)) signalGroup(r.pid, 'SIGKILL');
    await waitGone(tier, 2_000);
  }
  const left = running.filter(isRecordedProcessAlive);
  if (left.length > 0) {
    throw new Error(`could not stop ${left.map((r) => `${r.name} (pid ${r.pid})`).join(', ')}`);
  }
  await rm(join(dir, 'pids'), { force: true });
  return running.map((r) => r.name);
}

/**
 * Stop order: everything but etcd, then etcd. etcd drains its gRPC streams for several seconds on SIGTERM
 * while the apiserver still holds watches on it, and the apiserver keeps redialling a stopped etcd.
 */
function stopTiers<T extends { name: string }>(items: T[]): T[][] {
  return [items.filter((i) => i.name !== 'etcd'), items.filter((i) => i.name === 'etcd')];
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** `dir/env`: shell exports for a running environment (`eval "$(scripts/local-cluster env)"`). */
export function renderEnvFile(info: LocalClusterInfo): string {
  const { open, basic, token } = info.registries;
  const vars: [string, string | undefined][] = [
    ['KUBECONFIG', info.kubeconfig],
    ['KW_REGISTRY_OPEN', open.host],
    ['KW_REGISTRY_BASIC', basic.host],
    ['KW_REGISTRY_BASIC_USERNAME', basic.username],
    ['KW_REGISTRY_BASIC_PASSWORD', basic.password],
    ['KW_REGISTRY_BASIC_CA_FILE', basic.caFile],
    ['KW_REGISTRY_TOKEN', token.host],
    ['KW_REGISTRY_TOKEN_USERNAME', token.username],
    ['KW_REGISTRY_TOKEN_PASSWORD', token.password],
    ['KW_REGISTRY_TOKEN_REALM', token.tokenRealm],
    ['KW_REGISTRY_TOKEN_SERVICE', token.tokenService],
  ];
  return [
    `# Kubewatcher local environment in ${info.dir}: eval "$(scripts/local-cluster env)"`,
    `export PATH=${shellQuote(info.binDir)}:"$PATH"`,
    ...vars.filter(([, v]) => v !== undefined).map(([k, v]) => `export ${k}=${shellQuote(v ?? '')}`),
    '',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------
// The processes of one environment

interface Component {
  name: string;
  pid: number;
  logFile: string;
  child: ChildProcess;
  exited: boolean;
  exit: Promise<void>;
  /** How it was started, so `restart` can start it again. */
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Set while `restart` stops it: its exit is expected. */
  restarting?: boolean;
}

/**
 * Spawns components in their own process groups, records them in `dir/pids`, turns an early exit into a
 * startup error carrying the log tail, and stops them all.
 */
class Supervisor {
  readonly dir: string;
  readonly logDir: string;
  readonly detached: boolean;
  readonly log: (line: string) => void;
  readonly components: Component[] = [];
  tokenServer: TokenServer | undefined;
  /** Set when a component exits while the environment starts: every wait fails with it. */
  failure: Error | undefined;
  private starting = true;
  private stopping: Promise<void> | undefined;
  private watchdog: ChildProcess | undefined;
  private readonly onSignal = (signal: NodeJS.Signals) => {
    const othersListen = process.listenerCount(signal) > 1;
    this.log(`${signal}: stopping the local environment`);
    void this.stop().finally(() => {
      // With no other handler, behave as if we had not intercepted the signal.
      if (!othersListen) process.kill(process.pid, signal);
    });
  };
  private readonly onExit = () => {
    // Only synchronous work is possible here; the watchdog escalates to SIGKILL if needed.
    for (const c of this.components) if (!c.exited) signalGroup(c.pid, 'SIGTERM');
  };

  constructor(dir: string, detached: boolean, log: (line: string) => void) {
    this.dir = dir;
    this.logDir = join(dir, 'logs');
    this.detached = detached;
    this.log = log;
    // While starting, Ctrl-C must not leave half an environment behind, detached or not.
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    if (!detached) {
      process.on('exit', this.onExit);
      this.startWatchdog();
    }
  }

  /**
   * A tiny shell process reading the group ids we feed it: if this process dies without stopping the
   * environment (SIGKILL, crash), its end of the pipe closes and the watchdog stops the groups.
   */
  private startWatchdog() {
    const script = [
      'pids=',
      'while IFS= read -r line; do [ "$line" = disarm ] && exit 0; pids="$pids $line"; done',
      'for p in $pids; do kill -TERM -- "-$p" 2>/dev/null; done',
      'for _ in $(seq 50); do',
      '  alive=0; for p in $pids; do kill -0 -- "-$p" 2>/dev/null && alive=1; done',
      '  [ "$alive" = 0 ] && exit 0; sleep 0.1',
      'done',
      'for p in $pids; do kill -KILL -- "-$p" 2>/dev/null; done',
    ].join('\n');
    const watchdog = spawn('bash', ['-c', script], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
    watchdog.stdin?.on('error', () => {});
    (watchdog.stdin as Socket | null)?.unref();
    watchdog.unref();
    this.watchdog = watchdog;
  }

  /** Startup finished: in detached mode the components now belong to nobody but `dir/pids`. */
  started() {
    this.starting = false;
    if (this.detached) {
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
    }
  }

  async spawn(
    name: string,
    command: string,
    args: string[],
    env: Record<string, string> = {},
  ): Promise<Component> {
    const logFile = join(this.logDir, `${name}.log`);
    const fd = openSync(logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        cwd: this.dir,
        detached: true, // setsid: its own process group, which stop() signals as a whole
        stdio: ['ignore', fd, fd],
        env: { ...process.env, ...env },
      });
    } finally {
      closeSync(fd);
    }
    const pid = child.pid;
    if (pid === undefined) {
      const err = await new Promise<Error>((done) => child.once('error', done));
      throw new Error(`cannot start ${name} (${command}): ${err.message}`);
    }
    let markExited!: () => void;
    const component: Component = {
      name,
      pid,
      logFile,
      child,
      exited: false,
      exit: new Promise((done) => {
        markExited = done;
      }),
      command,
      args,
      env,
    };
    child.once('exit', (code, signal) => {
      component.exited = true;
      markExited();
      if (this.stopping || component.restarting) return;
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      if (this.starting) {
        this.failure ??= new Error(
          `${name} ${how} while the environment started; last lines of ${logFile}:\n${logTail(logFile)}`,
        );
      } else {
        // Worth a line even when progress is silent: every test after this point will fail.
        console.error(`local-cluster: ${name} ${how}; last lines of ${logFile}:\n${logTail(logFile, 10)}`);
      }
    });
    child.on('error', (err) => this.log(`${name}: ${err.message}`));
    if (this.detached) child.unref();
    this.components.push(component);
    await appendFile(join(this.dir, 'pids'), `${name} ${pid} ${procStat(pid)?.startTime ?? '0'}\n`);
    this.watchdog?.stdin?.write(`${pid}\n`);
    return component;
  }

  component(name: string): Component | undefined {
    return this.components.find((c) => c.name === name);
  }

  /** Stops one component and starts it again with the same command, after `downMs`. */
  async restart(name: string, downMs = 0): Promise<Component> {
    const old = this.component(name);
    if (!old) throw new Error(`no component named ${name}`);
    old.restarting = true;
    if (!old.exited) await this.stopGroups([old]);
    this.components.splice(this.components.indexOf(old), 1);
    const others = (await readProcessRecords(this.dir)).filter((r) => r.pid !== old.pid);
    await writeFile(
      join(this.dir, 'pids'),
      others.map((r) => `${r.name} ${r.pid} ${r.startTime}\n`).join(''),
    );
    if (downMs > 0) await delay(downMs);
    return this.spawn(name, old.command, old.args, old.env);
  }

  /**
   * Polls `probe` every 100 ms until it returns a value other than undefined/false. Fails at once when a
   * component exits, and after the timeout with the log tails of the components named.
   */
  async waitFor<T>(
    what: string,
    logsOf: string[],
    timeoutMs: number,
    probe: () => Promise<T | undefined | false>,
  ) {
    const deadline = Date.now() + timeoutMs;
    let lastError = '';
    for (;;) {
      if (this.failure) throw this.failure;
      try {
        const value = await probe();
        if (value !== undefined && value !== false) return value;
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) {
        const tails = logsOf
          .map((n) => this.component(n))
          .filter((c) => c !== undefined)
          .map((c) => `last lines of ${c.logFile}:\n${logTail(c.logFile)}`);
        throw new Error(
          [
            `timed out after ${timeoutMs / 1000}s waiting for ${what}${lastError ? ` (last error: ${lastError})` : ''}`,
            ...tails,
          ].join('\n'),
        );
      }
      await delay(100);
    }
  }

  private async stopGroups(running: Component[]) {
    for (const c of running) signalGroup(c.pid, 'SIGTERM');
    const allExited = Promise.all(running.map((c) => c.exit));
    if (!(await settlesWithin(allExited, STOP_GRACE_MS))) {
      for (const c of running.filter((c) => !c.exited)) {
        this.log(`${c.name} ignored SIGTERM for ${STOP_GRACE_MS / 1000}s: killing it`);
        signalGroup(c.pid, 'SIGKILL');
      }
      await allExited;
    }
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.failure ??= new Error('the local environment was stopped'); // ends every pending wait
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      process.off('exit', this.onExit);
      await this.tokenServer?.close();
      for (const tier of stopTiers(this.components)) await this.stopGroups(tier.filter((c) => !c.exited));
      if (this.watchdog?.stdin?.writable) this.watchdog.stdin.end('disarm\n');
      await rm(join(this.dir, 'pids'), { force: true });
    })();
    return this.stopping;
  }
}

// ---------------------------------------------------------------------------------------------------
// Configuration files

function kubeconfigYaml(server: string, caPem: string, token: string): string {
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'kubewatcher-local',
        cluster: { server, 'certificate-authority-data': Buffer.from(caPem).toString('base64') },
      },
    ],
    users: [{ name: 'kubewatcher-admin', user: { token } }],
    contexts: [
      {
        name: 'kubewatcher-local',
        context: { cluster: 'kubewatcher-local', user: 'kubewatcher-admin', namespace: 'default' },
      },
    ],
    'current-context': 'kubewatcher-local',
  });
}

interface RegistryConfigOptions {
  name: string;
  port: number;
  storageDir: string;
  tls?: { certificate: string; key: string };
  auth?: Record<string, unknown>;
}

/** A distribution (v3) configuration: filesystem storage, deletes allowed, loopback only. */
function registryConfigYaml(o: RegistryConfigOptions): string {
  return toYaml({
    version: 0.1,
    log: { level: 'info', formatter: 'text', fields: { registry: o.name } },
    storage: {
      filesystem: { rootdirectory: o.storageDir },
      delete: { enabled: true },
      cache: { blobdescriptor: 'inmemory' },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: {
      addr: `127.0.0.1:${o.port}`,
      secret: randomBytes(16).toString('hex'),
      headers: { 'X-Content-Type-Options': ['nosniff'] },
      ...(o.tls ? { tls: o.tls } : {}),
    },
    ...(o.auth ? { auth: o.auth } : {}),
  });
}

function kwokNode(): object {
  const resources = { cpu: '32', memory: '256Gi', pods: '500' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: KWOK_NODE_NAME,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/hostname': KWOK_NODE_NAME,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/role': 'agent',
        'node-role.kubernetes.io/agent': '',
        type: 'kwok',
      },
    },
    spec: {},
    // Nodes may carry status on create (the kubelet registers that way); kwok keeps it up to date.
    status: {
      allocatable: resources,
      capacity: resources,
      nodeInfo: {
        architecture: 'amd64',
        operatingSystem: 'linux',
        kubeletVersion: 'fake',
        kubeProxyVersion: 'fake',
      },
      phase: 'Running',
    },
  };
}

// ---------------------------------------------------------------------------------------------------

/** Starts a complete local environment in `options.dir` and waits until every part of it is ready. */
export async function startLocalCluster(options: StartLocalClusterOptions): Promise<LocalCluster> {
  const started = performance.now();
  const dir = resolve(options.dir);
  const log = options.log ?? (() => {});
  const timeoutMs = options.readyTimeoutMs ?? 120_000;
  const binDir = resolve(options.binDir ?? (await resolveBinDir()));
  const missing = [];
  for (const b of REQUIRED_BINARIES) {
    try {
      accessSync(join(binDir, b), b.endsWith('.yaml') ? constants.R_OK : constants.X_OK);
    } catch {
      missing.push(b);
    }
  }
  if (missing.length > 0) {
    throw new Error(`missing in ${binDir}: ${missing.join(', ')}; build them with scripts/build-binaries.sh`);
  }
  const stillRunning = (await readProcessRecords(dir)).filter(isRecordedProcessAlive);
  if (stillRunning.length > 0) {
    const list = stillRunning.map((r) => `${r.name} (pid ${r.pid})`).join(', ');
    throw new Error(`an environment is already running in ${dir}: ${list}; stop it first`);
  }

  // Nothing runs here, so what a previous environment left (etcd data, images, logs) can only get in the way.
  await removeLocalClusterState(dir);
  for (const sub of ['logs', 'config', 'etcd', 'registry/open', 'registry/basic', 'registry/token']) {
    await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
  }
  const bin = (name: string) => join(binDir, name);
  const file = (name: string) => join(dir, name);
  const since = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;

  const adminToken = randomBytes(24).toString('hex');
  // token,user,uid,groups: the admin of this environment is in system:masters, as kubeadm's admin.conf.
  const adminTokenLine = `${adminToken},kubewatcher-admin,kubewatcher-admin,system:masters\n`;
  const basicUser = { username: 'kw-basic', password: randomBytes(12).toString('hex') };
  const tokenUser = { username: 'kw-token', password: randomBytes(12).toString('hex') };
  const [ports, pki, htpasswdLine] = await Promise.all([
    freePorts(9),
    createLocalPki(file('pki')),
    // Cost 4 (bcrypt's minimum): the registry checks the hash on every request, and these are throwaway secrets.
    bcryptHash(basicUser.password, 4).then((h) => `${basicUser.username}:${h}\n`),
  ]);
  const [
    etcdPort,
    etcdPeerPort,
    apiPort,
    kcmPort,
    schedulerPort,
    openPort,
    basicPort,
    tokenRegPort,
    tokenServerPort,
  ] = ports as [number, number, number, number, number, number, number, number, number];
  const caPem = await readFile(pki.caCert, 'utf8');
  const apiServer = `https://127.0.0.1:${apiPort}`;
  const kubeconfig = file('kubeconfig');
  // `localhost`, not 127.0.0.1: crane (go-containerregistry >= 0.21) refuses a token realm on a loopback or
  // private IP literal unless it is the registry's own host:port (an SSRF guard); a name passes.
  const tokenRealm = `http://localhost:${tokenServerPort}/token`;
  const tokenServerConfig: TokenServerConfig = {
    port: tokenServerPort,
    issuer: TOKEN_ISSUER,
    service: TOKEN_SERVICE,
    certFile: pki.tokenSigningCert,
    keyFile: pki.tokenSigningKey,
    users: [{ ...tokenUser, actions: ['pull', 'push'] }],
  };
  const registryConfigs = {
    open: registryConfigYaml({ name: 'open', port: openPort, storageDir: file('registry/open') }),
    basic: registryConfigYaml({
      name: 'basic',
      port: basicPort,
      storageDir: file('registry/basic'),
      tls: { certificate: pki.registryCert, key: pki.registryKey },
      auth: { htpasswd: { realm: 'kubewatcher-basic', path: file('config/htpasswd') } },
    }),
    token: registryConfigYaml({
      name: 'token',
      port: tokenRegPort,
      storageDir: file('registry/token'),
      auth: {
        token: {
          realm: tokenRealm,
          service: TOKEN_SERVICE,
          issuer: TOKEN_ISSUER,
          rootcertbundle: pki.caCert,
        },
      },
    }),
  };
  await Promise.all([
    writeFile(kubeconfig, kubeconfigYaml(apiServer, caPem, adminToken), { mode: 0o600 }),
    writeFile(file('config/token-auth.csv'), adminTokenLine, { mode: 0o600 }),
    writeFile(file('config/htpasswd'), htpasswdLine, { mode: 0o600 }),
    writeFile(file('config/token-server.json'), JSON.stringify(tokenServerConfig, null, 2), { mode: 0o600 }),
    ...Object.entries(registryConfigs).map(([name, yaml]) =>
      writeFile(file(`config/registry-${name}.yaml`), yaml),
    ),
  ]);
  log(`configuration and certificates ready (${since()})`);

  const sup = new Supervisor(dir, options.detached ?? false, log);
  try {
    // Everything that does not need the apiserver starts at once; the apiserver itself waits for etcd.
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const etcdPeerUrl = `http://127.0.0.1:${etcdPeerPort}`;
    await sup.spawn('etcd', bin('etcd'), [
      '--name=local',
      `--data-dir=${file('etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=local=${etcdPeerUrl}`,
      '--unsafe-no-fsync=true',
      '--log-level=warn',
    ]);
    await sup.spawn('kube-apiserver', bin('kube-apiserver'), [
      `--etcd-servers=${etcdUrl}`,
      `--secure-port=${apiPort}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--cert-dir=${file('pki')}`,
      `--tls-cert-file=${pki.apiServerCert}`,
      `--tls-private-key-file=${pki.apiServerKey}`,
      `--token-auth-file=${file('config/token-auth.csv')}`,
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.0.0.0/24',
      '--allow-privileged=true',
      `--service-account-issuer=${apiServer}/`,
      `--service-account-key-file=${pki.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${pki.serviceAccountPrivateKey}`,
      '--profiling=false',
    ]);
    const registryEnv = { OTEL_TRACES_EXPORTER: 'none' }; // distribution v3 would otherwise export traces to localhost:4318
    for (const name of ['open', 'basic', 'token'] as const) {
      await sup.spawn(
        `registry-${name}`,
        bin('registry'),
        ['serve', file(`config/registry-${name}.yaml`)],
        registryEnv,
      );
    }
    if (sup.detached) {
      await sup.spawn('token-server', process.execPath, [
        fileURLToPath(new URL('./token-server.ts', import.meta.url)),
        file('config/token-server.json'),
      ]);
    } else {
      const tokenLog = file('logs/token-server.log');
      sup.tokenServer = await startTokenServer(tokenServerConfig, (line) => {
        void appendFile(tokenLog, `${new Date().toISOString()} ${line}\n`).catch(() => {});
      });
    }

    const caHttp = { ca: caPem };
    const kube = (path: string, init: HttpOptions = {}) =>
      httpRequest(`${apiServer}${path}`, {
        ...caHttp,
        ...init,
        headers: {
          authorization: `Bearer ${adminToken}`,
          'content-type': 'application/json',
          ...init.headers,
        },
      });

    // The controllers give up if the apiserver is not healthy within seconds of their start, so they start
    // once it serves at all (its post-start hooks then finish in well under that).
    await sup.waitFor('kube-apiserver to serve HTTPS', ['kube-apiserver', 'etcd'], timeoutMs, async () => {
      await kube('/livez');
      return true;
    });
    log(`kube-apiserver serving (${since()})`);
    await sup.spawn('kube-controller-manager', bin('kube-controller-manager'), [
      `--kubeconfig=${kubeconfig}`,
      '--leader-elect=false',
      `--service-account-private-key-file=${pki.serviceAccountPrivateKey}`,
      `--root-ca-file=${pki.caCert}`,
      `--secure-port=${kcmPort}`,
      '--bind-address=127.0.0.1',
      '--controllers=*',
      '--profiling=false',
    ]);
    await sup.spawn('kube-scheduler', bin('kube-scheduler'), [
      `--kubeconfig=${kubeconfig}`,
      '--leader-elect=false',
      `--secure-port=${schedulerPort}`,
      '--bind-address=127.0.0.1',
      '--profiling=false',
    ]);
    await sup.spawn('kwok', bin('kwok'), [
      `--kubeconfig=${kubeconfig}`,
      // Written by build-binaries.sh from the same kwok version: node-initialize, heartbeat with lease, pod stages.
      `--config=${join(binDir, 'kwok-stages.yaml')}`,
      '--node-lease-duration-seconds=40',
      '--manage-all-nodes=false',
      '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
      '--cidr=10.244.0.0/16',
      '--node-ip=10.240.0.1',
    ]);

    const registryUrls = {
      open: `http://127.0.0.1:${openPort}`,
      basic: `https://127.0.0.1:${basicPort}`,
      token: `http://127.0.0.1:${tokenRegPort}`,
    };
    await Promise.all([
      (async () => {
        await sup.waitFor('kube-apiserver /readyz', ['kube-apiserver', 'etcd'], timeoutMs, async () => {
          const res = await kube('/readyz');
          return res.status === 200 || undefined;
        });
        log(`kube-apiserver ready (${since()})`);
        const created = await kube('/api/v1/nodes', { method: 'POST', body: JSON.stringify(kwokNode()) });
        if (created.status !== 201 && created.status !== 409) {
          throw new Error(`creating node ${KWOK_NODE_NAME} failed: HTTP ${created.status} ${created.body}`);
        }
        await Promise.all([
          sup.waitFor(`node ${KWOK_NODE_NAME} to be Ready (kwok)`, ['kwok'], timeoutMs, async () => {
            const res = await kube(`/api/v1/nodes/${KWOK_NODE_NAME}`);
            if (res.status !== 200) return undefined;
            const node = JSON.parse(res.body) as {
              status?: { conditions?: { type: string; status: string }[] };
            };
            return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
          }),
          sup.waitFor(
            'the default ServiceAccount in namespace default (kube-controller-manager)',
            ['kube-controller-manager'],
            timeoutMs,
            async () => (await kube('/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
          ),
        ]);
        log(`node ${KWOK_NODE_NAME} Ready, default ServiceAccount present (${since()})`);
      })(),
      ...[
        ['kube-controller-manager', kcmPort],
        ['kube-scheduler', schedulerPort],
      ].map(([name, port]) =>
        sup.waitFor(`${name} /healthz`, [String(name)], timeoutMs, async () => {
          const res = await httpRequest(`https://127.0.0.1:${port}/healthz`, { insecure: true });
          return res.status === 200;
        }),
      ),
      ...(['open', 'basic', 'token'] as const).map((name) =>
        sup.waitFor(`registry ${name} /v2/`, [`registry-${name}`], timeoutMs, async () => {
          const res = await httpRequest(`${registryUrls[name]}/v2/`, caHttp);
          return res.status === (name === 'open' ? 200 : 401);
        }),
      ),
      sup.waitFor('the token server', ['token-server'], timeoutMs, async () => {
        return (await httpRequest(`http://127.0.0.1:${tokenServerPort}/healthz`)).status === 200;
      }),
    ]);

    const host = (port: number) => `127.0.0.1:${port}`;
    const info: LocalClusterInfo = {
      kubeconfig,
      apiServer,
      apiServerCaFile: pki.caCert,
      binDir,
      dir,
      registries: {
        open: { host: host(openPort), url: registryUrls.open },
        basic: { host: host(basicPort), url: registryUrls.basic, ...basicUser, caFile: pki.caCert },
        token: {
          host: host(tokenRegPort),
          url: registryUrls.token,
          ...tokenUser,
          tokenRealm,
          tokenService: TOKEN_SERVICE,
        },
      },
    };
    await Promise.all([
      writeFile(file('cluster.json'), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 }),
      writeFile(file('env'), renderEnvFile(info), { mode: 0o600 }),
    ]);
    sup.started();
    log(`local environment ready in ${since()}`);
    const restartApiServer = async (options: { downMs?: number } = {}) => {
      await sup.restart('kube-apiserver', options.downMs);
      await sup.waitFor(
        'kube-apiserver /readyz after a restart',
        ['kube-apiserver', 'etcd'],
        timeoutMs,
        async () => {
          const res = await kube('/readyz');
          return res.status === 200 || undefined;
        },
      );
    };
    return { info, stop: () => sup.stop(), restartApiServer };
  } catch (err) {
    await sup.stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// A detached environment (`scripts/local-cluster`): find it, probe it, remove it

const STATE_ENTRIES = [
  'kubeconfig',
  'cluster.json',
  'env',
  'pids',
  'logs',
  'pki',
  'etcd',
  'config',
  'registry',
];

/** The environment running in `dir`, if every recorded process still runs. */
export async function findRunningLocalCluster(dir: string): Promise<LocalClusterInfo | undefined> {
  const records = await readProcessRecords(dir);
  if (records.length === 0 || !records.every(isRecordedProcessAlive)) return undefined;
  try {
    return JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as LocalClusterInfo;
  } catch {
    return undefined;
  }
}

/** Removes what `startLocalCluster` wrote in `dir` (only that: `dir` may hold other files). */
export async function removeLocalClusterState(dir: string): Promise<void> {
  await Promise.all(STATE_ENTRIES.map((e) => rm(join(dir, e), { recursive: true, force: true })));
}

export interface ProbeResult {
  name: string;
  ok: boolean;
  detail: string;
}

/** Checks that the apiserver is ready, the kwok node Ready and each registry answers `/v2/`. */
export async function probeLocalCluster(info: LocalClusterInfo): Promise<ProbeResult[]> {
  const ca = await readFile(info.apiServerCaFile, 'utf8');
  const kubeconfig = parseYaml(await readFile(info.kubeconfig, 'utf8')) as {
    users?: { user?: { token?: string } }[];
  };
  const headers = { authorization: `Bearer ${kubeconfig.users?.[0]?.user?.token ?? ''}` };
  const probe = async (name: string, url: string, check: (r: HttpResponse) => string | undefined) => {
    try {
      const res = await httpRequest(url, { ca, headers: url.startsWith(info.apiServer) ? headers : {} });
      const problem = check(res);
      return { name, ok: problem === undefined, detail: problem ?? `${url} OK` };
    } catch (err) {
      return { name, ok: false, detail: `${url}: ${err instanceof Error ? err.message : String(err)}` };
    }
  };
  const status = (want: number) => (r: HttpResponse) => (r.status === want ? undefined : `HTTP ${r.status}`);
  return Promise.all([
    probe('kube-apiserver', `${info.apiServer}/readyz`, status(200)),
    probe(`node ${KWOK_NODE_NAME}`, `${info.apiServer}/api/v1/nodes/${KWOK_NODE_NAME}`, (r) => {
      if (r.status !== 200) return `HTTP ${r.status}`;
      const node = JSON.parse(r.body) as { status?: { conditions?: { type: string; status: string }[] } };
      const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
      return ready?.status === 'True' ? undefined : `Ready=${ready?.status ?? 'unknown'}`;
    }),
    probe('registry open', `${info.registries.open.url}/v2/`, status(200)),
    probe('registry basic', `${info.registries.basic.url}/v2/`, status(401)),
    probe('registry token', `${info.registries.token.url}/v2/`, status(401)),
    probe('token server', new URL('/healthz', info.registries.token.tokenRealm).href, status(200)),
  ]);
}
