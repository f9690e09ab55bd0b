/**
 * The shipped NetworkPolicies (manifests/install.yaml, and the Helm chart as `helm template` renders it)
 * enforced by a real NetworkPolicy implementation on real packets: which connections of the controller
 * and the poller pass and which are refused, and, as the control, that every refused one passes once
 * the policies are deleted (so it is the enforcer that refuses them, following the policies).
 *
 * The enforcer is kube-router's firewall (iptables and ipsets; routing and service proxy off), built by
 * scripts/build-netpol-enforcer.sh, running in the "node" network namespace of a lab of the test's own
 * (test/support/netns-lab.ts): each pod is a network namespace whose address is the status.podIP of a
 * Pod object on a Node object the test creates (no kubelet: the test writes the pods' status itself),
 * and the servers outside the cluster (the API server's port, a registry, DNS, the cloud metadata
 * address 169.254.169.254) are listeners in a "world" namespace. The Pods carry the labels and the
 * container ports of the shipped pod templates, so the policies select them as they select the real
 * pods. Nothing runs or changes outside the lab's namespaces and the local API server.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type {
  V1CronJob,
  V1Deployment,
  V1NetworkPolicy,
  V1Pod,
  V1PodTemplateSpec,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { canInstallDebianPackages, installDebianPackages } from '../scripts/lib/debian-packages.ts';
import {
  type Clients,
  clientsFor,
  createNamespace,
  kubectl,
  mergePatch,
  until,
} from './support/controller-fixtures.ts';
import { createLab, type Lab, NODE_IP, type Proto } from './support/netns-lab.ts';

const run = promisify(execFile);
const info = inject('localCluster');
const repoRoot = join(import.meta.dirname, '..');

/** Programs the enforcer runs (kube-router finds them on PATH), and the Debian packages that have them. */
const ENFORCER_TOOLS = [
  { path: '/usr/sbin/iptables', debianPackage: 'iptables' },
  { path: '/usr/sbin/iptables-save', debianPackage: 'iptables' },
  { path: '/usr/sbin/iptables-restore', debianPackage: 'iptables' },
  { path: '/usr/sbin/ipset', debianPackage: 'ipset' },
];

/** The lab's pods: the two of Kubewatcher and two clients, one in a namespace allowed to scrape. */
const PODS = ['controller', 'poller', 'scraper', 'stranger'] as const;
type PodRole = (typeof PODS)[number];

/** Servers outside the cluster, in the lab's world namespace. */
const WORLD = {
  apiServer: '198.18.1.10',
  registry: '198.18.1.11',
  dns: '198.18.1.53',
  metadata: '169.254.169.254',
} as const;
type WorldServer = keyof typeof WORLD;
const WORLD_LISTENERS: [WorldServer, Proto, number][] = [
  ['apiServer', 'tcp', 443],
  ['apiServer', 'tcp', 6443],
  ['registry', 'tcp', 5000],
  ['registry', 'udp', 5000],
  ['dns', 'udp', 53],
  ['dns', 'tcp', 53],
  ['metadata', 'tcp', 80],
  ['metadata', 'tcp', 443],
  ['metadata', 'tcp', 5000],
  ['metadata', 'udp', 53],
];
/** A controller port the policy does not open, and the port a listener in the poller pod serves. */
const CONTROLLER_OTHER_PORT = 9443;
const POLLER_PORT = 8080;

type Verdict = 'allowed' | 'refused';
interface Connection {
  from: PodRole;
  to: WorldServer | PodRole;
  proto: Proto;
  /** A number, or 'metrics': the controller's container port of that name in the shipped template. */
  port: number | 'metrics';
  enforced: Verdict;
}

