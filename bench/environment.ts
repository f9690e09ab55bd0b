/**
 * The local control plane a bench script measures against: the one `scripts/local-cluster up --dir DIR`
 * left running (`--reuse DIR`), or a fresh one in a temporary folder that goes away at the end unless
 * `--keep` asks to keep it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LocalClusterInfo } from '../scripts/lib/cluster-info.ts';
import { findRunningLocalCluster, startLocalCluster } from '../scripts/lib/local-cluster.ts';

export interface BenchEnvironment {
  info: LocalClusterInfo;
  /** True when `--reuse` named a running environment: it may hold an earlier run's objects. */
  reused: boolean;
  /** Stops a control plane this script started; removes its folder unless kept. */
  close(): Promise<void>;
}

export async function openBenchEnvironment(options: {
  reuse: string | undefined;
  keep: boolean;
  say: (line: string) => void;
}): Promise<BenchEnvironment> {
  const { reuse, keep, say } = options;
  const running = reuse ? await findRunningLocalCluster(reuse) : undefined;
  if (reuse && !running) {
    throw new Error(`no environment runs in ${reuse}: scripts/local-cluster up --dir ${reuse}`);
  }
  const dir = reuse ?? (await mkdtemp(join(tmpdir(), 'kubewatcher-bench-')));
  if (!running) say(`starting a local control plane in ${dir}`);
  const cluster = running ? { info: running, stop: async () => {} } : await startLocalCluster({ dir });
  return {
    info: cluster.info,
    reused: running !== undefined,
    async close() {
      await cluster.stop();
      if (keep || running) say(`kept ${dir}`);
      else await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The machine's 1, 5 and 15 minute load averages, for the line under a bench's table. */
export function loadAverages(): string {
  return loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
}
