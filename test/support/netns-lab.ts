/**
 * A pod network of the test's own, in network namespaces it makes and removes (`ip netns`), for tests
 * that need real packets between "pods" without a real node: the host's network namespace, its
 * interfaces and its netfilter rules are never touched, and no address outside these namespaces is used.
 *
 *   node   routes between the pods and the world (a /32 route per pod veth, as a routed CNI does); the
 *          NetworkPolicy enforcer runs here and filters what it forwards.
 *   pod-*  one namespace per pod: eth0 with the pod's address, default route to the node.
 *   world  the servers outside the cluster: the API server's stand-in, a registry, DNS, and the cloud
 *          metadata address 169.254.169.254.
 *
 * Addresses come from 198.18.0.0/15, the range reserved for network tests (RFC 2544). Each namespace runs
 * one test/support/netns-agent.ts (listeners, probes, forwarders, the enforcer); the agents exit when the
 * test process goes, and `close()` kills what is left and deletes the namespaces. Namespaces left by a
 * test process that died (their name holds its pid) are removed when the next lab is made.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createServer, connect as netConnect, type Server } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { isProcessAlive } from '../../scripts/lib/local-cluster/processes.ts';

const run = promisify(execFile);
const AGENT = join(import.meta.dirname, 'netns-agent.ts');
const PREFIX = 'kwlab';

/** The node's address on the pods' side (each pod's gateway) and on the world's side (its InternalIP). */
export const POD_GATEWAY = '198.18.0.1';
export const NODE_IP = '198.18.1.1';
const WORLD_IP = '198.18.1.2';