/** What the policies are meant to do (issue 11): each connection's verdict with the policies in place. */
const CONNECTIONS: Connection[] = [
  // The controller: /metrics only from a namespace labelled kubewatcher.io/metrics-access=allowed.
  { from: 'scraper', to: 'controller', proto: 'tcp', port: 'metrics', enforced: 'allowed' },
  { from: 'stranger', to: 'controller', proto: 'tcp', port: 'metrics', enforced: 'refused' },
  { from: 'poller', to: 'controller', proto: 'tcp', port: 'metrics', enforced: 'refused' },
  { from: 'scraper', to: 'controller', proto: 'tcp', port: CONTROLLER_OTHER_PORT, enforced: 'refused' },
  // …egress to DNS and the API server's ports only, never the metadata address.
  { from: 'controller', to: 'apiServer', proto: 'tcp', port: 443, enforced: 'allowed' },
  { from: 'controller', to: 'apiServer', proto: 'tcp', port: 6443, enforced: 'allowed' },
  { from: 'controller', to: 'dns', proto: 'udp', port: 53, enforced: 'allowed' },
  { from: 'controller', to: 'dns', proto: 'tcp', port: 53, enforced: 'allowed' },
  { from: 'controller', to: 'metadata', proto: 'tcp', port: 443, enforced: 'refused' },
  { from: 'controller', to: 'registry', proto: 'tcp', port: 5000, enforced: 'refused' },
  // The DNS rule names no destination (a node-local DNS cache may listen on a link-local address), so
  // DNS to the metadata address passes: what the policies say, recorded here so that a change shows.
  { from: 'controller', to: 'metadata', proto: 'udp', port: 53, enforced: 'allowed' },
  // The poller: registries and the API server on any TCP port, DNS; never the metadata address.
  { from: 'poller', to: 'registry', proto: 'tcp', port: 5000, enforced: 'allowed' },
  { from: 'poller', to: 'apiServer', proto: 'tcp', port: 6443, enforced: 'allowed' },
  { from: 'poller', to: 'dns', proto: 'udp', port: 53, enforced: 'allowed' },
  { from: 'poller', to: 'dns', proto: 'tcp', port: 53, enforced: 'allowed' },
  { from: 'poller', to: 'metadata', proto: 'tcp', port: 80, enforced: 'refused' },
  { from: 'poller', to: 'metadata', proto: 'tcp', port: 443, enforced: 'refused' },
  { from: 'poller', to: 'metadata', proto: 'tcp', port: 5000, enforced: 'refused' },
  { from: 'poller', to: 'registry', proto: 'udp', port: 5000, enforced: 'refused' },
  // …and it takes no connections.
  { from: 'scraper', to: 'poller', proto: 'tcp', port: POLLER_PORT, enforced: 'refused' },
  { from: 'stranger', to: 'poller', proto: 'tcp', port: POLLER_PORT, enforced: 'refused' },
];
/** A refused TCP connection is rejected at once; a refused UDP datagram is dropped without an answer. */
const PROBE_TIMEOUT_MS = 3000;
const ENFORCER_LOG = 'kube-router.log';

/** The objects of one way of installing that the test uses. */
interface Shipped {
  policies: V1NetworkPolicy[];
  controller: V1PodTemplateSpec;
  poller: V1PodTemplateSpec;
}

function shippedFrom(yamlText: string, source: string): Shipped {
  const objects = parseAllDocuments(yamlText)
    .map((d) => d.toJS() as { kind?: string } | null)
    .filter((o): o is { kind: string } => !!o?.kind);
  const deployment = objects.find((o) => o.kind === 'Deployment') as V1Deployment | undefined;
  const cronJob = objects.find((o) => o.kind === 'CronJob') as V1CronJob | undefined;
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy') as V1NetworkPolicy[];
  if (!deployment || !cronJob || policies.length !== 2) {
    throw new Error(
      `${source}: expected the controller Deployment, the poller CronJob and two NetworkPolicies`,
    );
  }
  return {
    policies,
    controller: deployment.spec!.template,
    poller: cronJob.spec!.jobTemplate.spec!.template,
  };
}

