/**
 * CPU seconds and peak resident memory of a process, read from /proc/PID/stat (utime + stime) and
 * /proc/PID/status (VmHWM): the same figures for a Go binary and a Node.js process.
 *
 * Loaded with `node --import` into a short-lived process (a poller run), it appends that process's own
 * figures, read as it exits, to the file named by $KUBEWATCHER_BENCH_USAGE_FILE (one JSON line per process).
 */
import { appendFileSync, readFileSync } from 'node:fs';

export interface ProcessUsage {
  cpuSeconds: number;
  peakRssBytes: number;
}

/** Clock ticks per second of /proc/PID/stat: USER_HZ, 100 on every Linux architecture Node.js runs on. */
const USER_HZ = 100;
export const USAGE_FILE_ENV = 'KUBEWATCHER_BENCH_USAGE_FILE';

/** The figures of a running process, or undefined when it is gone. */
export function readProcessUsage(pid: number | 'self'): ProcessUsage | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields restart after the command name's closing parenthesis: utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const hwmKb = Number(/^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? Number.NaN);
    return { cpuSeconds: ticks / USER_HZ, peakRssBytes: hwmKb * 1024 };
  } catch {
    return undefined;
  }
}

/** GNU time (Debian: apt-get install time): a child's figures from its wait4 rusage, from outside it. */
export const GNU_TIME = '/usr/bin/time';

/**
 * GNU time's arguments that run `command` and append its CPU seconds (user, system) and peak RSS to
 * `file`, one line per run (readTimedUsage reads them). GNU time truncates each CPU figure to 10 ms.
 */
export function timedArgs(file: string, command: string, args: readonly string[]): string[] {
  return ['--format=%U %S %M', '--append', `--output=${file}`, command, ...args];
}

/** The runs recorded by timedArgs in `text` (GNU time's status lines, for failed runs, skipped). */
export function readTimedUsage(text: string): ProcessUsage[] {
  const runs: ProcessUsage[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+\.\d+) (\d+\.\d+) (\d+)$/.exec(line.trim());
    if (m) runs.push({ cpuSeconds: Number(m[1]) + Number(m[2]), peakRssBytes: Number(m[3]) * 1024 });
  }
  return runs;
}

/** PID of a component (`kube-apiserver`, `etcd`, …) of the local environment in `info.dir`. */
export async function componentPid(info: { dir: string }, name: string): Promise<number | undefined> {
  // Imported here, not at the top: this file is also `--import`ed into every measured poller process,
  // whose memory must not include the local-cluster module.
  const { readProcessRecords } = await import('../scripts/lib/local-cluster.ts');
  return (await readProcessRecords(info.dir)).find((r) => r.name === name)?.pid;
}

const usageFile = process.env[USAGE_FILE_ENV];
if (usageFile) {
  process.on('exit', () => {
    const usage = readProcessUsage('self');
    if (usage) appendFileSync(usageFile, `${JSON.stringify({ pid: process.pid, ...usage })}\n`);
  });
}