async function ip(args: string[]): Promise<string> {
  try {
    return (await run('ip', args)).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`ip ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** Kills every process still in the namespace, then deletes it. */
async function deleteNetns(name: string): Promise<void> {
  const pids = (await ip(['netns', 'pids', name]).catch(() => ''))
    .split('\n')
    .map(Number)
    .filter((p) => p > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await ip(['netns', 'delete', name]).catch(() => undefined);
}

/** Removes the namespaces of labs whose test process is gone. */
async function removeStaleLabs(): Promise<void> {
  const names = (await ip(['netns', 'list'])).split('\n').map((l) => l.split(' ')[0] ?? '');
  for (const name of names) {
    const owner = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1];
    if (owner && Number(owner) !== process.pid && !isProcessAlive(Number(owner))) await deleteNetns(name);
  }
}

type Answer = { id: number; ok?: boolean; error?: string } & Record<string, unknown>;

/** One netns-agent.ts process in a namespace, driven over its stdin/stdout. */
export class NetnsAgent {
  private next = 1;
  private readonly waiting = new Map<number, (a: Answer) => void>();
  private readonly ready: Promise<Answer>;
  private exited = false;
  readonly netns: string;
  private readonly child: ChildProcess;

  private constructor(netns: string, child: ChildProcess) {
    this.netns = netns;
    this.child = child;
    this.ready = new Promise((resolve) => this.waiting.set(0, resolve));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const answer = JSON.parse(line) as Answer;
      this.waiting.get(answer.id)?.(answer);
      this.waiting.delete(answer.id);
    });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-2000);
    });
    child.once('exit', (code, signal) => {
      this.exited = true;
      for (const [id, reply] of this.waiting) {
        reply({ id, error: `the agent in ${netns} exited (${signal ?? code}): ${stderr.trim()}` });
      }
      this.waiting.clear();
    });
  }

  static async start(netns: string): Promise<NetnsAgent> {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, AGENT], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const agent = new NetnsAgent(netns, child);
    const first = await agent.ready;
    if (first.error) throw new Error(first.error);
    return agent;
  }

  async request(command: Record<string, unknown>): Promise<Answer> {
    if (this.exited) throw new Error(`the agent in ${this.netns} has exited`);
    const id = this.next++;
    const answer = new Promise<Answer>((resolve) => this.waiting.set(id, resolve));
    this.child.stdin!.write(`${JSON.stringify({ id, ...command })}\n`);
    const a = await answer;
    if (a.error) throw new Error(`${this.netns}: ${String(command.op)} failed: ${a.error}`);
    return a;
  }

  /** Serves `name` on host:port (TCP: written to each connection; UDP: the answer to each datagram). */
  async listen(proto: Proto, host: string, port: number, name: string): Promise<void> {
    await this.request({ op: 'listen', proto, host, port, name });
  }

  /** One connection (TCP) or one datagram and its answer (UDP) from this namespace. */
  async probe(proto: Proto, host: string, port: number, timeoutMs: number): Promise<ProbeResult> {
    const a = await this.request({ op: 'probe', proto, host, port, timeoutMs });
    return { outcome: String(a.outcome), ...(typeof a.banner === 'string' ? { banner: a.banner } : {}) };
  }

  /** A TCP listener on host:port in this namespace whose connections go to the unix socket `socket`. */
  async forward(host: string, port: number, socket: string): Promise<void> {
    await this.request({ op: 'forward', host, port, socket });
  }

  /** Runs a program in this namespace (output appended to `log`); it is killed when the agent ends. */
  async spawn(file: string, args: string[], env: Record<string, string>, log: string): Promise<number> {
    return Number((await this.request({ op: 'spawn', file, args, env, log })).pid);
  }

  close(): Promise<void> {
    if (this.exited) return Promise.resolve();
    const gone = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end();
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    return gone.finally(() => clearTimeout(kill));
  }
}

export type Proto = 'tcp' | 'udp';
export interface ProbeResult {
  /** 'connected', 'timeout' or 'error <code>' (a rejected connection: ECONNREFUSED, EHOSTUNREACH…). */
  outcome: string;
  /** What the server answered: its name. */
  banner?: string;
}

export interface LabPod {
  name: string;
  ip: string;
  agent: NetnsAgent;
}

export interface Lab {
  node: NetnsAgent;
  world: NetnsAgent;
  pods: Record<string, LabPod>;
  /** Adds `address` (a /32) to the world's interface and routes it there from the node. */
  addWorldAddress(address: string): Promise<void>;
  /**
   * A TCP port on the node's own loopback that reaches `target` (host:port on the host's loopback),
   * through a unix socket (file-based, so it crosses network namespaces; the host side runs in this
   * process). For programs in the node namespace that talk to the local API server.
   */
  bridgeToHostLoopback(target: { host: string; port: number }, socketDir: string): Promise<number>;
  close(): Promise<void>;
}

/** Makes the namespaces, their links and routes, and an agent in each; `podNames` name the pods. */
export async function createLab(podNames: string[]): Promise<Lab> {
  await removeStaleLabs();
  const tag = `${PREFIX}${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  const made: string[] = [];
  const agents: NetnsAgent[] = [];
  const servers: Server[] = [];
  const close = async () => {
    for (const a of agents.splice(0)) await a.close();
    for (const s of servers.splice(0)) s.close();
    for (const n of made.splice(0)) await deleteNetns(n);
  };
  const netns = async (role: string) => {
    const name = `${tag}-${role}`;
    await ip(['netns', 'add', name]);
    made.push(name);
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  };
  try {
    const node = await netns('node');
    await run('ip', ['netns', 'exec', node, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    const world = await netns('world');
    await ip(['-n', node, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', world]);
    await ip(['-n', node, 'addr', 'add', `${NODE_IP}/24`, 'dev', 'uplink']);
    await ip(['-n', node, 'link', 'set', 'uplink', 'up']);
    await ip(['-n', world, 'addr', 'add', `${WORLD_IP}/24`, 'dev', 'eth0']);
    await ip(['-n', world, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', world, 'route', 'add', 'default', 'via', NODE_IP]);

    const pods: Record<string, LabPod> = {};
    const nodeAgent = await NetnsAgent.start(node);
    agents.push(nodeAgent);
    const worldAgent = await NetnsAgent.start(world);
    agents.push(worldAgent);
    for (const [i, name] of podNames.entries()) {
      const podNs = await netns(`pod${i}`);
      const podIp = `198.18.0.${10 + i}`;
      const veth = `pod${i}`;
      await ip(['-n', node, 'link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', podNs]);
      await ip(['-n', node, 'addr', 'add', `${POD_GATEWAY}/32`, 'dev', veth]);
      await ip(['-n', node, 'link', 'set', veth, 'up']);
      await ip(['-n', node, 'route', 'add', `${podIp}/32`, 'dev', veth]);
      await ip(['-n', podNs, 'addr', 'add', `${podIp}/32`, 'dev', 'eth0']);
      await ip(['-n', podNs, 'link', 'set', 'eth0', 'up']);
      await ip(['-n', podNs, 'route', 'add', `${POD_GATEWAY}/32`, 'dev', 'eth0']);
      await ip(['-n', podNs, 'route', 'add', 'default', 'via', POD_GATEWAY, 'dev', 'eth0']);
      const agent = await NetnsAgent.start(podNs);
      agents.push(agent);
      pods[name] = { name, ip: podIp, agent };
    }

    return {
      node: nodeAgent,
      world: worldAgent,
      pods,
      async addWorldAddress(address) {
        await ip(['-n', world, 'addr', 'add', `${address}/32`, 'dev', 'eth0']);
        if (!address.startsWith('198.18.1.')) {
          await ip(['-n', node, 'route', 'add', `${address}/32`, 'via', WORLD_IP]);
        }
      },
      async bridgeToHostLoopback(target, socketDir) {
        const socket = join(socketDir, `${tag}-api.sock`);
        const server = createServer((inbound) => {
          const outbound = netConnect({ host: target.host, port: target.port });
          inbound.pipe(outbound).pipe(inbound);
          const end = () => {
            inbound.destroy();
            outbound.destroy();
          };
          for (const s of [inbound, outbound]) {
            s.on('error', end);
            s.on('close', end);
          }
        });
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(socket, resolve);
        });
        servers.push(server);
        await nodeAgent.forward('127.0.0.1', target.port, socket);
        return target.port;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
