/**
 * The real node room: containerd (Debian's, with runc) and a kubelet built at the control plane's version,
 * registered as node `127.0.0.1`, so pods pull real images from the local registries and run real
 * containers.
 *
 * Everything is private to `dir/node/`: containerd's root, state, sockets and runc root, the kubelet's
 * root, certificates and pod logs, CNI configuration and IPAM data. The rules of this environment shape
 * the rest:
 * - no traffic to any non-loopback address: the node is `127.0.0.1` (`--hostname-override` with an IP
 *   literal: no DNS lookup, InternalIP 127.0.0.1; `--node-ip` refuses loopback), pods get addresses from
 *   host-local IPAM over 127.100.0.0/16 that live on no interface (their namespace has only `lo`; a probe
 *   to a pod IP reaches the host itself, so use exec probes), their resolv.conf names 127.0.0.1, and the
 *   kubelet runs with a PATH without /usr/sbin so it finds no iptables and leaves netfilter alone;
 * - root without CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, so containerd restricts it
 *   (`restrict_oom_score_adj`);
 * - no systemd: the cgroupfs driver, pods under a cgroup root of the node's own (`/kubewatcher-<id>`).
 * The node authenticates with a `system:node:127.0.0.1` certificate (Node authorizer, NodeRestriction),
 * and serves its API with a certificate from the environment's CA to the apiserver's client certificate.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify as toYaml } from 'yaml';
import type { LocalClusterInfo, RealNodeInfo } from '../cluster-info.ts';
import { BUSYBOX_STATIC, pushBusyboxImage } from '../images.ts';
import { issueCertificate } from '../pki.ts';
import { type EnvironmentContext, inBin, type PortPool } from './context.ts';
import type { ControlPlane } from './control-plane.ts';
import { readyCondition } from './node-status.ts';
import {
  isProcessAlive,
  isRecordedProcessAlive,
  readProcessRecords,
  STOP_GRACE_MS,
  stopProcessGroups,
} from './processes.ts';
import {
  CNI_BIN_DIR,
  cleanFixedPaths,
  ensureRealNodePrerequisites,
  type HostState,
  listDir,
  pidsInCgroups,
  prepareHost,
  RUNC,
  readHostState,
  removeCgroups,
  restoreSysctls,
  SHIM_CGROUP,
  unmountUnder,
} from './real-node-host.ts';
import type { Registries } from './registries.ts';

export const REAL_NODE_NAME = '127.0.0.1';
/** Ports the real node takes from the pool: the kubelet's API and its health port. */
export const REAL_NODE_PORTS = 2;
const POD_SUBNET = '127.100.0.0/16';
const SANDBOX_REPOSITORY = 'kubewatcher/pause';
const SANDBOX_TAG = '1';
/** The kubelet's and containerd's PATH: no /usr/sbin, so no iptables (and no host netfilter changes). */
const NODE_PATH = '/usr/local/bin:/usr/bin:/bin';
const CRI_NAMESPACE = 'k8s.io';
const run = promisify(execFile);

/** The files of the node under `dir/node/`. */
export function realNodePaths(dir: string) {
  const node = join(dir, 'node');
  const file = (name: string) => join(node, name);
  return {
    node,
    hostState: file('host-state.json'),
    containerdConfig: file('containerd.toml'),
    containerdRoot: file('containerd/root'),
    containerdState: file('containerd/state'),
    containerdSocket: file('containerd.sock'),
    runcRoot: file('runc'),
    registryHosts: file('certs.d'),
    cniConf: file('cni/conf'),
    cniData: file('cni/ipam'),
    kubeletRoot: file('kubelet'),
    kubeletPki: file('pki'),
    kubeletConfig: file('kubelet.yaml'),
    kubeletKubeconfig: file('kubelet.kubeconfig'),
    podLogs: file('pod-logs'),
    resolvConf: file('resolv.conf'),
  };
}

export interface RealNode {
  paths: ReturnType<typeof realNodePaths>;
  kubeletPort: number;
  healthzPort: number;
  sandboxImage: string;
  info: RealNodeInfo;
}

/** A short id of the environment folder: names the node's cgroup root and CNI network. */
function environmentId(dir: string): string {
  return createHash('sha256').update(dir).digest('hex').slice(0, 8);
}

/**
 * Checks the machine (installing missing Debian packages when allowed) before anything starts, then
 * claims the machine's one real node for `dir`. One real node per machine: every kubelet serves its
 * device-plugin socket at the same fixed path, and each node's pods on the host network share its ports.
 */
