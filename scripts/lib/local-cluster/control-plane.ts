/**
 * The control plane room: etcd, kube-apiserver, kube-controller-manager and kube-scheduler on loopback
 * ports, with an admin token (system:masters) in `dir/kubeconfig`.
 *
 * The apiserver authorizes with Node and RBAC and admits with NodeRestriction, as a kubeadm cluster does,
 * so a real kubelet registers with a `system:node:NAME` certificate and may touch only its own objects. It
 * trusts client certificates from the environment's CA and calls kubelets with a client certificate of its
 * own (`kubectl logs` and `exec` on a real node need no anonymous access to the kubelet).
 */
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { stringify as toYaml } from 'yaml';
import { type EnvironmentContext, inBin, inDir, type PortPool } from './context.ts';
import { type HttpOptions, type HttpResponse, httpRequest } from './processes.ts';

/** Ports the control plane takes from the pool. */
export const CONTROL_PLANE_PORTS = 5;

export interface ControlPlane {
  apiServer: string;
  apiPort: number;
  kubeconfig: string;
  adminToken: string;
  /** An admin request to the apiserver (JSON, trusting the environment CA). */
  kube: (path: string, init?: HttpOptions) => Promise<HttpResponse>;
  etcdPort: number;
  etcdPeerPort: number;
  kcmPort: number;
  schedulerPort: number;
}

