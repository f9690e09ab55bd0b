/**
 * Webhook benchmark: push → Deployment patched when the registry's push is announced by a webhook.
 * Starts its own local control plane (scripts/lib/local-cluster.ts) in a temp folder, runs the
 * controller in this process with the webhook receiver on loopback, pushes a fresh image to the open
 * registry `--pushes` times, each followed by a generic webhook POST (as a CI job would), and measures
 * from the push's return to the Deployment's new image. Prints a table; asserts nothing.
 *
 *   node --conditions=@kubewatcher/source bench/webhook.ts [--pushes 20] [--keep] [--reuse DIR]
 *
 * Without a real node the controller's Job has no pod that runs: this script stands in for it. When
 * the Job `kubewatcher-poller-webhook` appears it starts the poller as the process it ships as
 * (`packages/poller/src/main.ts`, as the Job's container would), and deletes the Job when the poller
 * exits (as the TTL controller would). So the figure leaves out pod scheduling and container start on
 * a node, and includes everything else: the webhook, the WatchedImage marked due, the Job created
 * from the CronJob, a whole poller process (start, list, registry HEAD, ImageUpdate) and the
 * controller's patch. WatchedImages have `interval: 24h`, so no check happens but the requested one.
 * bench/webhook-real-node.ts measures the whole path with Kubewatcher's pods on the real node.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { BatchV1Api } from '@kubernetes/client-node';
import { type RunningController, startController } from '../packages/controller/test/controller-harness.ts';
import { pushTestImage } from '../scripts/lib/images.ts';
import { findRunningLocalCluster, startLocalCluster } from '../scripts/lib/local-cluster.ts';
import {
  clientsFor,
  createNamespace,
  createSuspendedPollerCronJob,
  createWatchedImage,
  deployment,
  installCrds,
  until,
} from '../test/support/controller-fixtures.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const TOKEN = 'bench-token-0123456789abcdef0123456789abcdef';

const { values: args } = parseArgs({
  options: {
    pushes: { type: 'string', default: '20' },
    keep: { type: 'boolean', default: false },
    reuse: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  console.log('node --conditions=@kubewatcher/source bench/webhook.ts [--pushes N] [--keep] [--reuse DIR]');
  process.exit(0);
}
const pushes = Number(args.pushes);
if (!Number.isInteger(pushes) || pushes < 1)
  throw new Error(`--pushes "${args.pushes}" must be a positive integer`);

const dir = await mkdtemp(join(tmpdir(), 'kubewatcher-bench-webhook-'));
const reused = args.reuse ? await findRunningLocalCluster(args.reuse) : undefined;
if (args.reuse && !reused) throw new Error(`--reuse ${args.reuse}: no running environment there`);
const cluster = reused
  ? { info: reused, stop: async () => {} }
  : await startLocalCluster({ dir: join(dir, 'env') });
const clients = clientsFor(cluster.info);
const batch = clients.kc.makeApiClient(BatchV1Api);
const open = cluster.info.registries.open;
let controller: RunningController | undefined;
let watching = true;

try {
  await installCrds(cluster.info);
  const ns = await createNamespace(clients, 'bench-webhook');
  await createSuspendedPollerCronJob(clients, ns);
  const image = `${open.host}/bench/web:stable`;
  const first = await pushTestImage({ info: cluster.info, repository: 'bench/web', tag: 'stable' });
  await clients.apps.createNamespacedDeployment({
    namespace: ns,
    body: deployment('web', { containers: { app: image }, replicas: 1 }),
  });
  await createWatchedImage(clients, ns, 'web', { image, interval: '24h' });

  const receivers = join(dir, 'receivers.yaml');
  await writeFile(receivers, `receivers:\n  - { name: ci, format: generic, token: ${TOKEN} }\n`);
  controller = await startController(clients.kc, {
    namespaces: [ns],
    webhook: {
      address: '127.0.0.1:0',
      receiversFile: receivers,
      namespace: ns,
      cronJobName: 'kubewatcher-poller',
    },
  });
  const receiverUrl = await until(() => controller?.controller.webhook?.url, Boolean, {
    what: 'the webhook receiver',
  });

  // The stand-in for the Job's pod: one poller process per Job, then the Job deleted.
  const pollerRuns: { jobSeenAt: number; exitedAt: number }[] = [];
  const pollerLoop = (async () => {
    while (watching) {
      await pollerStep();
    }
  })().catch((err: unknown) => {
    if (watching) throw err; // after the end, a stopped API server is expected
  });
  async function pollerStep(): Promise<void> {
    {
      const jobs = (await batch.listNamespacedJob({ namespace: ns })).items;
      if (!jobs.some((j) => j.metadata?.name === 'kubewatcher-poller-webhook')) {
        await new Promise((r) => setTimeout(r, 20));
        return;
      }
      const jobSeenAt = Date.now();
      await run(process.execPath, [
        '--conditions=@kubewatcher/source',
        join(repoRoot, 'packages/poller/src/main.ts'),
        '--kubeconfig',
        cluster.info.kubeconfig,
        '--namespace',
        ns,
        `--plain-http=${open.host}`,
        '--log-level=warn',
      ]);
      pollerRuns.push({ jobSeenAt, exitedAt: Date.now() });
      await batch.deleteNamespacedJob({
        namespace: ns,
        name: 'kubewatcher-poller-webhook',
        propagationPolicy: 'Background',
      });
      await until(
        async () => (await batch.listNamespacedJob({ namespace: ns })).items.length,
        (n) => n === 0,
        { what: 'the Job to go', intervalMs: 20 },
      );
    }
  }

  const post = () =>
    fetch(`${receiverUrl}/hook/ci/${TOKEN}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ image: `${open.host}/bench/web`, tag: 'stable' }),
    });
  const imageOfWeb = async () =>
    (await clients.apps.readNamespacedDeployment({ namespace: ns, name: 'web' })).spec?.template.spec
      ?.containers[0]?.image ?? '';

  // The baseline: the first run records the digest the tag has now, without an update.
  expect202(await post());
  await until(
    async () => pollerRuns.length,
    (n) => n >= 1,
    { what: 'the baseline run', timeoutMs: 120_000 },
  );

  const samples: { total: number; toJob: number; poller: number; patchedBeforeExit: number }[] = [];
  let previous = first.digest;
  for (let i = 0; i < pushes; i++) {
    const pushed = await pushTestImage({ info: cluster.info, repository: 'bench/web', tag: 'stable' });
    const runsBefore = pollerRuns.length;
    const t0 = Date.now();
    expect202(await post());
    await until(imageOfWeb, (img) => img.endsWith(pushed.digest), {
      what: `push ${i + 1} patched`,
      intervalMs: 20,
      timeoutMs: 120_000,
    });
    const t1 = Date.now();
    // The run this push started: the first Job seen after the POST (the patch can come before the
    // poller process has exited, so wait for its record).
    const runOfPush = await until(
      () => pollerRuns.slice(runsBefore).find((r) => r.jobSeenAt >= t0),
      (r) => r !== undefined,
      { what: `the run of push ${i + 1} to end`, intervalMs: 20, timeoutMs: 60_000 },
    );
    if (!runOfPush) throw new Error(`push ${i + 1} was patched without a run of its own`);
    samples.push({
      total: t1 - t0,
      toJob: runOfPush.jobSeenAt - t0,
      poller: runOfPush.exitedAt - runOfPush.jobSeenAt,
      patchedBeforeExit: runOfPush.exitedAt - t1,
    });
    if (previous === pushed.digest) throw new Error('the same digest was pushed twice');
    previous = pushed.digest;
    // Let the last Job go, so each push starts from an idle controller.
    await until(
      async () => (await batch.listNamespacedJob({ namespace: ns })).items.length,
      (n) => n === 0,
      {
        what: 'an idle namespace',
        intervalMs: 20,
      },
    );
  }

  const q = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
  };
  const row = (label: string, xs: number[]) =>
    `| ${label} | ${(q(xs, 50) / 1000).toFixed(2)} s | ${(q(xs, 99) / 1000).toFixed(2)} s | ${(Math.max(...xs) / 1000).toFixed(2)} s |`;
  console.log(
    `\nWebhook push → Deployment patched, ${pushes} pushes (${cpus().length} cores, load ${loadavg()[0]!.toFixed(1)})\n`,
  );
  console.log('| Stage | p50 | p99 | max |\n| --- | --- | --- | --- |');
  console.log(
    row(
      'push → Deployment patched',
      samples.map((s) => s.total),
    ),
  );
  console.log(
    row(
      '  webhook → Job created (seen)',
      samples.map((s) => s.toJob),
    ),
  );
  console.log(
    row(
      '  poller process (start → exit)',
      samples.map((s) => s.poller),
    ),
  );
  console.log(
    row(
      '  (patched this long before the poller exited)',
      samples.map((s) => s.patchedBeforeExit),
    ),
  );
  watching = false;
  await pollerLoop;
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
} finally {
  watching = false;
  await controller?.stop();
  await cluster.stop();
  if (!args.keep) await rm(dir, { recursive: true, force: true });
}

function expect202(res: Response): void {
  if (res.status !== 202) throw new Error(`the webhook answered ${res.status}`);
}
