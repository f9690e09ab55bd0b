/**
 * The processes of a local environment: free loopback ports, HTTP probes, log tails, and the records in
 * `dir/pids` (component, pid = process group id, start time) that let `down` stop exactly what `up`
 * started.
 */
import { readFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';

export const STOP_GRACE_MS = 5_000;

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

export interface HttpResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface HttpOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** PEM CA bundle to trust (HTTPS). */
  ca?: string;
  /** Skip certificate verification: only for the health ports of components with in-memory certificates. */
  insecure?: boolean;
}

export function httpRequest(url: string, options: HttpOptions = {}): Promise<HttpResponse> {
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

export function procStat(pid: number): { state: string; startTime: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: fields restart after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0] ?? '', startTime: fields[19] ?? '' };
  } catch {
    return undefined;
  }
}

/** Whether a process of this pid exists (one of another user's counts: EPERM). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
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
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
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

export function signalGroup(pid: number, signal: NodeJS.Signals): void {
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
  for (const tier of stopTiers(running)) await stopProcessGroups(tier, graceMs);
  const left = running.filter(isRecordedProcessAlive);
  if (left.length > 0) {
    throw new Error(`could not stop ${left.map((r) => `${r.name} (pid ${r.pid})`).join(', ')}`);
  }
  await rm(join(dir, 'pids'), { force: true });
  return running.map((r) => r.name);
}

/** SIGTERM to each recorded group still running, SIGKILL after `graceMs`; waits until they are gone. */
export async function stopProcessGroups(records: ProcessRecord[], graceMs = STOP_GRACE_MS): Promise<void> {
  const running = records.filter(isRecordedProcessAlive);
  // These may not be our children (the `up` that started them has exited), so there is no exit event to await.
  for (const r of running) signalGroup(r.pid, 'SIGTERM');
  await waitGone(running, graceMs);
  for (const r of running.filter(isRecordedProcessAlive)) signalGroup(r.pid, 'SIGKILL');
  await waitGone(running, 2_000);
}

async function waitGone(records: ProcessRecord[], ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (records.some(isRecordedProcessAlive) && Date.now() < deadline) await delay(50);
}

/**
 * Stop order: everything but etcd, then etcd. etcd drains its gRPC streams for several seconds on SIGTERM
 * while the apiserver still holds watches on it, and the apiserver keeps redialling a stopped etcd.
 */
export function stopTiers<T extends { name: string }>(items: T[]): T[][] {
  return [items.filter((i) => i.name !== 'etcd'), items.filter((i) => i.name === 'etcd')];
}