export async function checkRealNodeHost(
  ctx: Pick<EnvironmentContext, 'binDir' | 'log'>,
  install: boolean,
  dir: string,
) {
  await ensureRealNodePrerequisites({ kubelet: inBin(ctx, 'kubelet'), install, log: ctx.log });
  const kubeletSocket = '/var/lib/kubelet/device-plugins/kubelet.sock';
  if (await socketAnswers(kubeletSocket)) {
    throw new Error(
      `another kubelet runs on this machine (${kubeletSocket} answers): one real node per machine; stop it first (scripts/local-cluster down)`,
    );
  }
  await claimRealNode(dir);
}

/**
 * Where the machine's real node is claimed. Checking the kubelet's socket alone let two environments
 * that started at the same moment both pass (neither kubelet was up yet); creating this file is atomic.
 */
export const REAL_NODE_CLAIM = '/run/kubewatcher-real-node.claim';
/** A claim younger than this holds while its environment is still starting (no kubelet recorded yet). */
const CLAIM_STARTING_MS = 5 * 60_000;

interface RealNodeClaim {
  dir: string;
  pid: number;
  claimedAt: number;
}

/** Takes the claim for `dir`, replacing a stale one; refuses while another environment holds it. */
export async function claimRealNode(dir: string, claimFile: string = REAL_NODE_CLAIM): Promise<void> {
  const claim: RealNodeClaim = { dir, pid: process.pid, claimedAt: Date.now() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeFile(claimFile, `${JSON.stringify(claim)}\n`, { flag: 'wx', mode: 0o644 });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = readClaim(claimFile);
    if (held?.dir === dir) return; // this environment's own claim, from an earlier start
    if (held && (await claimHolds(held))) {
      throw new Error(
        `another kubelet runs on this machine (the real node of ${held.dir}): one real node per machine; stop it first (scripts/local-cluster down)`,
      );
    }
    await rm(claimFile, { force: true }); // stale: its environment is gone
  }
  throw new Error(`cannot claim the real node: ${claimFile} keeps coming back`);
}

/** Gives the claim up if `dir` holds it (teardown). */
export async function releaseRealNode(dir: string, claimFile: string = REAL_NODE_CLAIM): Promise<void> {
  if (readClaim(claimFile)?.dir === dir) await rm(claimFile, { force: true });
}

function readClaim(claimFile: string): RealNodeClaim | undefined {
  try {
    const parsed = JSON.parse(readFileSync(claimFile, 'utf8')) as Partial<RealNodeClaim>;
    if (
      typeof parsed.dir !== 'string' ||
      typeof parsed.pid !== 'number' ||
      typeof parsed.claimedAt !== 'number'
    ) {
      return undefined;
    }
    return parsed as RealNodeClaim;
  } catch {
    return undefined; // unreadable or half written: treated as stale
  }
}

async function claimHolds(claim: RealNodeClaim): Promise<boolean> {
  if (!existsSync(claim.dir)) return false;
  const records = await readProcessRecords(claim.dir).catch(() => []);
  const node = records.filter((r) => r.name === 'kubelet' || r.name === 'containerd');
  if (node.length > 0) return node.some(isRecordedProcessAlive);
  // Nothing recorded yet: the environment is still starting if its owner lives and the claim is recent.
  return Date.now() - claim.claimedAt < CLAIM_STARTING_MS && isProcessAlive(claim.pid);
}

/** containerd's configuration (version 2 format of containerd 1.6). */
export function containerdConfigToml(o: {
  paths: ReturnType<typeof realNodePaths>;
  sandboxImage: string;
  /** cgroup path of the shims, e.g. `/kubewatcher-1a2b3c4d/shims`. */
  shimCgroup: string;
}): string {
  const q = (s: string) => JSON.stringify(s); // a JSON string is a TOML basic string
  const p = o.paths;
  const cri = '[plugins."io.containerd.grpc.v1.cri"';
  return `# Written by scripts/lib/local-cluster/real-node.ts for this environment only.
version = 2
root = ${q(p.containerdRoot)}
state = ${q(p.containerdState)}
# Plugins this node does not use. (The v1 runtime stays: containerd 1.6's tasks service needs it.)
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = ${q(p.containerdSocket)}

[ttrpc]
  address = ${q(`${p.containerdSocket}.ttrpc`)}

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.runtime.v1.linux"]
  runtime_root = ${q(join(p.node, 'containerd/runtime-v1'))}

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(join(p.node, 'containerd/opt'))}

${cri}]
  sandbox_image = ${q(o.sandboxImage)}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Root here lacks CAP_SYS_RESOURCE: runc may not set an oom_score_adj below containerd's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true

${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

${cri}.containerd.runtimes.runc.options]
  BinaryName = ${q(RUNC)}
  Root = ${q(p.runcRoot)}
  SystemdCgroup = false
  ShimCgroup = ${q(o.shimCgroup)}

${cri}.cni]
  bin_dir = ${q(CNI_BIN_DIR)}
  conf_dir = ${q(p.cniConf)}
  max_conf_num = 1

${cri}.registry]
  config_path = ${q(p.registryHosts)}
`;
}

