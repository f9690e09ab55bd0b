/**
 * The local environment every integration test, the demo and the benchmarks run against: a real
 * control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler), three real OCI
 * registries (distribution) with a token server, and one node: kwok's fake one by default, or with
 * `realNode` a real one (containerd, runc and a kubelet) that pulls images and runs containers. All are
 * local processes on free loopback ports. Each part is a room of its own under `local-cluster/`; this
 * file puts them together as named steps.
 *
 * Two owners:
 * - in-process (tests): `startLocalCluster({ dir })` → `{ info, stop }`. The token server runs inside the
 *   owner; the components die with it (exit, SIGINT, SIGTERM, and a watchdog for SIGKILL or a crash).
 * - detached (`scripts/local-cluster up`): `detached: true`; every component, the token server included,
 *   outlives the command and `stopLocalCluster(dir)` (`down`) stops exactly the recorded pids (and the
 *   real node's containers, mounts and cgroups).
 *
 * Layout of `dir`: kubeconfig, cluster.json, env, pids, logs/<component>.log, pki/, etcd/, config/,
 * registry/<name>/, node/ (the real node).
 */

import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LocalClusterInfo } from './cluster-info.ts';
import { type EnvironmentContext, inDir, PortPool } from './local-cluster/context.ts';
import {
  CONTROL_PLANE_PORTS,
  type ControlPlane,
  configureControlPlane,
  restartApiServer,
  spawnControllers,
  spawnEtcdAndApiServer,
  waitApiServerReady,
  waitApiServerServing,
  waitControllersReady,
} from './local-cluster/control-plane.ts';
import { KWOK_NODE_NAME, registerKwokNode, spawnKwok } from './local-cluster/kwok-node.ts';
import { freePorts, isRecordedProcessAlive, readProcessRecords } from './local-cluster/processes.ts';
import {
  authorizeApiServerToKubelets,
  checkRealNodeHost,
  configureRealNode,
  pushSandboxImage,
  REAL_NODE_NAME,
  REAL_NODE_PORTS,
  type RealNode,
  spawnContainerd,
  spawnKubelet,
  tearDownRealNode,
  waitRealNodeReady,
} from './local-cluster/real-node.ts';
import {
  configureRegistries,
  REGISTRY_PORTS,
  type Registries,
  spawnRegistries,
  waitRegistriesReady,
} from './local-cluster/registries.ts';
import { removeLocalClusterState, renderEnvFile } from './local-cluster/state.ts';
import { Supervisor } from './local-cluster/supervisor.ts';
import { createLocalPki } from './pki.ts';

export type { LocalClusterInfo, RealNodeInfo, RegistryEndpoint } from './cluster-info.ts';
export { KWOK_NODE_NAME } from './local-cluster/kwok-node.ts';
export {
  freePorts,
  isRecordedProcessAlive,
  logTail,
  type ProcessRecord,
  readProcessRecords,
  stopRecordedProcesses,
} from './local-cluster/processes.ts';
export { REAL_NODE_NAME, tearDownRealNode } from './local-cluster/real-node.ts';
export { describeMissing, missingPrerequisites } from './local-cluster/real-node-host.ts';
export { TOKEN_SERVICE } from './local-cluster/registries.ts';
export {
  findRunningLocalCluster,
  type ProbeResult,
  probeLocalCluster,
  removeLocalClusterState,
  renderEnvFile,
  stopLocalCluster,
} from './local-cluster/state.ts';

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
  /**
   * A real node (containerd, runc, kubelet; node `127.0.0.1`) instead of kwok's fake one: pods pull their
   * images and run. Needs root on Linux; see docs/local-environment.md.
   */
  realNode?: boolean;
  /** With `realNode`: install missing Debian packages with apt-get (default true). */
  installPackages?: boolean;
}

export interface LocalCluster {
  info: LocalClusterInfo;
  /**
   * Stops every process of the environment (SIGTERM to each process group, SIGKILL after a grace); with a
   * real node first its containers, then it unmounts, removes its cgroups and restores kernel settings.
   */
  stop(): Promise<void>;
  /**
   * Stops kube-apiserver (SIGTERM, SIGKILL after a grace), waits `downMs` (default 0), starts it again
   * with the same flags (same port, certificates and etcd, so clients reconnect to the same URL and find
   * their data) and resolves once it is ready. For tests of watch recovery; needs the owning process.
   */
  restartApiServer(options?: { downMs?: number }): Promise<void>;
}

const CONTROL_PLANE_BINARIES = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'registry',
];
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
// The steps

