/**
 * The demo, as steps that narrate themselves, on a local environment with the real node: build the
 * Kubewatcher image and install it into the cluster (scripts/lib/in-cluster.ts), deploy a sample app
 * whose container prints the content it was built with, label its namespace (the controller generates
 * the WatchedImage for its tag), re-push the tag with new
 * content, and follow the poller CronJob and the controller until the pods run the new digest,
 * showing what the pods print before and after. `scripts/demo` runs it on the long-lived `.local`
 * environment; the end-to-end test runs the sample app's part beside its other scenarios.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AUTO_WATCH_ANNOTATION,
  MANAGED_BY_KUBEWATCHER,
  MANAGED_BY_LABEL,
  WATCH_LABEL,
} from '../../packages/shared/src/api/auto-watch.ts';
import type { LocalClusterInfo } from './cluster-info.ts';
import { pushBusyboxImage } from './images.ts';
import {
  CONTROLLER_SELECTOR,
  installKubewatcher,
  kubectlFor,
  msUntilNextMinute,
  type PodImage,
  podImages,
  pushKubewatcherImage,
  SYSTEM_NAMESPACE,
  waitForPodsOnDigest,
} from './in-cluster.ts';
import { waitFor } from './wait-for.ts';

export const DEMO_NAMESPACE = 'demo';
const DEMO_REPOSITORY = 'demo/web';
const DEMO_TAG = 'stable';
const DEMO_REPLICAS = 2;

export interface DemoNarration {
  /** Headings and plain sentences. */
  say: (text: string) => void;
  /** Command output shown to the reader (kubectl tables, pods' logs). */
  show: (text: string) => void;
  /** What the demo waits for, as it changes (a line each time). */
  progress: (text: string) => void;
}

export interface DemoOptions extends DemoNarration {
  info: LocalClusterInfo;
  /** Folder for the image build and the overlay. */
  workDir: string;
  /** Longest wait for the baseline and for the rollout, each. Default 150 s (two CronJob periods and some). */
  timeoutMs?: number;
}

export interface SampleAppResult {
  /** `host/demo/web:stable` as the pods name it. */
  image: string;
  /** The WatchedImage the controller generated for the tag. */
  watchedImage: string;
  firstDigest: string;
  secondDigest: string;
  firstContent: string;
  secondContent: string;
  imageUpdate: string;
  phase: string;
  deploymentImage: string;
  /** What each pod printed (`kubectl logs`), before and after the change. */
  before: Record<string, string>;
  after: Record<string, string>;
  podsAfter: PodImage[];
  /** From the end of the re-push to every pod running the new digest. */
  pushToRolledOutMs: number;
  /** From the ImageUpdate's creation (the poller run that saw the change; 1 s resolution) to the same. */
  updateToRolledOutMs: number;
}

export interface DemoResult extends SampleAppResult {
  /** The Kubewatcher image installed, `REF@sha256:…`. */
  kubewatcherImage: string;
  /** Seconds spent building and pushing the image, and installing until a controller led. */
  buildSeconds: number;
  installSeconds: number;
}

const seconds = (ms: number) => `${Math.round(ms / 1000)}s`;

/** The whole demo: image, install, then the sample app (runSampleApp). */
export async function runDemo(o: DemoOptions): Promise<DemoResult> {
  const { info, say, show } = o;
  const kubectl = kubectlFor(info);
  let n = 0;
  const step = (text: string) => say(`${++n}. ${text}`);

  step('Build the Kubewatcher image from this checkout (scripts/build-image: no Docker) and push it.');
  const building = performance.now();
  const kubewatcherImage = await pushKubewatcherImage(info, {
    outDir: join(o.workDir, 'image'),
    log: (line) => o.progress(line),
  });
  const buildMs = performance.now() - building;
  say(`   ${kubewatcherImage} (${seconds(buildMs)})`);

  step('Install it as shipped, with the local overlay: kubectl apply --server-side -k');
  const installing = performance.now();
  const overlay = await installKubewatcher(info, { image: kubewatcherImage, dir: o.workDir });
  const installMs = performance.now() - installing;
  say(`   ${overlay}: the controller Deployment (2 replicas, leader election) and the poller CronJob`);
  say(`   (every minute); a controller pod leads after ${seconds(installMs)}. On one node with`);
  say('   hostNetwork the second replica waits Pending for the probe port and starts when the first goes.');
  await showCommand(kubectl, show, ['-n', SYSTEM_NAMESPACE, 'get', 'deployment,cronjob,pods']);

  const app = await runSampleApp({ ...o, step });
  return {
    ...app,
    kubewatcherImage,
    buildSeconds: Math.round(buildMs / 1000),
    installSeconds: Math.round(installMs / 1000),
  };
}