/** `certs.d/HOST/hosts.toml` per local registry: plain HTTP for two, the environment CA for the third. */
export function registryHostsFiles(
  registries: LocalClusterInfo['registries'],
  caFile: string,
): Record<string, string> {
  const files: Record<string, string> = {};
  for (const endpoint of Object.values(registries)) {
    const lines = [
      `server = ${JSON.stringify(endpoint.url)}`,
      '',
      `[host.${JSON.stringify(endpoint.url)}]`,
      '  capabilities = ["pull", "resolve"]',
    ];
    if (endpoint.url.startsWith('https://'))
      lines.push(`  ca = ${JSON.stringify(endpoint.caFile ?? caFile)}`);
    files[endpoint.host] = `${lines.join('\n')}\n`;
  }
  return files;
}

/** The CNI network: host-local IPAM alone, so pods get an address (containerd 1.6 wants one) and no link. */
export function cniConflist(network: string, dataDir: string): string {
  return `${JSON.stringify(
    {
      cniVersion: '0.4.0',
      name: network,
      plugins: [
        {
          type: 'host-local',
          ipam: { type: 'host-local', ranges: [[{ subnet: POD_SUBNET }]], dataDir },
        },
      ],
    },
    null,
    2,
  )}\n`;
}

export function kubeletConfigYaml(o: {
  paths: ReturnType<typeof realNodePaths>;
  kubeletPort: number;
  healthzPort: number;
  caFile: string;
  cgroupRoot: string;
}): string {
  const p = o.paths;
  return toYaml({
    apiVersion: 'kubelet.config.k8s.io/v1beta1',
    kind: 'KubeletConfiguration',
    address: '127.0.0.1',
    port: o.kubeletPort,
    readOnlyPort: 0,
    healthzBindAddress: '127.0.0.1',
    healthzPort: o.healthzPort,
    tlsCertFile: join(p.kubeletPki, 'kubelet.crt'),
    tlsPrivateKeyFile: join(p.kubeletPki, 'kubelet.key'),
    rotateCertificates: false,
    serverTLSBootstrap: false,
    // Only the apiserver's client certificate (or a token the apiserver vouches for) gets in.
    authentication: {
      anonymous: { enabled: false },
      webhook: { enabled: true },
      x509: { clientCAFile: o.caFile },
    },
    authorization: { mode: 'Webhook' },
    containerRuntimeEndpoint: `unix://${p.containerdSocket}`,
    cgroupDriver: 'cgroupfs',
    cgroupRoot: o.cgroupRoot,
    failCgroupV1: false,
    failSwapOn: false,
    resolvConf: p.resolvConf,
    podLogsDir: p.podLogs,
    volumePluginDir: join(p.kubeletRoot, 'volume-plugins'),
    clusterDomain: 'cluster.local',
    // A shared machine: evict only when really short, and keep the images (they are the point).
    evictionHard: {
      'memory.available': '100Mi',
      'nodefs.available': '2%',
      'imagefs.available': '2%',
      'nodefs.inodesFree': '2%',
    },
    imageGCHighThresholdPercent: 100,
    imageGCLowThresholdPercent: 99,
    maxPods: 110,
    serializeImagePulls: false,
  });
}

/** A kubeconfig with a client certificate (the kubelet's node identity). */
function certificateKubeconfig(server: string, caFile: string, cert: string, key: string): string {
  return toYaml({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'local', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name: 'node', user: { 'client-certificate': cert, 'client-key': key } }],
    contexts: [{ name: 'local', context: { cluster: 'local', user: 'node' } }],
    'current-context': 'local',
  });
}