function checkBinaries(binDir: string, names: string[]): void {
  const missing = names.filter((b) => {
    try {
      accessSync(join(binDir, b), constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length > 0) {
    throw new Error(`missing in ${binDir}: ${missing.join(', ')}; build them with scripts/build-binaries.sh`);
  }
}

/**
 * Refuses a folder whose environment still runs, stops what a crashed owner left of a real node, and
 * removes the previous state: with nothing running, old etcd data, images and logs only get in the way.
 */
async function resetStateFolder(dir: string): Promise<void> {
  const stillRunning = (await readProcessRecords(dir)).filter(isRecordedProcessAlive);
  if (stillRunning.length > 0) {
    const list = stillRunning.map((r) => `${r.name} (pid ${r.pid})`).join(', ');
    throw new Error(`an environment is already running in ${dir}: ${list}; stop it first`);
  }
  await tearDownRealNode(dir);
  await removeLocalClusterState(dir);
  for (const sub of ['logs', 'config', 'etcd']) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
}

/** Writes cluster.json and env: how `scripts/local-cluster`, the demo and the benches find the environment. */
async function publishInfo(
  dir: string,
  binDir: string,
  cp: ControlPlane,
  registries: Registries,
  node: RealNode | undefined,
  caFile: string,
): Promise<LocalClusterInfo> {
  const info: LocalClusterInfo = {
    kubeconfig: cp.kubeconfig,
    apiServer: cp.apiServer,
    apiServerCaFile: caFile,
    binDir,
    dir,
    nodeName: node ? REAL_NODE_NAME : KWOK_NODE_NAME,
    ...(node ? { realNode: node.info } : {}),
    registries: registries.info,
  };
  await Promise.all([
    writeFile(join(dir, 'cluster.json'), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o600 }),
    writeFile(join(dir, 'env'), renderEnvFile(info), { mode: 0o600 }),
  ]);
  return info;
}

/** Starts a complete local environment in `options.dir` and waits until every part of it is ready. */
export async function startLocalCluster(options: StartLocalClusterOptions): Promise<LocalCluster> {
  const started = performance.now();
  const dir = resolve(options.dir);
  const log = options.log ?? (() => {});
  const since = () => `${((performance.now() - started) / 1000).toFixed(1)}s`;
  const binDir = resolve(options.binDir ?? (await resolveBinDir()));
  const realNode = options.realNode ?? false;
  checkBinaries(binDir, [...CONTROL_PLANE_BINARIES, realNode ? 'kubelet' : 'kwok']);
  if (realNode) await checkRealNodeHost({ binDir, log }, options.installPackages ?? true, dir);
  await resetStateFolder(dir);

  const [ports, pki] = await Promise.all([
    freePorts(CONTROL_PLANE_PORTS + REGISTRY_PORTS + (realNode ? REAL_NODE_PORTS : 0)),
    createLocalPki(inDir({ dir }, 'pki')),
  ]);
  const sup = new Supervisor(dir, options.detached ?? false, log);
  const ctx: EnvironmentContext = {
    dir,
    binDir,
    timeoutMs: options.readyTimeoutMs ?? 120_000,
    log,
    since,
    pki,
    caPem: await readFile(pki.caCert, 'utf8'),
    sup,
  };
  try {
    const pool = new PortPool(ports);
    const cp = await configureControlPlane(ctx, pool);
    const registries = await configureRegistries(ctx, pool);
    // Registered before the node touches the host, so a failure from here on undoes its changes too.
    if (realNode) sup.teardowns.push(async () => void (await tearDownRealNode(dir)));
    const node = realNode ? await configureRealNode(ctx, pool, cp, registries) : undefined;
    log(`configuration and certificates ready (${since()})`);

    // Everything that does not need the apiserver starts at once; the apiserver itself waits for etcd.
    await spawnEtcdAndApiServer(ctx, cp);
    await spawnRegistries(ctx, registries);
    if (node) await spawnContainerd(ctx, node);
    await waitApiServerServing(ctx, cp);
    await spawnControllers(ctx, cp);
    if (!node) await spawnKwok(ctx, cp);
    await Promise.all([
      (async () => {
        await waitApiServerReady(ctx, cp);
        log(`kube-apiserver ready (${since()})`);
        if (node) {
          await authorizeApiServerToKubelets(cp);
          await spawnKubelet(ctx, node);
          await waitRealNodeReady(ctx, cp);
        } else {
          await registerKwokNode(ctx, cp);
        }
      })(),
      waitControllersReady(ctx, cp),
      (async () => {
        await waitRegistriesReady(ctx, registries);
        if (node) await pushSandboxImage(ctx, registries, node);
      })(),
    ]);

    const info = await publishInfo(dir, binDir, cp, registries, node, pki.caCert);
    sup.started();
    log(`local environment ready in ${since()}`);
    return {
      info,
      stop: () => sup.stop(),
      restartApiServer: (o: { downMs?: number } = {}) => restartApiServer(ctx, cp, o.downMs),
    };
  } catch (err) {
    await sup.stop().catch((stopErr: unknown) => log(String(stopErr)));
    throw err;
  }
}
