/**
 * The end-to-end demo, as steps that narrate themselves: install Kubewatcher on the local control
 * plane, run the controller and the poller under their own service accounts, deploy a sample app from
 * the local registry, label its namespace (the controller generates the WatchedImage), re-push the tag
 * and follow the rollout. The README's main command
 * (`scripts/demo`) runs it on the long-lived `.local` environment; the end-to-end test runs it on a
 * private one and checks every step.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  AUTO_WATCH_ANNOTATION,
  MANAGED_BY_KUBEWATCHER,
  MANAGED_BY_LABEL,
  WATCH_LABEL,
} from '../../packages/shared/src/api/auto-watch.ts';
import type { LocalClusterInfo } from './cluster-info.ts';
import { pushTestImage } from './images.ts';

const run = promisify(execFile);

export const DEMO_NAMESPACE = 'demo';
export const SYSTEM_NAMESPACE = 'kubewatcher-system';

/**
 * Applies `manifests/install.yaml` and waits for the CRDs. kwok simulates pods: containers never really
 * run on the local cluster, so the in-cluster controller is scaled to 0 and the poller's CronJob
 * suspended; the caller runs the same programs as local processes under the same service accounts.
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
const DEMO_REPOSITORY = 'demo/web';
const DEMO_TAG = 'stable';

export interface DemoOptions {
  info: LocalClusterInfo;
  repoRoot: string;
  /** Folder for the demo's kubeconfigs, logs and pid file. */
  workDir: string;
  /** Narration: headings and plain sentences. */
  say: (text: string) => void;
  /** Command output shown to the reader (kubectl tables, poller summaries). */
  show: (text: string) => void;
  /** Longest wait for the rollout to finish. Default 120 s. */
  timeoutMs?: number;
}

export interface DemoResult {
  image: string;
  /** The WatchedImage the controller generated for the tag. */
  watchedImage: string;
  firstDigest: string;
  secondDigest: string;
  imageUpdate: string;
  phase: string;
  deploymentImage: string;
  /** The controller process, still running so the reader can look around; stop it with stopDemoController. */
  controller: ChildProcess;
  controllerLog: string;
}