/** `kubectl create` of `objects` (a List, on stdin). */
async function kubectlCreate(objects: object[]): Promise<void> {
  const child = run(join(info.binDir, 'kubectl'), ['--kubeconfig', info.kubeconfig, 'create', '-f', '-']);
  child.child.stdin!.end(JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
  try {
    await child;
  } catch (err) {
    throw new Error(`kubectl create failed: ${(err as { stderr?: string }).stderr ?? err}`);
  }
}

async function helmTemplate(): Promise<string> {
  const { stdout } = await run('bash', [join(repoRoot, 'scripts/build-helm.sh')]);
  const helm = stdout.trim().split('\n').at(-1)!;
  const chart = join(repoRoot, 'manifests/helm/kubewatcher');
  return (
    await run(helm, ['template', 'kubewatcher', chart, '--namespace', 'kubewatcher-system'], {
      maxBuffer: 64 << 20,
    })
  ).stdout;
}

/** The enforcer's binary (built when missing) and the Debian packages it needs (installed when missing). */
async function enforcerReady(): Promise<string> {
  const missing = [...new Set(ENFORCER_TOOLS.filter((t) => !existsSync(t.path)).map((t) => t.debianPackage))];
  if (missing.length > 0) {
    if (!canInstallDebianPackages()) {
      throw new Error(`the NetworkPolicy test needs root and apt-get to install ${missing.join(' ')}`);
    }
    await installDebianPackages(missing, 'the NetworkPolicy enforcer runs them', (l) => console.error(l));
  }
  for (const t of ENFORCER_TOOLS) {
    if (!existsSync(t.path))
      throw new Error(`${t.path} is still missing after installing ${t.debianPackage}`);
  }
  const { stdout } = await run('bash', [join(repoRoot, 'scripts/build-netpol-enforcer.sh')], {
    maxBuffer: 16 << 20,
  });
  return stdout.trim().split('\n').at(-1)!;
}

const VARIANTS: [string, () => Promise<Shipped>][] = [
  [
    'manifests/install.yaml',
    async () => shippedFrom(readFileSync(join(repoRoot, 'manifests/install.yaml'), 'utf8'), 'install.yaml'),
  ],
  ['the Helm chart (default values)', async () => shippedFrom(await helmTemplate(), 'helm template')],
];
const installs = new Map<string, Shipped>();

let admin: Clients;
let lab: Lab | undefined;
let workDir: string;
const nodeName = `netpol-lab-${Math.random().toString(36).slice(2, 8)}`;
let nodeCreated = false;
const namespaces: string[] = [];

function portOf(c: Connection, shipped: Shipped): number {
  if (c.port !== 'metrics') return c.port;
  const port = shipped.controller
    .spec!.containers.flatMap((k) => k.ports ?? [])
    .find((p) => p.name === 'metrics');
  if (!port) throw new Error('the shipped controller container declares no port named metrics');
  return port.containerPort;
}

function label(c: Connection, shipped: Shipped): string {
  return `${c.from} -> ${c.to}:${portOf(c, shipped)}/${c.proto}`;
}

/** Each connection tried once, all at once; `allowed` only when the intended server answered. */
async function observe(connections: Connection[], shipped: Shipped): Promise<Map<string, Verdict>> {
  const results = await Promise.all(
    connections.map(async (c) => {
      const port = portOf(c, shipped);
      const host = c.to in WORLD ? WORLD[c.to as WorldServer] : lab!.pods[c.to]!.ip;
      const result = await lab!.pods[c.from]!.agent.probe(c.proto, host, port, PROBE_TIMEOUT_MS);
      const verdict: Verdict =
        result.outcome === 'connected' && result.banner === `${c.to}:${port}/${c.proto}`
          ? 'allowed'
          : 'refused';
      console.log(`${label(c, shipped).padEnd(40)} ${verdict.padEnd(8)} (${result.outcome})`);
      return [label(c, shipped), verdict] as const;
    }),
  );
  return new Map(results);
}

/** The pod `role` of the lab as a Pod object: the shipped template's labels and container ports. */
function labPod(role: PodRole, namespace: string, template?: V1PodTemplateSpec): V1Pod {
  return {
    metadata: { name: role, namespace, labels: template?.metadata?.labels ?? { app: role } },
    spec: {
      nodeName,
      // The Node has no kubelet and never becomes Ready: keep the pods on it.
      tolerations: [{ operator: 'Exists' }],
      containers: (template?.spec?.containers ?? [{ name: role, image: 'lab.invalid/none' }]).map((c) => ({
        name: c.name,
        image: c.image,
        ports: c.ports,
      })),
    },
  };
}

/** A namespace of the file, deleted at its end. */
async function labNamespace(prefix: string, labels: Record<string, string> = {}): Promise<string> {
  const name = await createNamespace(admin, prefix, labels);
  namespaces.push(name);
  return name;
}

/** The pods of one installation's objects, with their lab addresses as status.podIP. */
async function createPods(shipped: Shipped): Promise<Record<PodRole, string>> {
  const system = await labNamespace('netpol-system');
  const where: Record<PodRole, string> = {
    controller: system,
    poller: system,
    scraper: await labNamespace('netpol-monitoring', { 'kubewatcher.io/metrics-access': 'allowed' }),
    stranger: await labNamespace('netpol-other'),
  };
  for (const role of PODS) {
    const template = role === 'controller' || role === 'poller' ? shipped[role] : undefined;
    const podIp = lab!.pods[role]!.ip;
    await admin.core.createNamespacedPod({
      namespace: where[role],
      body: labPod(role, where[role], template),
    });
    await admin.core.patchNamespacedPodStatus(
      {
        name: role,
        namespace: where[role],
        body: {
          status: {
            phase: 'Running',
            hostIP: NODE_IP,
            hostIPs: [{ ip: NODE_IP }],
            podIP: podIp,
            podIPs: [{ ip: podIp }],
          },
        },
      },
      mergePatch,
    );
  }
  return where;
}

/** Removes the pods (at once: no kubelet confirms a graceful deletion) and their namespaces. */
async function deletePods(where: Record<PodRole, string>): Promise<void> {
  for (const role of PODS) {
    await admin.core
      .deleteNamespacedPod({ name: role, namespace: where[role], gracePeriodSeconds: 0 })
      .catch(() => undefined);
  }
  for (const ns of new Set(Object.values(where))) {
    await admin.core.deleteNamespace({ name: ns }).catch(() => undefined);
  }
}

/**
 * What the enforcer has applied, from its rules in the node's filter table (reading takes no lock): the
 * pods it filters ("…traffic destined to POD name:NAME namespace: NS…") and the policies it applies to
 * them ("run through nw policy NAME"). What the policies allow is left to the connections to show.
 */
async function enforcerState(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'exec', lab!.node.netns, 'iptables-save', '-t', 'filter']);
  const pods = [...stdout.matchAll(/destined to POD name:(\S+) namespace: (\S+) to chain/g)].map(
    (m) => `pod ${m[2]}/${m[1]}`,
  );
  const policies = [...stdout.matchAll(/run through nw policy (\S+?)"/g)].map((m) => `policy ${m[1]}`);
  return [...new Set([...pods, ...policies])].sort();
}

/** Waits (bounded) until the enforcer filters the pods of `where` with exactly `policies`. */
async function untilEnforced(where: Record<PodRole, string>, policies: string[]): Promise<void> {
  const want = [
    ...PODS.map((role) => `pod ${where[role]}/${role}`),
    ...policies.map((p) => `policy ${p}`),
  ].sort();
  try {
    await until(enforcerState, (seen) => JSON.stringify(seen) === JSON.stringify(want), {
      what: `the enforcer's rules to be [${want.join(', ')}]`,
      timeoutMs: 60_000,
      intervalMs: 250,
    });
  } catch (err) {
    const log = join(workDir, ENFORCER_LOG);
    const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-40).join('\n') : '(no log)';
    throw new Error(`${(err as Error).message}\nkube-router's log ends with:\n${tail}`);
  }
}