/**
 * Writes the node's certificates and configuration, records the host state to restore, and creates its
 * cgroup root. The containerd configuration is written fresh each time: the registries' ports change.
 */
export async function configureRealNode(
  ctx: EnvironmentContext,
  pool: PortPool,
  cp: ControlPlane,
  registries: Registries,
): Promise<RealNode> {
  const paths = realNodePaths(ctx.dir);
  const kubeletPort = pool.next();
  const healthzPort = pool.next();
  const id = environmentId(ctx.dir);
  const sandboxImage = `${registries.info.open.host}/${SANDBOX_REPOSITORY}:${SANDBOX_TAG}`;
  // Named after the folder: two environments on one machine never share a cgroup or a CNI network.
  const cgroupRoot = `/kubewatcher-${id}`;
  const cniNetwork = `kubewatcher-${id}`;
  const folders = [paths.containerdRoot, paths.containerdState, paths.runcRoot, paths.cniConf, paths.cniData];
  for (const d of [...folders, paths.kubeletRoot, paths.kubeletPki, paths.podLogs]) {
    await mkdir(d, { recursive: true, mode: 0o700 });
  }
  const cert = (name: string) => ({
    cert: join(paths.kubeletPki, `${name}.crt`),
    key: join(paths.kubeletPki, `${name}.key`),
  });
  await Promise.all([
    // The Node authorizer's identity of this node: user system:node:127.0.0.1 in group system:nodes.
    issueCertificate(ctx.pki, {
      ...cert('kubelet-client'),
      subject: `/O=system:nodes/CN=system:node:${REAL_NODE_NAME}`,
      use: 'client_ext',
    }),
    issueCertificate(ctx.pki, {
      ...cert('kubelet'),
      subject: `/CN=${REAL_NODE_NAME}`,
      use: 'loopback_server_ext',
    }),
  ]);
  const hosts = registryHostsFiles(registries.info, ctx.pki.caCert);
  await Promise.all([
    writeFile(
      paths.containerdConfig,
      containerdConfigToml({ paths, sandboxImage, shimCgroup: `${cgroupRoot}/${SHIM_CGROUP}` }),
    ),
    ...Object.entries(hosts).map(async ([host, toml]) => {
      await mkdir(join(paths.registryHosts, host), { recursive: true });
      await writeFile(join(paths.registryHosts, host, 'hosts.toml'), toml);
    }),
    writeFile(join(paths.cniConf, '10-kubewatcher.conflist'), cniConflist(cniNetwork, paths.cniData)),
    writeFile(paths.resolvConf, 'nameserver 127.0.0.1\n'),
    writeFile(
      paths.kubeletConfig,
      kubeletConfigYaml({
        paths,
        kubeletPort,
        healthzPort,
        caFile: ctx.pki.caCert,
        cgroupRoot,
      }),
    ),
    writeFile(
      paths.kubeletKubeconfig,
      certificateKubeconfig(
        cp.apiServer,
        ctx.pki.caCert,
        cert('kubelet-client').cert,
        cert('kubelet-client').key,
      ),
      { mode: 0o600 },
    ),
  ]);
  await prepareHost(paths.hostState, {
    cgroupRoot,
    cniNetwork,
    dir: ctx.dir,
    containerdSocket: paths.containerdSocket,
  });
  const host = (name: keyof LocalClusterInfo['registries']) => registries.info[name].host;
  return {
    paths,
    kubeletPort,
    healthzPort,
    sandboxImage,
    info: {
      name: REAL_NODE_NAME,
      apiServerHost: '127.0.0.1',
      apiServerPort: cp.apiPort,
      containerdSocket: paths.containerdSocket,
      containerdNamespace: CRI_NAMESPACE,
      kubeletPort,
      podSubnet: POD_SUBNET,
      sandboxImage,
      registries: { open: host('open'), basic: host('basic'), token: host('token') },
    },
  };
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

export async function spawnContainerd(ctx: EnvironmentContext, node: RealNode): Promise<void> {
  await ctx.sup.spawn('containerd', '/usr/bin/containerd', ['--config', node.paths.containerdConfig], {
    PATH: NODE_PATH,
  });
  await ctx.sup.waitFor('containerd to listen', ['containerd'], ctx.timeoutMs, () =>
    socketAnswers(node.paths.containerdSocket),
  );
  ctx.log(`containerd listening (${ctx.since()})`);
}

/** The pause image every pod's sandbox runs: busybox waiting for SIGTERM, pushed to the open registry. */
export async function pushSandboxImage(ctx: EnvironmentContext, registries: Registries, node: RealNode) {
  await pushBusyboxImage({
    registry: registries.info.open,
    binDir: ctx.binDir,
    repository: SANDBOX_REPOSITORY,
    tag: SANDBOX_TAG,
    busybox: BUSYBOX_STATIC,
    content: 'pause\n',
    entrypoint: [
      '/bin/busybox',
      'sh',
      '-c',
      "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done",
    ],
  });
  ctx.log(`pause image pushed as ${node.sandboxImage} (${ctx.since()})`);
}

/**
 * Lets the apiserver's kubelet client certificate use the kubelet API (logs, exec, port-forward), as
 * kubeadm binds it; the kubelet asks the apiserver (Webhook authorization) on every call.
 */
export async function authorizeApiServerToKubelets(cp: ControlPlane): Promise<void> {
  const res = await cp.kube('/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
    method: 'POST',
    body: JSON.stringify({
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'kubewatcher-local:apiserver-kubelet-client' },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: 'system:kubelet-api-admin',
      },
      subjects: [
        { apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: 'kube-apiserver-kubelet-client' },
      ],
    }),
  });
  if (res.status !== 201 && res.status !== 409) {
    throw new Error(
      `binding the apiserver's kubelet client to system:kubelet-api-admin failed: HTTP ${res.status} ${res.body}`,
    );
  }
}