export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const { info, say, show } = o;
  const kubectlBin = join(info.binDir, 'kubectl');
  const kubectl = async (args: string[], kubeconfig = info.kubeconfig) => {
    const { stdout } = await run(kubectlBin, ['--kubeconfig', kubeconfig, ...args], { maxBuffer: 16 << 20 });
    return stdout.trimEnd();
  };
  const showCmd = async (args: string[]) => {
    show(`$ kubectl ${args.join(' ')}\n${await kubectl(args)}`);
  };
  mkdirSync(o.workDir, { recursive: true });
  const registry = info.registries.open;
  const image = `${registry.host}/${DEMO_REPOSITORY}:${DEMO_TAG}`;

  say('1. Install Kubewatcher: the CRDs, its namespace, service accounts and least-privilege RBAC.');
  await installForLocalProcesses(kubectl, o.repoRoot);
  say('   Pods on this local cluster are simulated (kwok), so the controller and the poller run here as');
  say('   local processes, each with its own service account token: exactly the rights the manifests give.');
  const controllerKubeconfig = await serviceAccountKubeconfig(
    kubectl,
    info,
    o.workDir,
    'kubewatcher-controller',
  );
  const pollerKubeconfig = await serviceAccountKubeconfig(kubectl, info, o.workDir, 'kubewatcher-poller');

  say('2. Start the controller (leader election on, metrics on a free port).');
  const controllerLog = join(o.workDir, 'controller.log');
  const controller = startNodeProcess(
    o.repoRoot,
    'packages/controller/src/main.ts',
    [
      '--kubeconfig',
      controllerKubeconfig,
      '--leader-elect',
      '--leader-election-namespace',
      SYSTEM_NAMESPACE,
      '--metrics-addr',
      '127.0.0.1:0',
      '--log-format',
      'text',
    ],
    controllerLog,
  );
  writeFileSync(join(o.workDir, 'controller.pid'), `${controller.pid}\n`);
  await waitFor(
    async () => (await readFile(controllerLog, 'utf8').catch(() => '')).includes('workers started'),
    60_000,
    () => `the controller did not start; see ${controllerLog}`,
  );
  say(`   running as pid ${controller.pid}, log ${controllerLog}`);

  say(`3. Push a sample image to the local registry and deploy it: ${image}`);
  await kubectl([
    'delete',
    'namespace',
    DEMO_NAMESPACE,
    '--ignore-not-found',
    '--wait=true',
    '--timeout=120s',
  ]);
  const first = await pushTestImage({ info, registry: 'open', repository: DEMO_REPOSITORY, tag: DEMO_TAG });
  say(`   ${image} is ${first.digest}`);
  await kubectl(['create', 'namespace', DEMO_NAMESPACE]);
  await applyYaml(kubectl, o.workDir, 'web.yaml', deploymentYaml(image));
  await kubectl(['-n', DEMO_NAMESPACE, 'rollout', 'status', 'deployment/web', '--timeout=90s']);
  await showCmd(['-n', DEMO_NAMESPACE, 'get', 'deployment', 'web', '-o', 'wide']);

  say(
    '4. Watch the namespace: one label, no WatchedImage to write. The controller generates one for the tag.',
  );
  const generated = [
    '-n',
    DEMO_NAMESPACE,
    'get',
    'wi',
    '-l',
    `${MANAGED_BY_LABEL}=${MANAGED_BY_KUBEWATCHER}`,
  ];
  for (const args of [
    ['label', 'namespace', DEMO_NAMESPACE, `${WATCH_LABEL}=true`],
    // Optional: the generated WatchedImage's interval (default 5m), here the poller's 1m schedule.
    ['annotate', 'namespace', DEMO_NAMESPACE, `${AUTO_WATCH_ANNOTATION.interval}=1m`],
  ]) {
    show(`$ kubectl ${args.join(' ')}\n${await kubectl(args)}`);
  }
  let watchedImage = '';
  await waitFor(
    async () => {
      watchedImage = await kubectl([...generated, '-o', 'jsonpath={.items[*].metadata.name}']);
      return watchedImage !== '';
    },
    30_000,
    () => `no WatchedImage was generated; see ${controllerLog}`,
  );

  const poller = ['--kubeconfig', pollerKubeconfig, '--plain-http', registry.host, '--log-format', 'text'];
  say('5. Run the poller once, as the CronJob does every minute: the first sight records the baseline.');
  show(await runNodeProcess(o.repoRoot, 'packages/poller/src/main.ts', poller));
  await waitFor(
    async () =>
      (await kubectl([
        '-n',
        DEMO_NAMESPACE,
        'get',
        'wi',
        watchedImage,
        '-o',
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
      ])) === 'True',
    30_000,
    () => 'the WatchedImage did not become Ready',
  );
  await showCmd(generated);

  say(`6. Someone re-pushes ${DEMO_TAG}: same tag, new content.`);
  const second = await pushTestImage({ info, registry: 'open', repository: DEMO_REPOSITORY, tag: DEMO_TAG });
  say(`   ${image} is now ${second.digest}`);

  say(
    '7. The next poller run sees the new digest and records an ImageUpdate. (The CronJob would do this once',
  );
  say('   the 1m interval has passed; --ignore-interval runs the check now.)');
  show(await runNodeProcess(o.repoRoot, 'packages/poller/src/main.ts', [...poller, '--ignore-interval']));

  say('8. The controller pins the Deployment to the new digest and follows the rollout.');
  let phase = '';
  let update = '';
  await waitFor(
    async () => {
      const out = await kubectl([
        '-n',
        DEMO_NAMESPACE,
        'get',
        'iu',
        '-o',
        'jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.toDigest}{"\\n"}{end}',
      ]);
      const line = out.split('\n').find((l) => l.endsWith(second.digest));
      [update, phase] = (line ?? '').split(' ') as [string, string];
      return phase === 'Succeeded' || phase === 'Failed';
    },
    o.timeoutMs ?? 120_000,
    () => `the ImageUpdate did not finish (phase ${phase || 'none'}); see ${controllerLog}`,
  );
  await showCmd(['-n', DEMO_NAMESPACE, 'get', 'wi,iu']);
  const deploymentImage = await kubectl([
    '-n',
    DEMO_NAMESPACE,
    'get',
    'deployment',
    'web',
    '-o',
    'jsonpath={.spec.template.spec.containers[0].image}',
  ]);
  show(
    `$ kubectl -n ${DEMO_NAMESPACE} get deployment web -o jsonpath='{.spec.template.spec.containers[0].image}'\n${deploymentImage}`,
  );
  await showCmd(['-n', DEMO_NAMESPACE, 'rollout', 'status', 'deployment/web']);
  await showCmd([
    '-n',
    DEMO_NAMESPACE,
    'get',
    'events',
    '--field-selector',
    'source=kubewatcher-controller',
    '-o',
    'custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message',
  ]);

  return {
    image,
    watchedImage,
    firstDigest: first.digest,
    secondDigest: second.digest,
    imageUpdate: update,
    phase,
    deploymentImage,
    controller,
    controllerLog,
  };
}

/** Stops the demo's controller process (SIGTERM: it releases its Lease and exits). */
export async function stopDemoController(workDir: string): Promise<boolean> {
  const pidFile = join(workDir, 'controller.pid');
  if (!existsSync(pidFile)) return false;
  const pid = Number((await readFile(pidFile, 'utf8')).trim());
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return false;
  }
  await waitFor(
    async () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    },
    20_000,
    () => `controller pid ${pid} did not stop`,
  ).catch(() => process.kill(pid, 'SIGKILL'));
  return true;
}

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

async function applyYaml(
  kubectl: (args: string[]) => Promise<string>,
  dir: string,
  name: string,
  yaml: string,
) {
  const file = join(dir, name);
  writeFileSync(file, yaml);
  await kubectl(['apply', '-f', file]);
}

function deploymentYaml(image: string): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ${DEMO_NAMESPACE}
spec:
  replicas: 2
  progressDeadlineSeconds: 60
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: ${image}
`;
}

export function nodeArgs(repoRoot: string, script: string, args: string[]): string[] {
  return ['--conditions=@kubewatcher/source', join(repoRoot, script), ...args];
}

export function startNodeProcess(
  repoRoot: string,
  script: string,
  args: string[],
  logFile: string,
): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, nodeArgs(repoRoot, script, args), {
    cwd: repoRoot,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  child.unref();
  return child;
}

async function runNodeProcess(repoRoot: string, script: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(process.execPath, nodeArgs(repoRoot, script, args), {
      cwd: repoRoot,
      maxBuffer: 16 << 20,
    });
    return `${stdout}${stderr}`.trimEnd();
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    throw new Error(`${script} exited ${e.code}:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  describe: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((r) => setTimeout(r, 250));
  }
}
