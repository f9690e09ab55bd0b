/**
 * Webhook benchmark on the real node: push → Deployment patched, and push → pods on the new digest,
 * with Kubewatcher installed in the cluster as a user installs it (scripts/lib/in-cluster.ts: the
 * image built from this checkout, the local overlay), plus a generic webhook receiver. Everything
 * after the POST runs as it ships: the controller pod's receiver marks the WatchedImage due and
 * creates a Job from the poller CronJob; the kubelet pulls and starts the poller's pod; the poller
 * resolves the tag and writes an ImageUpdate; the controller patches the Deployment; the kubelet
 * starts the new pod. Then, without the webhook, `--polled` pushes waited for by the CronJob alone.
 * Prints tables; asserts nothing.
 *
 *   node --conditions=@kubewatcher/source bench/webhook-real-node.ts [--pushes 10] [--polled 1] [--keep]
 *
 * One real node per machine: when another one runs, this waits for it (bounded) and retries.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { GROUP, IMAGE_UPDATE, loadKubeConfig, VERSION, WATCHED_IMAGE } from '../packages/shared/src/index.ts';
import { pushBusyboxImage } from '../scripts/lib/images.ts';
import {
  installKubewatcher,
  pushKubewatcherImage,
  SYSTEM_NAMESPACE,
  startRealNodeCluster,
  waitForPodsOnDigest,
} from '../scripts/lib/in-cluster.ts';
import { freePorts } from '../scripts/lib/local-cluster/processes.ts';
import type { LocalCluster } from '../scripts/lib/local-cluster.ts';
import { waitFor } from '../scripts/lib/wait-for.ts';
import { createWatchedImage } from '../test/support/controller-fixtures.ts';

const TOKEN = randomBytes(24).toString('hex');
const NS = 'bench-webhook';
const REPOSITORY = 'bench/web';
const WEBHOOK_JOB = 'kubewatcher-poller-webhook';
/** Two CronJob minutes and a run: the longest a polled push can take (interval 1m, cron every minute). */
const POLLED_TIMEOUT_MS = 200_000;