export function kubeconfigYaml(server: string, caPem: string, token: string): string {
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

/** Picks the ports and the admin token and writes the kubeconfig and the token file. */
export async function configureControlPlane(ctx: EnvironmentContext, ports: PortPool): Promise<ControlPlane> {
  const [etcdPort, etcdPeerPort, apiPort, kcmPort, schedulerPort] = [
    ports.next(),
    ports.next(),
    ports.next(),
    ports.next(),
    ports.next(),
  ];
  const adminToken = randomBytes(24).toString('hex');
  // token,user,uid,groups: the admin of this environment is in system:masters, as kubeadm's admin.conf.
  const adminTokenLine = `${adminToken},kubewatcher-admin,kubewatcher-admin,system:masters\n`;
  const apiServer = `https://127.0.0.1:${apiPort}`;
  const kubeconfig = inDir(ctx, 'kubeconfig');
  await Promise.all([
    writeFile(kubeconfig, kubeconfigYaml(apiServer, ctx.caPem, adminToken), { mode: 0o600 }),
    writeFile(inDir(ctx, 'config/token-auth.csv'), adminTokenLine, { mode: 0o600 }),
  ]);
  const kube = (path: string, init: HttpOptions = {}) =>
    httpRequest(`${apiServer}${path}`, {
      ca: ctx.caPem,
      ...init,
      headers: {
        authorization: `Bearer ${adminToken}`,
        'content-type': 'application/json',
        ...init.headers,
      },
    });
  return { apiServer, apiPort, kubeconfig, adminToken, kube, etcdPort, etcdPeerPort, kcmPort, schedulerPort };
}

/** Starts etcd and kube-apiserver (the apiserver retries etcd until it answers). */
export async function spawnEtcdAndApiServer(ctx: EnvironmentContext, cp: ControlPlane): Promise<void> {
  const { pki } = ctx;
  const etcdUrl = `http://127.0.0.1:${cp.etcdPort}`;
  const etcdPeerUrl = `http://127.0.0.1:${cp.etcdPeerPort}`;
  await ctx.sup.spawn('etcd', inBin(ctx, 'etcd'), [
    '--name=local',
    `--data-dir=${inDir(ctx, 'etcd')}`,
    `--listen-client-urls=${etcdUrl}`,
    `--advertise-client-urls=${etcdUrl}`,
    `--listen-peer-urls=${etcdPeerUrl}`,
    `--initial-advertise-peer-urls=${etcdPeerUrl}`,
    `--initial-cluster=local=${etcdPeerUrl}`,
    '--unsafe-no-fsync=true',
    '--log-level=warn',
  ]);
  await ctx.sup.spawn('kube-apiserver', inBin(ctx, 'kube-apiserver'), [
    `--etcd-servers=${etcdUrl}`,
    `--secure-port=${cp.apiPort}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--cert-dir=${inDir(ctx, 'pki')}`,
    `--tls-cert-file=${pki.apiServerCert}`,
    `--tls-private-key-file=${pki.apiServerKey}`,
    `--token-auth-file=${inDir(ctx, 'config/token-auth.csv')}`,
    `--client-ca-file=${pki.caCert}`,
    '--authorization-mode=Node,RBAC',
    '--enable-admission-plugins=NodeRestriction',
    `--kubelet-client-certificate=${pki.apiServerKubeletClientCert}`,
    `--kubelet-client-key=${pki.apiServerKubeletClientKey}`,
    `--kubelet-certificate-authority=${pki.caCert}`,
    '--kubelet-preferred-address-types=InternalIP',
    '--service-cluster-ip-range=10.0.0.0/24',
    '--allow-privileged=true',
    `--service-account-issuer=${cp.apiServer}/`,
    `--service-account-key-file=${pki.serviceAccountPublicKey}`,
    `--service-account-signing-key-file=${pki.serviceAccountPrivateKey}`,
    // Off as on a hardened cluster; KUBEWATCHER_APISERVER_PROFILING=1 serves /debug/pprof (admin
    // only) for a CPU profile of kube-apiserver under a benchmark (bench/status-writes.ts --profile).
    `--profiling=${process.env.KUBEWATCHER_APISERVER_PROFILING === '1'}`,
  ]);
}

/**
 * Waits until the apiserver serves at all: the controllers give up if it is not healthy within seconds of
 * their start, and its post-start hooks finish well within that once it serves.
 */
export async function waitApiServerServing(ctx: EnvironmentContext, cp: ControlPlane): Promise<void> {
  await ctx.sup.waitFor(
    'kube-apiserver to serve HTTPS',
    ['kube-apiserver', 'etcd'],
    ctx.timeoutMs,
    async () => {
      await cp.kube('/livez');
      return true;
    },
  );
  ctx.log(`kube-apiserver serving (${ctx.since()})`);
}

export async function waitApiServerReady(
  ctx: EnvironmentContext,
  cp: ControlPlane,
  what = 'kube-apiserver /readyz',
) {
  await ctx.sup.waitFor(what, ['kube-apiserver', 'etcd'], ctx.timeoutMs, async () => {
    const res = await cp.kube('/readyz');
    return res.status === 200 || undefined;
  });
}

export async function spawnControllers(ctx: EnvironmentContext, cp: ControlPlane): Promise<void> {
  await ctx.sup.spawn('kube-controller-manager', inBin(ctx, 'kube-controller-manager'), [
    `--kubeconfig=${cp.kubeconfig}`,
    '--leader-elect=false',
    `--service-account-private-key-file=${ctx.pki.serviceAccountPrivateKey}`,
    `--root-ca-file=${ctx.pki.caCert}`,
    `--secure-port=${cp.kcmPort}`,
    '--bind-address=127.0.0.1',
    '--controllers=*',
    '--profiling=false',
  ]);
  await ctx.sup.spawn('kube-scheduler', inBin(ctx, 'kube-scheduler'), [
    `--kubeconfig=${cp.kubeconfig}`,
    '--leader-elect=false',
    `--secure-port=${cp.schedulerPort}`,
    '--bind-address=127.0.0.1',
    '--profiling=false',
  ]);
}

/** The controllers' health ports, and the default ServiceAccount (kube-controller-manager made it). */
export async function waitControllersReady(ctx: EnvironmentContext, cp: ControlPlane): Promise<void> {
  await Promise.all([
    ...(
      [
        ['kube-controller-manager', cp.kcmPort],
        ['kube-scheduler', cp.schedulerPort],
      ] as const
    ).map(([name, port]) =>
      ctx.sup.waitFor(`${name} /healthz`, [name], ctx.timeoutMs, async () => {
        const res = await httpRequest(`https://127.0.0.1:${port}/healthz`, { insecure: true });
        return res.status === 200;
      }),
    ),
    ctx.sup.waitFor(
      'the default ServiceAccount in namespace default (kube-controller-manager)',
      ['kube-controller-manager'],
      ctx.timeoutMs,
      async () => (await cp.kube('/api/v1/namespaces/default/serviceaccounts/default')).status === 200,
    ),
  ]);
}

/** Stops kube-apiserver and starts it again with the same flags, then waits until it is ready. */
export async function restartApiServer(
  ctx: EnvironmentContext,
  cp: ControlPlane,
  downMs?: number,
): Promise<void> {
  await ctx.sup.restart('kube-apiserver', downMs);
  await waitApiServerReady(ctx, cp, 'kube-apiserver /readyz after a restart');
}
