/**
 * End to end on the real node, checked the way a user checks it. Kubewatcher is installed as shipped:
 * the image scripts/build-image builds, pushed to the environment's open registry, and the local overlay
 * applied with `kubectl apply -k` (the controller Deployment with 2 replicas and leader election, the
 * poller CronJob firing every minute; nothing here runs the poller). Then, in namespaces of their own
 * and at the same time, so the file costs about three CronJob minutes:
 *   - the demo's sample app, watched by one namespace label (no WatchedImage written), and an app with a
 *     WatchedImage of its own: a re-push of the tag ends with every pod on the new digest, printing the
 *     new content, and one Succeeded ImageUpdate; the Deployment was patched once;
 *   - a private image on the token-auth registry: the kubelet pulls it with the imagePullSecret (a pod
 *     without it cannot) and the poller resolves the tag with the same secret;
 *   - a push whose container exits 1: the update ends Failed, the reason on the ImageUpdate, and the old
 *     pods keep running the old digest;
 *   - the leading controller pod deleted while an update rolls out: another replica takes the Lease
 *     and the update finishes, applied once;
 * and last, Kubewatcher's own pods: uid 65532, read-only root filesystem, their memory limit, no restart.
 *
 * KUBEWATCHER_E2E_FIGURES=FILE appends each run's push → pods-on-the-new-digest times to FILE (JSON lines).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  AppsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  type V1Deployment,
  type V1Pod,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { GROUP, IMAGE_UPDATE, loadKubeConfig, VERSION, WATCHED_IMAGE } from '../packages/shared/src/index.ts';
import { runSampleApp, type SampleAppResult } from '../scripts/lib/demo.ts';
import { pushBusyboxImage, type RegistryName } from '../scripts/lib/images.ts';
import {
  CONTROLLER_SELECTOR,
  installKubewatcher,
  type Kubectl,
  kubectlFor,
  type Leader,
  POLLER_SELECTOR,
  podImages,
  pushKubewatcherImage,
  SYSTEM_NAMESPACE,
  startRealNodeCluster,
  waitForLeader,
  waitForPodsOnDigest,
} from '../scripts/lib/in-cluster.ts';
import type { LocalCluster, LocalClusterInfo } from '../scripts/lib/local-cluster.ts';
import { waitFor } from '../scripts/lib/wait-for.ts';
import { createWatchedImage, getWatchedImage } from './support/controller-fixtures.ts';

const run = promisify(execFile);
const { binDir } = inject('localCluster');
/** Two CronJob periods and the time a run and a rollout take. */
const CHANGE_TIMEOUT_MS = 150_000;
const MEMORY_LIMIT_BYTES = 256 * 1024 * 1024;

