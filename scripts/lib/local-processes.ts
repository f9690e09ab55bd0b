/**
 * Kubewatcher's two programs as local processes beside an environment whose node is kwok's fake one
 * (the benchmarks): pods never run there, so the manifests are installed with the controller scaled to
 * 0 and the CronJob suspended, and the same programs run here under the same service accounts' tokens,
 * with exactly the rights the manifests give. On the real node they run as pods instead
 * (scripts/lib/in-cluster.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LocalClusterInfo } from './cluster-info.ts';
import { SYSTEM_NAMESPACE } from './in-cluster.ts';
import { type ProgramName, shippedNodeArgs } from './programs.ts';

/**
 * Applies `manifests/install.yaml` and waits for the CRDs, then scales the in-cluster controller to 0
 * and suspends the poller's CronJob: the caller runs both as local processes.
 */
export async function installForLocalProcesses(
  kubectl: (args: string[]) => Promise<unknown>,
  repoRoot: string,
): Promise<void> {
  await kubectl([
    'apply',
    '--server-side',
    '--force-conflicts',
    '-f',
    join(repoRoot, 'manifests/install.yaml'),
  ]);
  await kubectl([
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    'crd/watchedimages.kubewatcher.io',
    'crd/imageupdates.kubewatcher.io',
  ]);
  await kubectl(['-n', SYSTEM_NAMESPACE, 'scale', 'deployment/kubewatcher-controller', '--replicas=0']);
  await kubectl([
    '-n',
    SYSTEM_NAMESPACE,
    'patch',
    'cronjob/kubewatcher-poller',
    '--type=merge',
    '-p',
    '{"spec":{"suspend":true}}',
  ]);
}

/** A kubeconfig in `dir` that authenticates as the service account `account` of Kubewatcher's namespace. */
export async function serviceAccountKubeconfig(
  kubectl: (args: string[]) => Promise<string>,
  info: LocalClusterInfo,
  dir: string,
  account: string,
): Promise<string> {
  const token = await kubectl(['-n', SYSTEM_NAMESPACE, 'create', 'token', account, '--duration=24h']);
  const file = join(dir, `${account}.kubeconfig`);
  const kubeconfig = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'local', cluster: { server: info.apiServer, 'certificate-authority': info.apiServerCaFile } },
    ],
    users: [{ name: account, user: { token } }],
    contexts: [{ name: account, context: { cluster: 'local', user: account } }],
    'current-context': account,
  };
  writeFileSync(file, JSON.stringify(kubeconfig, null, 2), { mode: 0o600 });
  return file;
}

/**
 * Starts the shipped program `name` (its bundle with the manifests' node flags, scripts/lib/programs.ts)
 * detached in `cwd` (imageWorkingDir), its output appended to `logFile`.
 */
export function startShippedProgram(
  name: ProgramName,
  args: string[],
  options: { cwd: string; logFile: string },
): ChildProcess {
  const fd = openSync(options.logFile, 'a');
  const child = spawn(process.execPath, [...shippedNodeArgs(name), ...args], {
    cwd: options.cwd,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  child.unref();
  return child;
}