beforeAll(async () => {
  admin = clientsFor(info);
  workDir = mkdtempSync(join(tmpdir(), 'kubewatcher-netpol-'));
  const kubeRouter = await enforcerReady();

  for (const [source, load] of VARIANTS) installs.set(source, await load());

  lab = await createLab([...PODS]);
  for (const address of new Set(Object.values(WORLD))) await lab.addWorldAddress(address);
  for (const [server, proto, port] of WORLD_LISTENERS) {
    await lab.world.listen(proto, WORLD[server], port, `${server}:${port}/${proto}`);
  }
  // In the pods, a listener on each port a connection targets (of every installation), answering with
  // its name like the world's.
  const podListeners = new Set(
    [...installs.values()].flatMap((shipped) =>
      CONNECTIONS.filter((c) => !(c.to in WORLD)).map((c) => `${c.to} ${c.proto} ${portOf(c, shipped)}`),
    ),
  );
  for (const listener of podListeners) {
    const [role, proto, port] = listener.split(' ') as [PodRole, Proto, string];
    const pod = lab.pods[role]!;
    await pod.agent.listen(proto, pod.ip, Number(port), `${role}:${port}/${proto}`);
  }

  await admin.core.createNode({ body: { metadata: { name: nodeName } } });
  nodeCreated = true;
  // The enforcer finds its pods by the node's address (status.hostIP of each pod).
  await admin.core.patchNodeStatus(
    { name: nodeName, body: { status: { addresses: [{ type: 'InternalIP', address: NODE_IP }] } } },
    mergePatch,
  );

  // The node namespace reaches the API server through a unix socket, on the same loopback port, so the
  // environment's admin kubeconfig works there as it is.
  const api = new URL(info.apiServer);
  await lab.bridgeToHostLoopback({ host: api.hostname, port: Number(api.port) }, workDir);
  await lab.node.spawn(
    'unshare',
    [
      // A mount namespace of its own with an empty /run: iptables' lock file stays out of the host's /run.
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount -t tmpfs lab-run /run && exec "$0" "$@"',
      kubeRouter,
      '--run-firewall=true',
      '--run-router=false',
      '--run-service-proxy=false',
      `--kubeconfig=${info.kubeconfig}`,
      `--hostname-override=${nodeName}`,
      '--health-port=0',
      '--metrics-port=0',
      '--v=1',
    ],
    { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', NODE_NAME: nodeName },
    join(workDir, ENFORCER_LOG),
  );
}, 15 * 60_000);

afterAll(async () => {
  try {
    for (const ns of namespaces) await admin?.core.deleteNamespace({ name: ns }).catch(() => undefined);
    if (nodeCreated) await admin.core.deleteNode({ name: nodeName }).catch(() => undefined);
  } finally {
    await lab?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  }
});

describe.each(VARIANTS)('the NetworkPolicies of %s', (source) => {
  it('refuse and allow what they are meant to, and nothing is refused once they are deleted', async () => {
    const shipped = installs.get(source)!;
    const where = await createPods(shipped);
    const expected = (verdict: (c: Connection) => Verdict) =>
      new Map(CONNECTIONS.map((c) => [label(c, shipped), verdict(c)] as const));

    const created: string[] = [];
    try {
      // Every pod known to the enforcer (with its address) before any policy selects one.
      await untilEnforced(where, []);
      // Through kubectl, as an admin installs them: @kubernetes/client-node would serialise a plain
      // object's `from` as nothing (its model names the field `_from`), i.e. "from everywhere".
      const policies = shipped.policies.map((p) => ({
        ...p,
        metadata: { ...p.metadata, namespace: where.controller },
      }));
      await kubectlCreate(policies);
      created.push(...policies.map((p) => p.metadata.name!));
      await untilEnforced(where, created);
      console.log('with the policies:');
      expect(await observe(CONNECTIONS, shipped)).toEqual(expected((c) => c.enforced));

      await kubectl(info, '-n', where.controller, 'delete', 'networkpolicy', ...created.splice(0));
      await untilEnforced(where, []);
      console.log('without them:');
      expect(await observe(CONNECTIONS, shipped)).toEqual(expected(() => 'allowed'));
    } finally {
      await deletePods(where);
    }
  });
});
