/**
 * The program test/support/netns-lab.ts runs in each network namespace it makes (`ip netns exec NS node
 * netns-agent.ts`): a Node process has the network of the namespace it starts in, so listening and
 * connecting "from a pod" means a process inside that pod's namespace. It takes one JSON command a line
 * on stdin and answers each with one JSON line on stdout ({ id, ok } or { id, error }):
 *
 *   { id, op: 'listen', proto: 'tcp'|'udp', host, port, name }   serve `name` to whoever connects/sends
 *   { id, op: 'probe', proto: 'tcp'|'udp', host, port, timeoutMs } → { id, ok, outcome, banner? }
 *       outcome 'connected' (and the server's name read back), 'timeout', or 'error <code>'
 *   { id, op: 'forward', host, port, socket }   a TCP listener here whose connections go to a unix socket
 *   { id, op: 'spawn', file, args, env, log }   a child process (output appended to `log`), killed on exit
 *
 * It exits when stdin closes (its owner ended or died), killing what it spawned first, so nothing it
 * started outlives the test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { openSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { createInterface } from 'node:readline';

type Proto = 'tcp' | 'udp';
type Command =
  | { id: number; op: 'listen'; proto: Proto; host: string; port: number; name: string }
  | { id: number; op: 'probe'; proto: Proto; host: string; port: number; timeoutMs: number }
  | { id: number; op: 'forward'; host: string; port: number; socket: string }
  | { id: number; op: 'spawn'; file: string; args: string[]; env: Record<string, string>; log: string };

const servers: { close(): void }[] = [];
const children: ChildProcess[] = [];

function answer(id: number, body: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ id, ...body })}\n`);
}

function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function listen(c: Extract<Command, { op: 'listen' }>): Promise<void> {
  if (c.proto === 'tcp') {
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.end(`${c.name}\n`);
    });
    await listenTcp(server, c.host, c.port);
    servers.push(server);
    return;
  }
  const socket = createSocket('udp4');
  socket.on('message', (_message, from) => socket.send(c.name, from.port, from.address));
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(c.port, c.host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  servers.push(socket);
}

/** One connection attempt: the outcome the test classifies (a drop shows as a timeout, not a reset). */
function probe(c: Extract<Command, { op: 'probe' }>): Promise<{ outcome: string; banner?: string }> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (outcome: string, banner?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      finish();
      resolve(banner === undefined ? { outcome } : { outcome, banner });
    };
    const timer = setTimeout(() => done('timeout'), c.timeoutMs);
    let finish: () => void = () => undefined;
    if (c.proto === 'tcp') {
      const socket = connect({ host: c.host, port: c.port });
      finish = () => socket.destroy();
      let banner = '';
      socket.on('data', (chunk: Buffer) => {
        banner += chunk.toString();
      });
      socket.on('end', () => done('connected', banner.trim()));
      socket.on('error', (err: NodeJS.ErrnoException) => done(`error ${err.code ?? err.message}`));
      return;
    }
    const socket = createSocket('udp4');
    finish = () => socket.close();
    socket.on('message', (message) => done('connected', message.toString().trim()));
    socket.on('error', (err: NodeJS.ErrnoException) => done(`error ${err.code ?? err.message}`));
    socket.send('probe', c.port, c.host);
  });
}

async function forward(c: Extract<Command, { op: 'forward' }>): Promise<void> {
  const server = createServer((inbound) => {
    const outbound = connect({ path: c.socket });
    inbound.pipe(outbound).pipe(inbound);
    const close = () => {
      inbound.destroy();
      outbound.destroy();
    };
    inbound.on('error', close);
    outbound.on('error', close);
    inbound.on('close', close);
    outbound.on('close', close);
  });
  await listenTcp(server, c.host, c.port);
  servers.push(server);
}

function spawnChild(c: Extract<Command, { op: 'spawn' }>): number {
  const fd = openSync(c.log, 'a');
  const child = spawn(c.file, c.args, { env: c.env, stdio: ['ignore', fd, fd] });
  children.push(child);
  return child.pid ?? -1;
}

async function handle(c: Command): Promise<void> {
  try {
    switch (c.op) {
      case 'listen':
        await listen(c);
        return answer(c.id, { ok: true });
      case 'probe':
        return answer(c.id, { ok: true, ...(await probe(c)) });
      case 'forward':
        await forward(c);
        return answer(c.id, { ok: true });
      case 'spawn':
        return answer(c.id, { ok: true, pid: spawnChild(c) });
    }
  } catch (err) {
    answer(c.id, { error: (err as Error).message });
  }
}

function shutDown(): void {
  for (const child of children) child.kill('SIGKILL');
  for (const server of servers) server.close();
  process.exit(0);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim()) void handle(JSON.parse(line) as Command);
});
lines.on('close', shutDown);
process.on('SIGTERM', shutDown);
answer(0, { ok: true, ready: true });
