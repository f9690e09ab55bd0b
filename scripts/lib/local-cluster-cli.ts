/**
 * `scripts/local-cluster up|down|status|env`: a long-lived local environment under `.local/` for the demo
 * and for development (tests start their own unless KUBEWATCHER_TEST_REUSE=1).
 */
import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  findRunningLocalCluster,
  isRecordedProcessAlive,
  type LocalClusterInfo,
  probeLocalCluster,
  readProcessRecords,
  removeLocalClusterState,
  startLocalCluster,
  stopLocalCluster,
} from './local-cluster.ts';

const usage = `Usage: scripts/local-cluster <command> [--dir DIR] [--real-node]

Commands:
  up       start the control plane, registries and a node in the background (no-op when already running)
  down     stop exactly the processes 'up' started (and the real node's containers, mounts, cgroups)
           and remove the state
  status   show whether each part runs and answers (exit code 1 when not all do)
  env      print shell exports: eval "$(scripts/local-cluster env)"

Options:
  --dir DIR       state folder (default: .local in the repository)
  --real-node     with up: a real node (containerd, runc, kubelet; node 127.0.0.1) that runs
                  containers, instead of kwok's fake node; needs root on Linux and installs the
                  Debian packages containerd, runc, containernetworking-plugins, busybox-static
                  with apt-get when missing
  --bin-dir DIR   folder of the built binaries (set by scripts/local-cluster)`;

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const say = (line: string) => console.error(`local-cluster: ${line}`);

function summary(info: LocalClusterInfo, dir: string): string {
  const rel = (p: string) => relative(process.cwd(), p) || '.';
  const { open, basic, token } = info.registries;
  const node = info.realNode
    ? `  node            ${info.realNode.name}  (real: kubelet + containerd ${rel(info.realNode.containerdSocket)})`
    : `  node            ${info.nodeName ?? 'kwok-node-0'}  (kwok: fake, no containers run)`;
  return [
    `  kube-apiserver  ${info.apiServer}  (kubeconfig ${rel(info.kubeconfig)})`,
    node,
    `  registry open   ${open.host}  (HTTP, no auth)`,
    `  registry basic  ${basic.host}  (HTTPS, user ${basic.username}, CA ${rel(basic.caFile ?? '')})`,
    `  registry token  ${token.host}  (HTTP, user ${token.username}, token realm ${token.tokenRealm})`,
    `  logs            ${rel(dir)}/logs/`,
    '',
    '  use it:   eval "$(scripts/local-cluster env)"; kubectl get nodes',
    '  push:     scripts/push-image --registry basic team/app:v1 [--multi-arch]',
    '  stop it:  scripts/local-cluster down',
  ].join('\n');
}

async function up(dir: string, binDir: string | undefined, realNode: boolean): Promise<number> {
  const running = await findRunningLocalCluster(dir);
  if (running) {
    console.log(`Local environment already running in ${dir}\n${summary(running, dir)}`);
    if (realNode !== (running.realNode !== undefined)) {
      say(
        `it runs ${running.realNode ? 'a real node' : 'the kwok node'}: scripts/local-cluster down, then up again`,
      );
      return 1;
    }
    return 0;
  }
  if ((await readProcessRecords(dir)).length > 0) {
    const stopped = await stopLocalCluster(dir);
    say(`a previous environment was partly running; stopped ${stopped.join(', ') || 'nothing'}`);
  }
  const started = performance.now();
  const { info } = await startLocalCluster({ dir, binDir, detached: true, log: say, realNode });
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  console.log(`Local environment up in ${seconds}s in ${dir}\n${summary(info, dir)}`);
  return 0;
}

async function down(dir: string): Promise<number> {
  const stopped = await stopLocalCluster(dir);
  await removeLocalClusterState(dir);
  console.log(stopped.length > 0 ? `Stopped ${stopped.join(', ')}` : 'Nothing was running');
  return 0;
}

async function status(dir: string): Promise<number> {
  const records = await readProcessRecords(dir);
  if (records.length === 0) {
    console.log(`Not running (no ${dir}/pids)`);
    return 1;
  }
  const info = await findRunningLocalCluster(dir);
  for (const r of records) {
    console.log(`${isRecordedProcessAlive(r) ? 'running' : 'STOPPED'}  ${r.name} (pid ${r.pid})`);
  }
  if (!info) {
    console.log('Not all processes run: scripts/local-cluster down && scripts/local-cluster up');
    return 1;
  }
  const probes = await probeLocalCluster(info);
  for (const p of probes) console.log(`${p.ok ? 'ok     ' : 'FAILING'}  ${p.name}: ${p.detail}`);
  return probes.every((p) => p.ok) ? 0 : 1;
}

async function env(dir: string): Promise<number> {
  if (!(await findRunningLocalCluster(dir))) {
    say(`no environment running in ${dir}: run scripts/local-cluster up`);
    return 1;
  }
  process.stdout.write(await readFile(join(dir, 'env'), 'utf8'));
  return 0;
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      dir: { type: 'string', default: join(repoRoot, '.local') },
      'bin-dir': { type: 'string' },
      'real-node': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command || rest.length > 0) {
    console.error(usage);
    return values.help ? 0 : 2;
  }
  const dir = resolve(values.dir);
  switch (command) {
    case 'up':
      return up(dir, values['bin-dir'], values['real-node']);
    case 'down':
      return down(dir);
    case 'status':
      return status(dir);
    case 'env':
      return env(dir);
    default:
      console.error(`unknown command '${command}'\n${usage}`);
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    say(err instanceof Error ? err.message : String(err));
    process.exit(1);
  },
);
