/**
 * Vitest global setup of the `integration` project: starts a private local environment (control plane
 * and registries) in a temp folder for the whole run, provides its `LocalClusterInfo` to the tests
 * (`inject('localCluster')`) and stops it afterwards.
 *
 *   KUBEWATCHER_TEST_REUSE=1   use the environment of `scripts/local-cluster up` (.local/) instead
 *   KUBEWATCHER_TEST_KEEP=1    keep the temp folder (logs) after the run
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { findRunningLocalCluster, startLocalCluster } from './local-cluster.ts';

export default async function setup(project: TestProject): Promise<(() => Promise<void>) | undefined> {
  const say = (line: string) => console.error(`[local-cluster] ${line}`);
  if (process.env.KUBEWATCHER_TEST_REUSE === '1') {
    const dir = join(fileURLToPath(new URL('../..', import.meta.url)), '.local');
    const info = await findRunningLocalCluster(dir);
    if (!info)
      throw new Error(`KUBEWATCHER_TEST_REUSE=1 but no environment runs in ${dir}: scripts/local-cluster up`);
    say(`reusing the environment in ${dir}`);
    project.provide('localCluster', info);
    return undefined;
  }

  const dir = await mkdtemp(join(tmpdir(), 'kubewatcher-test-'));
  let cluster: Awaited<ReturnType<typeof startLocalCluster>>;
  try {
    cluster = await startLocalCluster({
      dir,
      log: process.env.KUBEWATCHER_TEST_VERBOSE === '1' ? say : undefined,
    });
  } catch (err) {
    say(`the local environment did not start; logs are in ${dir}/logs`);
    throw err;
  }
  say(`started in ${dir}`);
  project.provide('localCluster', cluster.info);
  return async () => {
    const stopping = performance.now();
    await cluster.stop();
    say(`stopped in ${((performance.now() - stopping) / 1000).toFixed(1)}s`);
    if (process.env.KUBEWATCHER_TEST_KEEP === '1') say(`kept ${dir}`);
    else await rm(dir, { recursive: true, force: true });
  };
}