export async function spawnKubelet(ctx: EnvironmentContext, node: RealNode): Promise<void> {
  const p = node.paths;
  await ctx.sup.spawn(
    'kubelet',
    inBin(ctx, 'kubelet'),
    [
      `--config=${p.kubeletConfig}`,
      `--kubeconfig=${p.kubeletKubeconfig}`,
      `--root-dir=${p.kubeletRoot}`,
      `--cert-dir=${p.kubeletPki}`,
      // An IP literal: taken as is (no DNS), and it becomes the node's InternalIP.
      `--hostname-override=${REAL_NODE_NAME}`,
      '--v=1',
    ],
    { PATH: NODE_PATH },
  );
}

export async function waitRealNodeReady(ctx: EnvironmentContext, cp: ControlPlane): Promise<void> {
  let last = '';
  await ctx.sup.waitFor(
    `node ${REAL_NODE_NAME} to be Ready (kubelet)`,
    ['kubelet', 'containerd'],
    ctx.timeoutMs,
    async () => {
      const ready = readyCondition(await cp.kube(`/api/v1/nodes/${REAL_NODE_NAME}`));
      if (ready && ready.message !== last) {
        last = ready.message ?? '';
        if (ready.status !== 'True') ctx.log(`node ${REAL_NODE_NAME}: ${ready.reason ?? ''} ${last}`);
      }
      return ready?.status === 'True' || undefined;
    },
  );
  ctx.log(`node ${REAL_NODE_NAME} Ready (${ctx.since()})`);
}

// ---------------------------------------------------------------------------------------------------
// Teardown

/** containerd's task bundles: the shims' pids and sockets, by namespace and container id. */
function shimsOf(state: HostState): { id: string; pid: number; socket?: string }[] {
  const tasks = join(state.dir, 'node/containerd/state/io.containerd.runtime.v2.task');
  const shims: { id: string; pid: number; socket?: string }[] = [];
  for (const ns of listDir(tasks)) {
    for (const id of listDir(join(tasks, ns))) {
      const bundle = join(tasks, ns, id);
      const read = (f: string) => {
        try {
          return readFileSync(join(bundle, f), 'utf8').trim();
        } catch {
          return '';
        }
      };
      const pid = Number(read('shim.pid'));
      const address = read('address');
      shims.push({
        id,
        pid,
        socket: address.startsWith('unix://') ? address.slice('unix://'.length) : undefined,
      });
    }
  }
  return shims;
}

/**
 * The socket a containerd 1.6 shim serves: /run/containerd/s/ and the SHA-256 of containerd's address,
 * namespace and container id joined as a path (runtime/v2/shim SocketAddress).
 */
export function shimSocketPath(containerdSocket: string, namespace: string, id: string): string {
  const digest = createHash('sha256')
    .update(join(containerdSocket, namespace, id))
    .digest('hex');
  return `/run/containerd/s/${digest}`;
}