const { values: args } = parseArgs({
  options: {
    pushes: { type: 'string', default: '10' },
    polled: { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log(
    'node --conditions=@kubewatcher/source bench/webhook-real-node.ts [--pushes N (1-50)] [--polled N (0-5)] [--keep]',
  );
  process.exit(0);
}
const pushes = boundedInteger('--pushes', args.pushes, 1, 50);
const polled = boundedInteger('--polled', args.polled, 0, 5);

const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`);
const dir = await mkdtemp(join(tmpdir(), 'kubewatcher-bench-webhook-real-node-'));
let cluster: LocalCluster | undefined;
const loads: number[] = [];
const sampleLoad = setInterval(() => loads.push(loadavg()[0] ?? 0), 10_000);

try {
  // One real node per machine: while another run holds it, wait (up to 15 min) for it to go.
  cluster = await startRealNodeCluster(join(dir, 'env'), undefined, { waitMs: 15 * 60_000, log });
  const info = cluster.info;
  const kc = loadKubeConfig(info.kubeconfig);
  const apps = kc.makeApiClient(AppsV1Api);
  const batch = kc.makeApiClient(BatchV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const [webhookPort] = await freePorts(1);
  if (!webhookPort) throw new Error('no free port for the webhook receiver');

  log('building and pushing the Kubewatcher image');
  const image = await pushKubewatcherImage(info, { outDir: join(dir, 'image'), log });
  log(`installing ${image} with the webhook receiver on 127.0.0.1:${webhookPort}`);
  await installKubewatcher(info, {
    image,
    dir,
    customize: (overlay) => writeWebhookOverlay(join(dir, 'bench-overlay'), overlay, webhookPort),
  });

  // The watched app: one replica of a busybox image on the open registry.
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NS } } });
  const push = (n: string) =>
    pushBusyboxImage({
      info,
      registry: 'open',
      repository: REPOSITORY,
      tag: 'stable',
      content: `web ${n}\n`,
    });
  const first = await push('baseline');
  const imageRef = `${info.registries.open.host}/${REPOSITORY}:stable`;
  await apps.createNamespacedDeployment({ namespace: NS, body: webDeployment(imageRef) });
  await waitForPodsOnDigest(info, { ...podsOf(first.digest), timeoutMs: 90_000 });
  // Only the requested checks: the CronJob's minute never finds it due.
  await createWatchedImage({ custom }, NS, 'web', { image: imageRef, interval: '24h' });

  const receiverUrl = `http://127.0.0.1:${webhookPort}/hook/ci/${TOKEN}`;
  const post = () =>
    fetch(receiverUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: `${info.registries.open.host}/${REPOSITORY}`, tag: 'stable' }),
    });
  const watchedDigest = async () =>
    (
      (await custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: WATCHED_IMAGE.plural,
        namespace: NS,
        name: 'web',
      })) as { status?: { digest?: string } }
    ).status?.digest;
  const deploymentImage = async () =>
    (await apps.readNamespacedDeployment({ namespace: NS, name: 'web' })).spec?.template.spec?.containers[0]
      ?.image ?? '';
  const updateSucceeded = async (digest: string) => {
    const { items } = (await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: IMAGE_UPDATE.plural,
      namespace: NS,
    })) as { items: { spec: { toDigest: string }; status?: { phase?: string } }[] };
    return items.some((u) => u.spec.toDigest === digest && u.status?.phase === 'Succeeded');
  };
  const jobs = async () => (await batch.listNamespacedJob({ namespace: SYSTEM_NAMESPACE })).items;
  const noWebhookJob = async () => !(await jobs()).some((j) => j.metadata?.name === WEBHOOK_JOB);

  // The baseline: the first check records the tag's digest (503 until the controller's cache synced).
  log('baseline: the first webhook check records the digest');
  await waitFor(
    async () => (await post()).status === 202,
    60_000,
    () => 'the receiver never answered 202',
  );
  await waitFor(
    async () => (await watchedDigest()) === first.digest,
    120_000,
    () => 'the baseline run did not record the digest',
  );
  await waitFor(noWebhookJob, 60_000, () => 'the baseline Job did not go');

  interface Sample {
    patched: number;
    pods: number;
    /** A scheduled poller run was active at the POST (the webhook's Job waits for it). */
    cronActive: boolean;
  }
  const hooked: Sample[] = [];
  // The load while pushes are timed, not during the image build and the install.
  loads.length = 0;
  for (let i = 1; i <= pushes; i++) {
    const pushed = await push(`webhook ${i} ${randomBytes(4).toString('hex')}`);
    const t0 = performance.now();
    const cronActive = (await jobs()).some(
      (j) => j.metadata?.name !== WEBHOOK_JOB && !j.status?.completionTime,
    );
    const res = await post();
    if (res.status !== 202) throw new Error(`push ${i}: the webhook answered ${res.status}`);
    const sample = await timePush(pushed.digest, t0, 60_000);
    hooked.push({ ...sample, cronActive });
    log(
      `webhook push ${i}/${pushes}: patched ${s(sample.patched)}, pods ${s(sample.pods)}${cronActive ? ' (a scheduled run was active)' : ''}`,
    );
    // Settle: the update Succeeded and the webhook Job gone (its TTL), so the next push starts idle.
    await waitFor(
      () => updateSucceeded(pushed.digest),
      60_000,
      () => `push ${i}: no Succeeded ImageUpdate`,
    );
    await waitFor(noWebhookJob, 60_000, () => `push ${i}: the webhook Job did not go`);
  }

  const polledSamples: Sample[] = [];
  if (polled > 0) {
    await custom.patchNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: WATCHED_IMAGE.plural,
      namespace: NS,
      name: 'web',
      body: [{ op: 'replace', path: '/spec/interval', value: '1m' }],
    });
  }
  for (let i = 1; i <= polled; i++) {
    const pushed = await push(`polled ${i} ${randomBytes(4).toString('hex')}`);
    const sample = await timePush(pushed.digest, performance.now(), POLLED_TIMEOUT_MS);
    polledSamples.push({ ...sample, cronActive: false });
    log(`polled push ${i}/${polled}: patched ${s(sample.patched)}, pods ${s(sample.pods)}`);
    await waitFor(
      () => updateSucceeded(pushed.digest),
      60_000,
      () => `polled ${i}: no Succeeded ImageUpdate`,
    );
  }

  clearInterval(sampleLoad);
  loads.push(loadavg()[0] ?? 0);
  const row = (label: string, xs: number[]) =>
    `| ${label} | ${xs.length} | ${s(percentile(xs, 50))} | ${s(percentile(xs, 99))} | ${s(Math.min(...xs))} | ${s(Math.max(...xs))} |`;
  console.log(
    `\nPush → workload on the real node (${cpus().length} cores, 1-min load average ${Math.min(...loads).toFixed(1)} to ${Math.max(...loads).toFixed(1)}, median ${percentile(loads, 50).toFixed(1)}, while the pushes ran)\n`,
  );
  console.log('| | n | p50 | p99 | min | max |\n| --- | ---: | ---: | ---: | ---: | ---: |');
  console.log(
    row(
      'webhook: push → Deployment patched',
      hooked.map((x) => x.patched),
    ),
  );
  console.log(
    row(
      'webhook: push → pods on the new digest',
      hooked.map((x) => x.pods),
    ),
  );
  if (polledSamples.length > 0) {
    console.log(
      row(
        'polling (CronJob every minute, interval 1m): push → patched',
        polledSamples.map((x) => x.patched),
      ),
    );
    console.log(
      row(
        'polling: push → pods on the new digest',
        polledSamples.map((x) => x.pods),
      ),
    );
  }
  const alone = hooked.filter((x) => !x.cronActive);
  if (alone.length > 0 && alone.length < hooked.length) {
    console.log(
      row(
        'webhook, no scheduled run active at the POST: push → patched',
        alone.map((x) => x.patched),
      ),
    );
  }
  console.log(`\nWebhook pushes that met an active scheduled run: ${hooked.length - alone.length}`);

  /** From `t0` (the push's return): the Deployment pinned to `digest`, then every pod Ready on it. */
  async function timePush(
    digest: string,
    t0: number,
    timeoutMs: number,
  ): Promise<Omit<Sample, 'cronActive'>> {
    await waitFor(
      async () => (await deploymentImage()).endsWith(digest),
      timeoutMs,
      () => `the Deployment was not patched to ${digest}`,
      50,
    );
    const patched = performance.now() - t0;
    await waitForPodsOnDigest(info, { ...podsOf(digest), timeoutMs: 60_000 });
    return { patched, pods: performance.now() - t0 };
  }
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  clearInterval(sampleLoad);
  await cluster?.stop();
  if (args.keep) console.log(`kept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
}

/**
 * A kustomization on top of `overlay` (the local overlay for the pushed image): the receivers Secret
 * with one generic receiver, and the controller's receiver bound on the node's address like its probes
 * (`$(HOST_IP)`, 127.0.0.1 here), on `port`, with the Secret mounted where the flag's default reads it.
 */
async function writeWebhookOverlay(out: string, overlay: string, port: number): Promise<string> {
  await mkdir(out, { recursive: true });
  await writeFile(
    join(out, 'receivers.yaml'),
    stringify({ receivers: [{ name: 'ci', format: 'generic', token: TOKEN }] }),
  );
  const add = (path: string, value: unknown) => ({ op: 'add', path, value });
  const container = '/spec/template/spec/containers/0';
  await writeFile(
    join(out, 'kustomization.yaml'),
    stringify({
      apiVersion: 'kustomize.config.k8s.io/v1beta1',
      kind: 'Kustomization',
      namespace: SYSTEM_NAMESPACE,
      resources: [relative(out, overlay)],
      generatorOptions: { disableNameSuffixHash: true },
      secretGenerator: [{ name: 'kubewatcher-webhooks', files: ['receivers.yaml'] }],
      patches: [
        {
          target: { kind: 'Deployment', name: 'kubewatcher-controller' },
          patch: stringify([
            add(`${container}/args/-`, `--webhook-bind-address=$(HOST_IP):${port}`),
            add(`${container}/ports/-`, { name: 'webhook', containerPort: port, protocol: 'TCP' }),
            add(`${container}/volumeMounts/-`, {
              name: 'webhook-receivers',
              mountPath: '/etc/kubewatcher/webhooks',
              readOnly: true,
            }),
            add('/spec/template/spec/volumes/-', {
              name: 'webhook-receivers',
              secret: { secretName: 'kubewatcher-webhooks' },
            }),
          ]),
        },
      ],
    }),
  );
  return out;
}

function webDeployment(image: string) {
  return {
    metadata: { name: 'web', namespace: NS },
    spec: {
      replicas: 1,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      selector: { matchLabels: { app: 'web' } },
      template: {
        metadata: { labels: { app: 'web' } },
        spec: {
          terminationGracePeriodSeconds: 5,
          containers: [{ name: 'app', image, imagePullPolicy: 'IfNotPresent' }],
        },
      },
    },
  };
}

function podsOf(digest: string) {
  return { namespace: NS, selector: 'app=web', digest, replicas: 1 };
}

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

function s(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

function boundedInteger(flag: string, value: string | undefined, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${flag} "${value}": expected an integer from ${min} to ${max}`);
  }
  return n;
}