export interface SampleAppOptions extends DemoOptions {
  /** Prints a numbered step. */
  step: (text: string) => void;
  /** Namespace of the sample app (default `demo`). */
  namespace?: string;
}

/**
 * The sample app on an environment where Kubewatcher already runs: deploy, watch, re-push, follow
 * the rollout. Starts from an empty namespace (deleted first when it exists).
 */
export async function runSampleApp(o: SampleAppOptions): Promise<SampleAppResult> {
  const { info, say, show, step } = o;
  const kubectl = kubectlFor(info);
  const ns = o.namespace ?? DEMO_NAMESPACE;
  const timeoutMs = o.timeoutMs ?? 150_000;
  const registry = info.realNode?.registries.open ?? info.registries.open.host;
  const image = `${registry}/${DEMO_REPOSITORY}:${DEMO_TAG}`;
  await mkdir(o.workDir, { recursive: true });

  step(`Deploy the sample app ${image}: its container prints the content it was built with, then sleeps.`);
  await kubectl(['delete', 'namespace', ns, '--ignore-not-found', '--wait=true', '--timeout=120s']);
  const first = await pushBusyboxImage({
    info,
    repository: DEMO_REPOSITORY,
    tag: DEMO_TAG,
    content: `Hello from web v1, pushed ${new Date().toISOString()}\n`,
  });
  say(`   ${image} is ${first.digest}`);
  await kubectl(['create', 'namespace', ns]);
  await applyYaml(kubectl, o.workDir, `${ns}-web.yaml`, deploymentYaml(ns, image));
  await kubectl(['-n', ns, 'rollout', 'status', 'deployment/web', '--timeout=90s']);
  await showCommand(kubectl, show, ['-n', ns, 'get', 'pods', '-o', POD_COLUMNS]);
  const before = await logsOfPods(kubectl, show, ns);

  step('Watch the namespace: one label, no WatchedImage to write. The controller generates one for the');
  say('   tag, and the poller CronJob records the digest it sees first.');
  for (const args of [
    ['label', 'namespace', ns, `${WATCH_LABEL}=true`],
    // Optional: the generated WatchedImage's interval (default 5m), here the CronJob's minute.
    ['annotate', 'namespace', ns, `${AUTO_WATCH_ANNOTATION.interval}=1m`],
  ]) {
    await showCommand(kubectl, show, args);
  }
  const generated = ['-n', ns, 'get', 'wi', '-l', `${MANAGED_BY_LABEL}=${MANAGED_BY_KUBEWATCHER}`];
  let watchedImage = '';
  await waitFor(
    async () => {
      watchedImage = await kubectl([...generated, '-o', 'jsonpath={.items[*].metadata.name}']);
      return watchedImage !== '';
    },
    30_000,
    () =>
      `the controller generated no WatchedImage in ${ns}; kubectl -n ${SYSTEM_NAMESPACE} logs -l ${CONTROLLER_SELECTOR}`,
  );
  const baseline = performance.now();
  const baselineProgress = followProgress(info, ns, undefined, o.progress);
  try {
    await waitFor(
      async () =>
        (await kubectl(['-n', ns, 'get', 'wi', watchedImage, '-o', 'jsonpath={.status.digest}'])) ===
        first.digest,
      timeoutMs,
      () =>
        `the poller did not record ${first.digest} for WatchedImage ${ns}/${watchedImage} within ${seconds(timeoutMs)}`,
      500,
    );
  } finally {
    await baselineProgress.stop();
  }
  say(`   baseline recorded after ${seconds(performance.now() - baseline)}`);
  await showCommand(kubectl, show, generated);

  step(`Someone re-pushes ${DEMO_TAG}: same tag, new content.`);
  const second = await pushBusyboxImage({
    info,
    repository: DEMO_REPOSITORY,
    tag: DEMO_TAG,
    content: `Hello from web v2, pushed ${new Date().toISOString()}\n`,
  });
  const pushed = performance.now();
  say(`   ${image} is now ${second.digest}`);

  step('Kubewatcher takes it from here: the next poller run sees the new digest and records an');
  say('   ImageUpdate; the controller pins the Deployment to it and follows the rollout.');
  const following = followProgress(info, ns, second.digest, o.progress);
  let podsAfter: PodImage[];
  try {
    podsAfter = await waitForPodsOnDigest(info, {
      namespace: ns,
      selector: 'app=web',
      digest: second.digest,
      replicas: DEMO_REPLICAS,
      timeoutMs,
    });
  } finally {
    await following.stop();
  }
  const rolledOutAt = Date.now();
  const pushToRolledOutMs = performance.now() - pushed;
  let update = '';
  let phase = '';
  await waitFor(
    async () => {
      [update = '', phase = ''] = (await imageUpdateFor(kubectl, ns, second.digest)).split(' ');
      return phase === 'Succeeded' || phase === 'Failed';
    },
    30_000,
    () => `ImageUpdate for ${second.digest} did not finish (phase ${phase || 'none'})`,
  );
  const created = await kubectl([
    '-n',
    ns,
    'get',
    'iu',
    update,
    '-o',
    'jsonpath={.metadata.creationTimestamp}',
  ]);
  const updateToRolledOutMs = rolledOutAt - Date.parse(created);
  say(
    `   every pod runs the new digest ${seconds(pushToRolledOutMs)} after the push, ${seconds(updateToRolledOutMs)} after the poller recorded the change`,
  );

  step('What a user sees now:');
  await showCommand(kubectl, show, ['-n', ns, 'get', 'wi,iu']);
  await showCommand(kubectl, show, ['-n', ns, 'get', 'pods', '-o', POD_COLUMNS]);
  const after = await logsOfPods(kubectl, show, ns);
  const deploymentImage = await kubectl([
    '-n',
    ns,
    'get',
    'deployment',
    'web',
    '-o',
    'jsonpath={.spec.template.spec.containers[0].image}',
  ]);
  await showCommand(kubectl, show, [
    '-n',
    ns,
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
    firstContent: first.content,
    secondContent: second.content,
    imageUpdate: update,
    phase,
    deploymentImage,
    before,
    after,
    podsAfter,
    pushToRolledOutMs,
    updateToRolledOutMs,
  };
}

const POD_COLUMNS =
  'custom-columns=POD:.metadata.name,STATUS:.status.phase,IMAGE ID:.status.containerStatuses[0].imageID';

function nextRun(): string {
  const ms = msUntilNextMinute();
  const at = new Date(Date.now() + ms).toISOString().slice(11, 19);
  return `next at ${at} UTC, in ${seconds(ms)}`;
}

async function showCommand(
  kubectl: (args: string[]) => Promise<string>,
  show: (t: string) => void,
  args: string[],
) {
  show(`$ kubectl ${args.join(' ')}\n${await kubectl(args)}`);
}

/** `kubectl logs` of each pod of the app, shown; returns them by pod. */
async function logsOfPods(
  kubectl: (args: string[]) => Promise<string>,
  show: (t: string) => void,
  ns: string,
): Promise<Record<string, string>> {
  const pods = (await kubectl(['-n', ns, 'get', 'pods', '-l', 'app=web', '-o', 'name'])).split('\n');
  const logs: Record<string, string> = {};
  for (const pod of pods.filter(Boolean)) {
    const name = pod.replace(/^pod\//, '');
    logs[name] = await kubectl(['-n', ns, 'logs', name]);
    show(`$ kubectl -n ${ns} logs ${name}\n${logs[name]}`);
  }
  return logs;
}

/** `NAME PHASE` of the ImageUpdate towards `digest` in `ns`, or '' when there is none. */
async function imageUpdateFor(kubectl: (args: string[]) => Promise<string>, ns: string, digest: string) {
  const out = await kubectl([
    '-n',
    ns,
    'get',
    'iu',
    '-o',
    'jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.spec.toDigest}{"\\n"}{end}',
  ]);
  const line = out.split('\n').find((l) => l.endsWith(digest)) ?? '';
  return line.split(' ').slice(0, 2).join(' ');
}

/**
 * Reports, as they happen, what the demo waits for: the poller runs the CronJob starts and what each
 * found, and with `digest` the ImageUpdate towards it, its phases and the pods on it. When nothing has
 * happened for 15 s it says what it still waits for, so a quiet minute is never a silent one.
 */
function followProgress(
  info: LocalClusterInfo,
  ns: string,
  digest: string | undefined,
  progress: (line: string) => void,
) {
  const kubectl = kubectlFor(info);
  const started = performance.now();
  let lastReport = started;
  const seen = new Set<string>();
  const report = (key: string, line: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    lastReport = performance.now();
    progress(`+${seconds(lastReport - started).padStart(3)}  ${line}`);
  };
  let stopped = false;
  const loop = (async () => {
    const jobsAtStart = new Set((await jobStates(kubectl).catch(() => [])).map((j) => j.name));
    let waitingFor = () => `the CronJob's next run (${nextRun()})`;
    report('start', `waiting for ${waitingFor()}; it fires at the start of every minute`);
    while (!stopped) {
      try {
        for (const job of await jobStates(kubectl)) {
          if (jobsAtStart.has(job.name)) continue;
          report(`${job.name} started`, `poller run ${job.name} started`);
          waitingFor = () => `poller run ${job.name} to finish`;
          if (job.done) {
            const summary = await pollerSummary(kubectl, job.name);
            report(`${job.name} done`, `poller run ${job.name} ${job.done}${summary}`);
            waitingFor = () => `the controller (or the next poller run: ${nextRun()})`;
          }
        }
        if (digest) {
          const [update, phase] = (await imageUpdateFor(kubectl, ns, digest)).split(' ');
          if (update) {
            report(`iu ${phase}`, `ImageUpdate ${update}: ${phase || 'created'}`);
            waitingFor = () => `ImageUpdate ${update} (${phase || 'created'}) and the pods`;
          }
          const pods = await podImages(info, ns, 'app=web');
          const onNew = pods.filter((p) => p.digest === digest && p.ready && !p.terminating).length;
          if (onNew > 0) report(`pods ${onNew}`, `${onNew}/${DEMO_REPLICAS} pods Ready on the new digest`);
        }
        if (performance.now() - lastReport > 15_000) {
          lastReport = performance.now();
          progress(`+${seconds(lastReport - started).padStart(3)}  still waiting for ${waitingFor()}`);
        }
      } catch {
        // A read that failed is read again on the next round; progress is best effort.
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return {
    stop: () => {
      stopped = true;
      return loop;
    },
  };
}

async function jobStates(kubectl: (args: string[]) => Promise<string>) {
  const out = await kubectl([
    '-n',
    SYSTEM_NAMESPACE,
    'get',
    'jobs',
    '-o',
    'jsonpath={range .items[*]}{.metadata.name} {.status.succeeded} {.status.failed}{"\\n"}{end}',
  ]);
  return out
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [name = '', succeeded, failed] = line.split(' ');
      return { name, done: succeeded === '1' ? 'finished' : failed === '1' ? 'failed' : '' };
    });
}

/** `: checked N, changed N, ImageUpdates created N` from the run's last log line, when it has one. */
async function pollerSummary(kubectl: (args: string[]) => Promise<string>, job: string): Promise<string> {
  const log = await kubectl(['-n', SYSTEM_NAMESPACE, 'logs', `job/${job}`]).catch(() => '');
  const last = log.split('\n').findLast((l) => l.includes('"run complete"'));
  if (!last) return '';
  const run = JSON.parse(last) as { checked?: number; changed?: number; imageUpdatesCreated?: number };
  return `: checked ${run.checked ?? 0}, changed ${run.changed ?? 0}, ImageUpdates created ${run.imageUpdatesCreated ?? 0}`;
}

async function applyYaml(
  kubectl: (args: string[]) => Promise<string>,
  dir: string,
  name: string,
  yaml: string,
) {
  const file = join(dir, name);
  await writeFile(file, yaml);
  await kubectl(['apply', '-f', file]);
}

function deploymentYaml(ns: string, image: string): string {
  return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ${ns}
spec:
  replicas: ${DEMO_REPLICAS}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: ${image}
`;
}