/** The socket of the shim `pid` serves, if it is a shim of this node's containerd. */
function shimSocketOf(pid: number, containerdSocket: string): string | undefined {
  if (!isOurShim(pid, containerdSocket)) return undefined;
  const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  const arg = (flag: string) => argv[argv.indexOf(flag) + 1];
  const [namespace, id] = [arg('-namespace'), arg('-id')];
  return namespace && id ? shimSocketPath(containerdSocket, namespace, id) : undefined;
}

/** Whether `pid` is a shim of this node's containerd (its command line names our socket). */
function isOurShim(pid: number, containerdSocket: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes(containerdSocket) && (argv[0] ?? '').includes('containerd-shim');
  } catch {
    return false;
  }
}

async function killUntilGone(what: string, pids: () => number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = pids();
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`could not stop ${what}: pids ${left.join(', ')}`);
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}

/** Deletes runc's record of every container in the node's runc root (their processes are gone by now). */
async function deleteRuncContainers(runcRoot: string): Promise<void> {
  for (const ns of listDir(runcRoot)) {
    const root = join(runcRoot, ns);
    const { stdout } = await run(RUNC, ['--root', root, 'list', '-q']).catch(() => ({ stdout: '' }));
    for (const id of stdout.split('\n').filter((l) => l.trim() !== '')) {
      await run(RUNC, ['--root', root, 'delete', '--force', id]).catch(() => {});
    }
  }
}

/**
 * Stops the node and undoes what it did to the machine, from `dir`'s files alone: the kubelet (so it
 * restarts nothing), containerd, every process in the node's cgroups (the pods' containers and the
 * shims), runc's records of them, any shim outside them (by the pid in its task bundle, if its command
 * line names this node's socket), then unmounts
 * everything under `dir` (latest first), removes the node's cgroups, restores the kernel settings and
 * the fixed paths. A no-op where no real node ran. Returns what it did, for a progress line.
 */
export async function tearDownRealNode(dir: string): Promise<string[]> {
  const paths = realNodePaths(dir);
  const state = await readHostState(paths.hostState);
  if (!state) {
    if (existsSync(paths.node)) await unmountUnder(dir);
    await releaseRealNode(dir);
    return [];
  }
  const done: string[] = [];
  // Read before anything stops: a shim that exits cleans its task bundle up.
  const shims = shimsOf(state);
  const sandboxIds = listDir(join(paths.containerdState, 'io.containerd.grpc.v1.cri/sandboxes'));
  const records = await readProcessRecords(dir);
  const named = (name: string) => records.filter((r) => r.name === name && isRecordedProcessAlive(r));
  const kubelet = named('kubelet');
  await stopProcessGroups(kubelet, STOP_GRACE_MS);
  if (kubelet.length > 0) done.push('kubelet');
  // containerd before its shims: it would otherwise run a cleanup for each shim that dies.
  const containerd = named('containerd');
  await stopProcessGroups(containerd, STOP_GRACE_MS);
  if (containerd.length > 0) done.push('containerd');
  const containerPids = pidsInCgroups(state.cgroupDirs);
  // The shims are in the node's cgroups too (ShimCgroup), even one a failed sandbox left behind.
  const shimSockets = containerPids.map((pid) => shimSocketOf(pid, state.containerdSocket));
  await killUntilGone('the containers', () => pidsInCgroups(state.cgroupDirs), 10_000);
  if (containerPids.length > 0) done.push(`${containerPids.length} processes of pods and shims`);
  await deleteRuncContainers(paths.runcRoot);
  // Containers of one pod share their sandbox's shim: each pid once, and never 0 (an empty shim.pid).
  const ours = () => [
    ...new Set(shims.filter((s) => s.pid > 0 && isOurShim(s.pid, state.containerdSocket)).map((s) => s.pid)),
  ];
  const shimCount = ours().length;
  await killUntilGone("containerd's shims", ours, 5_000);
  if (shimCount > 0) done.push(`${shimCount} shims`);
  await unmountUnder(dir);
  await removeCgroups(state.cgroupDirs);
  const restored = await restoreSysctls(state.sysctls);
  if (restored.length > 0) done.push(`restored ${restored.join(' ')}`);
  await cleanFixedPaths(state, {
    shimSockets: [...shims.map((s) => s.socket), ...shimSockets].filter((s) => s !== undefined),
    containerIds: [...shims.map((s) => s.id), ...sandboxIds],
  });
  await rm(paths.hostState, { force: true });
  await releaseRealNode(dir);
  return done;
}