interface ImageUpdateObject {
  metadata: { name: string; creationTimestamp?: string };
  spec: { watchedImage: string; fromDigest: string; toDigest: string };
  status?: {
    phase?: string;
    workloads?: { kind: string; name: string; state: string; message?: string; newImage?: string }[];
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

/** Settles like `p` but never counts as an unhandled rejection before a test awaits it. */
function started<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

describe('Kubewatcher installed on the real node', { timeout: 420_000 }, () => {
  let dir: string;
  let cluster: LocalCluster;
  let info: LocalClusterInfo;
  let kubectl: Kubectl;
  let apps: AppsV1Api;
  let core: CoreV1Api;
  let custom: CustomObjectsApi;
  let kubewatcherImage: string;
  let firstLeader: Leader;
  const figures: Record<string, number> = {};
  let flows: {
    demo: Promise<SampleAppResult>;
    watched: Promise<Awaited<ReturnType<typeof watchedFlow>>>;
    privateImage: Promise<Awaited<ReturnType<typeof privateImageFlow>>>;
    failing: Promise<Awaited<ReturnType<typeof failingFlow>>>;
    failover: Promise<Awaited<ReturnType<typeof failoverFlow>>>;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubewatcher-e2e-real-node-'));
    cluster = await startRealNodeCluster(join(dir, 'env'), binDir);
    info = cluster.info;
    kubectl = kubectlFor(info);
    const kc = loadKubeConfig(info.kubeconfig);
    apps = kc.makeApiClient(AppsV1Api);
    core = kc.makeApiClient(CoreV1Api);
    custom = kc.makeApiClient(CustomObjectsApi);

    kubewatcherImage = await pushKubewatcherImage(info, { outDir: join(dir, 'image') });
    await installKubewatcher(info, { image: kubewatcherImage, dir });
    firstLeader = await waitForLeader(info, { timeoutMs: 120_000 });

    const said: string[] = [];
    const demo = started(
      runSampleApp({
        info,
        workDir: join(dir, 'demo'),
        namespace: 'e2e-demo',
        timeoutMs: CHANGE_TIMEOUT_MS,
        step: (text) => said.push(text),
        say: (text) => said.push(text),
        show: (text) => said.push(text),
        progress: (text) => said.push(text),
      }).finally(() => console.log(said.join('\n'))),
    );
    const privateImage = started(privateImageFlow());
    const watched = started(watchedFlow());
    flows = {
      demo,
      watched,
      privateImage,
      failing: started(failingFlow()),
      // The leader goes once the other successful updates are done, so their figures time the ordinary
      // path; the failing update may still be rolling out, and must end Failed anyway.
      failover: started(failoverFlow(Promise.allSettled([watched, privateImage, demoUpdateDone()]))),
    };
  }, 600_000);

  afterAll(async () => {
    if (Object.keys(figures).length > 0) {
      console.log(`push → pods on the new digest: ${JSON.stringify(figures)}`);
      if (process.env.KUBEWATCHER_E2E_FIGURES) {
        await appendFile(
          process.env.KUBEWATCHER_E2E_FIGURES,
          `${JSON.stringify({ at: new Date().toISOString(), ...figures })}\n`,
        );
      }
    }
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 180_000);

  // -------------------------------------------------------------------------------------------------
  // What the scenarios share

  async function createNamespace(name: string) {
    await core.createNamespace({ body: { metadata: { name } } });
  }

  function deployment(
    ns: string,
    image: string,
    o: {
      replicas: number;
      minReadySeconds?: number;
      progressDeadlineSeconds?: number;
      pullSecret?: string;
    },
  ): V1Deployment {
    return {
      metadata: { name: 'app', namespace: ns },
      spec: {
        replicas: o.replicas,
        ...(o.minReadySeconds ? { minReadySeconds: o.minReadySeconds } : {}),
        ...(o.progressDeadlineSeconds ? { progressDeadlineSeconds: o.progressDeadlineSeconds } : {}),
        // A new pod first, an old one goes only when it is available: the old ones keep serving.
        strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
        selector: { matchLabels: { app: 'app' } },
        template: {
          metadata: { labels: { app: 'app' } },
          spec: {
            terminationGracePeriodSeconds: 5,
            ...(o.pullSecret ? { imagePullSecrets: [{ name: o.pullSecret }] } : {}),
            containers: [
              {
                name: 'app',
                image,
                // With the secret: pulled on every start, so the node's copy never stands in for it.
                imagePullPolicy: o.pullSecret ? 'Always' : 'IfNotPresent',
              },
            ],
          },
        },
      },
    };
  }

  /**
   * A namespace with Deployment `app` (`replicas` pods Ready on a fresh image `repository:stable`) and
   * a WatchedImage `app` for its tag, after the poller's first sight recorded the digest.
   */
  async function watchedApp(
    ns: string,
    o: { registry: RegistryName; replicas: number; pullSecret?: () => Promise<string> } & Omit<
      Parameters<typeof deployment>[2],
      'replicas' | 'pullSecret'
    >,
  ) {
    await createNamespace(ns);
    const repository = `e2e/${ns}`;
    const first = await pushBusyboxImage({
      info,
      registry: o.registry,
      repository,
      tag: 'stable',
      content: `${ns} v1 ${randomBytes(4).toString('hex')}\n`,
    });
    const image = `${info.registries[o.registry].host}/${repository}:stable`;
    const pullSecret = o.pullSecret ? await o.pullSecret() : undefined;
    const { replicas, minReadySeconds, progressDeadlineSeconds } = o;
    await apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment(ns, image, { replicas, minReadySeconds, progressDeadlineSeconds, pullSecret }),
    });
    const podsBefore = await waitForPodsOnDigest(info, {
      namespace: ns,
      selector: 'app=app',
      digest: first.digest,
      replicas: o.replicas,
      timeoutMs: 90_000,
    });
    await createWatchedImage({ custom }, ns, 'app', { image, interval: '1m' });
    await waitFor(
      async () => (await watchedImage(ns)).status?.digest === first.digest,
      CHANGE_TIMEOUT_MS,
      () => `the poller did not record ${first.digest} for ${ns}/app`,
      500,
    );
    return { repository, image, first, podsBefore };
  }

  async function watchedImage(ns: string) {
    return getWatchedImage({ custom }, ns, 'app');
  }

  async function imageUpdates(ns: string): Promise<ImageUpdateObject[]> {
    const list = (await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: IMAGE_UPDATE.plural,
      namespace: ns,
    })) as { items: ImageUpdateObject[] };
    return list.items;
  }

  /** Waits until the ImageUpdate towards `digest` reaches one of `phases`; returns it. */
  async function updateIn(ns: string, digest: string, phases: string[], timeoutMs = CHANGE_TIMEOUT_MS) {
    let found: ImageUpdateObject | undefined;
    await waitFor(
      async () => {
        found = (await imageUpdates(ns)).find((u) => u.spec.toDigest === digest);
        return phases.includes(found?.status?.phase ?? '');
      },
      timeoutMs,
      () =>
        `${ns}: the ImageUpdate to ${digest} is ${found?.status?.phase ?? 'missing'}, not ${phases.join('|')}`,
      500,
    );
    return found as ImageUpdateObject;
  }

  /** The demo's ImageUpdate has ended (its namespace has one, Succeeded or Failed). */
  async function demoUpdateDone() {
    await waitFor(
      async () =>
        (await imageUpdates('e2e-demo').catch(() => [])).some((u) =>
          ['Succeeded', 'Failed'].includes(u.status?.phase ?? ''),
        ),
      2 * CHANGE_TIMEOUT_MS,
      () => "the demo's ImageUpdate did not end",
      500,
    );
  }

  async function eventCount(ns: string, kind: string, name: string, reason: string) {
    const { items } = await core.listNamespacedEvent({
      namespace: ns,
      fieldSelector: `involvedObject.kind=${kind},involvedObject.name=${name},reason=${reason}`,
    });
    return items.reduce((sum, e) => sum + (e.count ?? 1), 0);
  }

  /** Re-pushes `repository:stable` with new content; resolves when every pod runs it. */
  async function rePushAndWait(ns: string, registry: RegistryName, repository: string, replicas: number) {
    const second = await pushBusyboxImage({
      info,
      registry,
      repository,
      tag: 'stable',
      content: `${ns} v2 ${randomBytes(4).toString('hex')}\n`,
    });
    const pushed = performance.now();
    const pods = await waitForPodsOnDigest(info, {
      namespace: ns,
      selector: 'app=app',
      digest: second.digest,
      replicas,
      timeoutMs: CHANGE_TIMEOUT_MS,
    });
    const rolledOutAt = Date.now();
    figures[ns] = Math.round(performance.now() - pushed) / 1000;
    // The part after the poller's run: its ImageUpdate's creation (1 s resolution) to the pods.
    const update = (await imageUpdates(ns)).find((u) => u.spec.toDigest === second.digest);
    const created = update?.metadata.creationTimestamp;
    if (created) figures[`${ns} update→pods`] = (rolledOutAt - Date.parse(created)) / 1000;
    return { second, pods };
  }

  // -------------------------------------------------------------------------------------------------
  // The scenarios, started together in beforeAll

  async function watchedFlow() {
    const ns = 'e2e-watched';
    const app = await watchedApp(ns, { registry: 'open', replicas: 2 });
    const generationBefore = (await apps.readNamespacedDeployment({ namespace: ns, name: 'app' })).metadata
      ?.generation;
    const { second, pods } = await rePushAndWait(ns, 'open', app.repository, 2);
    const update = await updateIn(ns, second.digest, ['Succeeded', 'Failed'], 30_000);
    const logs: Record<string, string> = {};
    for (const pod of pods) logs[pod.name] = await kubectl(['-n', ns, 'logs', pod.name]);
    const deploymentAfter = await apps.readNamespacedDeployment({ namespace: ns, name: 'app' });
    return { ...app, second, pods, update, logs, generationBefore, deploymentAfter };
  }

  async function privateImageFlow() {
    const ns = 'e2e-private';
    const token = info.registries.token;
    const secret = 'registry-token';
    const createSecret = async () => {
      const auth = Buffer.from(`${token.username}:${token.password}`).toString('base64');
      const config = {
        auths: { [token.host]: { username: token.username, password: token.password, auth } },
      };
      await core.createNamespacedSecret({
        namespace: ns,
        body: {
          metadata: { name: secret },
          type: 'kubernetes.io/dockerconfigjson',
          data: { '.dockerconfigjson': Buffer.from(JSON.stringify(config)).toString('base64') },
        },
      });
      return secret;
    };
    const app = await watchedApp(ns, { registry: 'token', replicas: 1, pullSecret: createSecret });
    // The same image without the secret: the registry refuses the kubelet.
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'without-secret' },
        spec: {
          terminationGracePeriodSeconds: 1,
          containers: [{ name: 'app', image: app.image, imagePullPolicy: 'Always' }],
        },
      },
    });
    let refused: V1Pod | undefined;
    await waitFor(
      async () => {
        refused = await core.readNamespacedPod({ namespace: ns, name: 'without-secret' });
        const reason = refused.status?.containerStatuses?.[0]?.state?.waiting?.reason ?? '';
        return reason === 'ErrImagePull' || reason === 'ImagePullBackOff';
      },
      60_000,
      () => `pod without-secret: ${JSON.stringify(refused?.status?.containerStatuses)}`,
    );
    await core.deleteNamespacedPod({ namespace: ns, name: 'without-secret', gracePeriodSeconds: 0 });
    const resolvedBefore = (await watchedImage(ns)).status?.conditions?.find((c) => c.type === 'Resolved');
    const { second, pods } = await rePushAndWait(ns, 'token', app.repository, 1);
    const update = await updateIn(ns, second.digest, ['Succeeded', 'Failed'], 30_000);
    return { ...app, second, pods, update, refused, resolvedBefore };
  }

  async function failingFlow() {
    const ns = 'e2e-failing';
    // Pods count as available after 5 s Ready, so a container that dies at once never does; the
    // Deployment gives up after 20 s without progress.
    const app = await watchedApp(ns, {
      registry: 'open',
      replicas: 2,
      minReadySeconds: 5,
      progressDeadlineSeconds: 20,
    });
    const second = await pushBusyboxImage({
      info,
      repository: app.repository,
      tag: 'stable',
      content: `${ns} v2 (never runs)\n`,
      entrypoint: ['/bin/busybox', 'sh', '-c', 'echo "v2: cannot start" >&2; exit 1'],
    });
    const update = await updateIn(ns, second.digest, ['Failed', 'Succeeded'], CHANGE_TIMEOUT_MS + 60_000);
    const pods = await podImages(info, ns, 'app=app');
    const logs: Record<string, string> = {};
    for (const pod of pods.filter((p) => p.digest === app.first.digest)) {
      logs[pod.name] = await kubectl(['-n', ns, 'logs', pod.name]);
    }
    const newPods = (await core.listNamespacedPod({ namespace: ns, labelSelector: 'app=app' })).items.filter(
      (p) => p.status?.containerStatuses?.[0]?.imageID.endsWith(second.digest),
    );
    return {
      ...app,
      second,
      update,
      pods,
      logs,
      newPods,
      getIu: await kubectl(['-n', ns, 'get', 'iu']),
      describeIu: await kubectl(['-n', ns, 'describe', 'iu', update.metadata.name]),
    };
  }

  async function failoverFlow(othersDone: Promise<unknown>) {
    const ns = 'e2e-failover';
    // The rollout stays in progress for 30 s after the new pod is Ready.
    const app = await watchedApp(ns, { registry: 'open', replicas: 1, minReadySeconds: 30 });
    const second = await pushBusyboxImage({
      info,
      repository: app.repository,
      tag: 'stable',
      content: `${ns} v2 ${randomBytes(4).toString('hex')}\n`,
    });
    const rollingOut = await updateIn(ns, second.digest, ['RollingOut', 'Succeeded', 'Failed']);
    await othersDone;
    const before = await updateIn(ns, second.digest, ['RollingOut', 'Succeeded', 'Failed'], 1000);
    const leader = await waitForLeader(info, { timeoutMs: 30_000 });
    const [leaderPod] = leader.readyPods;
    await kubectl(['-n', SYSTEM_NAMESPACE, 'delete', 'pod', leaderPod ?? '', '--wait=false']);
    const deleted = performance.now();
    const next = await waitForLeader(info, { timeoutMs: 120_000, previous: leader.identity });
    figures['failover: leader pod deleted → new leader'] = Math.round(performance.now() - deleted) / 1000;
    const update = await updateIn(ns, second.digest, ['Succeeded', 'Failed'], 120_000);
    const pods = await waitForPodsOnDigest(info, {
      namespace: ns,
      selector: 'app=app',
      digest: second.digest,
      replicas: 1,
      timeoutMs: 30_000,
    });
    const deploymentAfter = await apps.readNamespacedDeployment({ namespace: ns, name: 'app' });
    return {
      ...app,
      second,
      rollingOut,
      phaseWhenLeaderWent: before.status?.phase,
      leader,
      leaderPod,
      next,
      update,
      pods,
      deploymentAfter,
      pinned: await eventCount(ns, 'Deployment', 'app', 'ImagePinned'),
    };
  }

  // -------------------------------------------------------------------------------------------------
  // What a user checks

  it('installs from the pushed image: a controller leads, the second replica waits for the probe port', async () => {
    expect(kubewatcherImage).toMatch(
      new RegExp(`^${info.registries.open.host}/kubewatcher/kubewatcher:dev@sha256:[0-9a-f]{64}$`),
    );
    const digest = kubewatcherImage.split('@')[1];
    const d = await apps.readNamespacedDeployment({
      namespace: SYSTEM_NAMESPACE,
      name: 'kubewatcher-controller',
    });
    expect(d.spec?.replicas).toBe(2);
    expect(d.spec?.template.spec?.containers[0]?.args).toContain('--leader-elect');
    const cron = await kubectl([
      '-n',
      SYSTEM_NAMESPACE,
      'get',
      'cronjob',
      'kubewatcher-poller',
      '-o',
      'json',
    ]);
    expect(JSON.parse(cron).spec).toMatchObject({ schedule: '* * * * *', suspend: false });
    expect(firstLeader.identity).not.toBe('');
    const pods = await podImages(info, SYSTEM_NAMESPACE, CONTROLLER_SELECTOR);
    expect(pods.filter((p) => p.ready).map((p) => p.digest)).toEqual([digest]);
  });

  it("the demo's sample app: after a re-push every pod runs the new digest and prints the new content", async () => {
    const r = await flows.demo;
    const host = info.registries.open.host;
    expect(r.before).not.toEqual({});
    for (const log of Object.values(r.before)) expect(`${log}\n`).toBe(r.firstContent);
    expect(Object.keys(r.after)).toHaveLength(2);
    for (const log of Object.values(r.after)) expect(`${log}\n`).toBe(r.secondContent);
    expect(r.podsAfter.map((p) => p.imageID)).toEqual([
      `${host}/demo/web@${r.secondDigest}`,
      `${host}/demo/web@${r.secondDigest}`,
    ]);
    expect(Object.keys(r.after)).not.toContain(Object.keys(r.before)[0]);
    figures['e2e-demo'] = Math.round(r.pushToRolledOutMs) / 1000;
    figures['e2e-demo update→pods'] = Math.round(r.updateToRolledOutMs) / 1000;

    // No WatchedImage was written: the namespace label made the controller generate one.
    const list = (await custom.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: WATCHED_IMAGE.plural,
      namespace: 'e2e-demo',
    })) as {
      items: { metadata: { name: string; labels?: Record<string, string> }; status?: { digest?: string } }[];
    };
    expect(list.items.map((w) => w.metadata.name)).toEqual([r.watchedImage]);
    expect(list.items[0]?.metadata.labels?.['app.kubernetes.io/managed-by']).toBe('kubewatcher');
    expect(list.items[0]?.status?.digest).toBe(r.secondDigest);
    const updates = await imageUpdates('e2e-demo');
    expect(updates).toHaveLength(1);
    expect(updates[0]).toMatchObject({
      metadata: { name: r.imageUpdate },
      spec: { watchedImage: r.watchedImage, fromDigest: r.firstDigest, toDigest: r.secondDigest },
      status: { phase: 'Succeeded' },
    });
    const d = await apps.readNamespacedDeployment({ namespace: 'e2e-demo', name: 'web' });
    expect(d.spec?.template.spec?.containers[0]?.image).toBe(`${r.image}@${r.secondDigest}`);
    // Generation 1 at creation, 2 after the one patch.
    expect(d.metadata?.generation).toBe(2);
    expect(await eventCount('e2e-demo', 'Deployment', 'web', 'ImagePinned')).toBe(1);
    expect(await eventCount('e2e-demo', 'ImageUpdate', r.imageUpdate, 'Succeeded')).toBe(1);
  });

  it('an app with its own WatchedImage: the same, and the Deployment was patched once', async () => {
    const r = await flows.watched;
    const host = info.registries.open.host;
    expect(r.podsBefore.map((p) => p.digest)).toEqual([r.first.digest, r.first.digest]);
    expect(r.pods.map((p) => p.imageID)).toEqual([
      `${host}/${r.repository}@${r.second.digest}`,
      `${host}/${r.repository}@${r.second.digest}`,
    ]);
    for (const log of Object.values(r.logs)) expect(`${log}\n`).toBe(r.second.content);
    expect(r.update).toMatchObject({
      spec: { watchedImage: 'app', fromDigest: r.first.digest, toDigest: r.second.digest },
      status: { phase: 'Succeeded' },
    });
    expect(await imageUpdates('e2e-watched')).toHaveLength(1);
    expect(r.deploymentAfter.spec?.template.spec?.containers[0]?.image).toBe(`${r.image}@${r.second.digest}`);
    expect(r.deploymentAfter.metadata?.generation).toBe((r.generationBefore ?? 0) + 1);
    expect(await eventCount('e2e-watched', 'Deployment', 'app', 'ImagePinned')).toBe(1);
  });

  it('a private image: the kubelet pulls it with the imagePullSecret, the poller resolves it with the same', async () => {
    const r = await flows.privateImage;
    const waiting = r.refused?.status?.containerStatuses?.[0]?.state?.waiting;
    expect(waiting?.message).toMatch(/pull access denied.*authorization failed/);
    expect(r.podsBefore.map((p) => p.digest)).toEqual([r.first.digest]);
    expect(r.resolvedBefore).toMatchObject({ status: 'True' });
    expect(r.pods.map((p) => p.imageID)).toEqual([
      `${info.registries.token.host}/${r.repository}@${r.second.digest}`,
    ]);
    expect(`${await kubectl(['-n', 'e2e-private', 'logs', r.pods[0]?.name ?? ''])}\n`).toBe(r.second.content);
    expect(r.update.status?.phase).toBe('Succeeded');
    expect(r.update.spec).toMatchObject({ fromDigest: r.first.digest, toDigest: r.second.digest });
  });

  it('a new image that exits 1: the update ends Failed with the reason, the old pods keep serving', async () => {
    const r = await flows.failing;
    expect(r.update.status?.phase).toBe('Failed');
    const row = r.getIu.split('\n').find((l) => l.startsWith(r.update.metadata.name));
    expect(row).toMatch(/\sFailed\s/);
    const ready = r.update.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'RolloutFailed' });
    expect(ready?.message).toMatch(/ProgressDeadlineExceeded/);
    expect(r.describeIu).toMatch(/ProgressDeadlineExceeded/);
    // The old pods: the same two, still Ready on the old digest, never restarted, printing the old content.
    const old = r.pods.filter((p) => p.digest === r.first.digest);
    expect(old.map((p) => p.name).sort()).toEqual(r.podsBefore.map((p) => p.name).sort());
    expect(old.every((p) => p.ready && p.restarts === 0 && !p.terminating)).toBe(true);
    for (const log of Object.values(r.logs)) expect(`${log}\n`).toBe(r.first.content);
    // The new pod did start, and its container exited 1.
    expect(r.newPods.length).toBeGreaterThan(0);
    const status = r.newPods[0]?.status?.containerStatuses?.[0];
    const exitCode = status?.state?.terminated?.exitCode ?? status?.lastState?.terminated?.exitCode;
    expect(exitCode).toBe(1);
  });

  it('the leader deleted while an update rolls out: another replica leads and finishes it, applied once', async () => {
    const r = await flows.failover;
    expect(r.phaseWhenLeaderWent).toBe('RollingOut');
    expect(r.next.identity).not.toBe(r.leader.identity);
    expect(r.next.readyPods).not.toContain(r.leaderPod);
    expect(r.update.status?.phase).toBe('Succeeded');
    expect(r.pods.map((p) => p.digest)).toEqual([r.second.digest]);
    expect(r.deploymentAfter.metadata?.generation).toBe(2);
    expect(r.pinned).toBe(1);
  });

  it("Kubewatcher's own pods run as 65532 with a read-only root filesystem, their memory limit, and no restart", async () => {
    await Promise.allSettled(Object.values(flows));
    const digest = kubewatcherImage.split('@')[1] ?? '';
    const allControllers = await podImages(info, SYSTEM_NAMESPACE, CONTROLLER_SELECTOR);
    expect(allControllers.filter((p) => p.restarts > 0)).toEqual([]);
    const controllers = allControllers.filter((p) => p.ready);
    expect(controllers).toHaveLength(1);
    for (const pod of controllers) {
      expect(pod).toMatchObject({ digest, restarts: 0 });
      // Asked inside the container, as `kubectl exec` lets a user (the image has node, no shell).
      const probe = `const fs = require('node:fs');
        let rootWritable = true;
        try { fs.writeFileSync('/kubewatcher-probe', ''); } catch (e) { rootWritable = e.code !== 'EROFS'; }
        const limit = ['/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/memory.max']
          .filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f, 'utf8').trim())[0];
        console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), rootWritable, limit }));`;
      const inside = JSON.parse(
        await kubectl(['-n', SYSTEM_NAMESPACE, 'exec', pod.name, '--', 'node', '-e', probe]),
      );
      expect(inside).toEqual({
        uid: 65532,
        gid: 65532,
        rootWritable: false,
        limit: String(MEMORY_LIMIT_BYTES),
      });
    }

    // The shipped RBAC is enough: no request of either program was refused.
    for (const pod of allControllers.filter((p) => p.digest !== '')) {
      expect(await kubectl(['-n', SYSTEM_NAMESPACE, 'logs', pod.name]), pod.name).not.toMatch(/forbidden/i);
    }

    // The poller's runs: every Job succeeded at its first try, each pod ran the image once as 65532 with
    // a read-only root and the memory limit (what runc was given, from containerd's record).
    const jobs = JSON.parse(await kubectl(['-n', SYSTEM_NAMESPACE, 'get', 'jobs', '-o', 'json'])) as {
      items: { metadata: { name: string }; status: { succeeded?: number; failed?: number } }[];
    };
    expect(jobs.items.length).toBeGreaterThanOrEqual(2);
    expect(jobs.items.filter((j) => j.status.failed)).toEqual([]);
    const pollerPods = (
      await core.listNamespacedPod({ namespace: SYSTEM_NAMESPACE, labelSelector: POLLER_SELECTOR })
    ).items;
    const finished = pollerPods.filter((p) => p.status?.phase === 'Succeeded');
    expect(finished.length).toBeGreaterThan(0);
    for (const pod of finished) {
      const status = pod.status?.containerStatuses?.[0];
      expect(status?.imageID.endsWith(digest)).toBe(true);
      expect(status?.restartCount).toBe(0);
      expect(status?.state?.terminated?.exitCode).toBe(0);
      const id = status?.containerID?.replace('containerd://', '') ?? '';
      const { stdout } = await run('ctr', [
        '--address',
        info.realNode?.containerdSocket ?? '',
        '--namespace',
        info.realNode?.containerdNamespace ?? '',
        'containers',
        'info',
        id,
      ]);
      const spec = JSON.parse(stdout).Spec as {
        process: { user: { uid: number; gid: number } };
        root: { readonly?: boolean };
        linux: { resources: { memory?: { limit?: number } } };
      };
      expect(spec.process.user).toMatchObject({ uid: 65532, gid: 65532 });
      expect(spec.root.readonly).toBe(true);
      expect(spec.linux.resources.memory?.limit).toBe(MEMORY_LIMIT_BYTES);
      const name = pod.metadata?.name ?? '';
      expect(await kubectl(['-n', SYSTEM_NAMESPACE, 'logs', name]), name).not.toMatch(/forbidden/i);
    }
  });
});
