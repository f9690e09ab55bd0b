/**
 * When and whether updates land, against the real local control plane: an update detected outside
 * its WatchedImage's update windows waits in Scheduled and applies when the window opens; a young
 * digest waits for the minimum age and a tag that moves again meanwhile rolls out once; a rollout
 * that fails is rolled back to the exact previous image, and that digest is refused afterwards.
 */
import { kubeTime } from '@kubewatcher/shared';
import { describe, expect, inject, it } from 'vitest';
import {
  CRONJOBS,
  createImageUpdate,
  createWatchedImage,
  cronJob,
  deployment,
  deploymentRolledOut,
  eventsIn,
  getWatchedImage,
  imagesOf,
  kubectl,
  testDigest,
  until,
  waitForPhase,
} from '../../../test/support/controller-fixtures.ts';
import { useControllerTestBed } from './controller-test-bed.ts';

const info = inject('localCluster');
const { clients, newNamespace, startController } = useControllerTestBed(info);
const WEB = 'ghcr.io/acme/web:1.0';

async function setup(prefix: string, opts: Parameters<typeof startController>[0] = {}) {
  const ns = await newNamespace(prefix);
  const baseline = testDigest(1);
  await clients.apps.createNamespacedDeployment({
    namespace: ns,
    body: deployment('web', { containers: { app: `${WEB}@${baseline}` }, progressDeadlineSeconds: 10 }),
  });
  await deploymentRolledOut(clients, ns, 'web');
  const start = async () => {
    await startController({ namespaces: [ns], ...opts });
  };
  return { ns, baseline, start };
}

const imageOfWeb = async (ns: string) =>
  imagesOf(await clients.apps.readNamespacedDeployment({ namespace: ns, name: 'web' })).app;

describe('update windows', () => {
  it('holds an update outside the window in Scheduled, shows its start, and applies it when the window opens', async () => {
    // The controller's clock reads 10 seconds before 22:00 UTC today, whatever the time really is:
    // the window opens while the test waits, and the controller has to wake for it by itself.
    const today = new Date().toISOString().slice(0, 10);
    const opensAt = Date.parse(`${today}T22:00:00Z`);
    const offset = opensAt - 10_000 - Date.now();
    const { ns, baseline, start } = await setup('windows', { now: () => new Date(Date.now() + offset) });
    const wi = await createWatchedImage(clients, ns, 'web', {
      image: WEB,
      updateWindows: [
        { days: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'], start: '22:00', end: '23:00' },
      ],
    });
    await start();

    const toDigest = testDigest(2);
    const iu = await createImageUpdate(clients, wi, toDigest, { fromDigest: baseline });
    const scheduled = await waitForPhase(clients, ns, iu.metadata.name, 'Scheduled');
    expect(scheduled.status?.scheduledTime).toBe(`${today}T22:00:00Z`);
    expect(scheduled.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'Unknown',
      reason: 'OutsideUpdateWindow',
    });
    // Nothing is patched while it waits.
    expect(await imageOfWeb(ns)).toBe(`${WEB}@${baseline}`);
    const table = await kubectl(info, 'get', 'iu', '-n', ns);
    expect(table).toMatch(/STARTS/);
    expect(table).toContain(`${today}T22:00:00Z`);
    const events = await until(
      () => eventsIn(clients, ns, { kind: 'ImageUpdate', name: iu.metadata.name }),
      (list) => list.some((e) => e.reason === 'Scheduled'),
      { what: 'the Scheduled Event' },
    );
    expect(events.find((e) => e.reason === 'Scheduled')?.message).toContain(`starts at ${today}T22:00:00Z`);

    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(done.status?.scheduledTime).toBeUndefined();
    // Applied by the controller's clock at or after the opening, never before.
    expect(Date.parse(done.status!.appliedTime!)).toBeGreaterThanOrEqual(opensAt);
    expect(await imageOfWeb(ns)).toBe(`${WEB}@${toDigest}`);
  });
});

describe('minimum age', () => {
  it('waits until the digest is old enough; a tag that moves again meanwhile rolls out once, to the last digest', async () => {
    const { ns, baseline, start } = await setup('min-age');
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, minimumAge: '20s' });
    await start();

    const second = testDigest(2);
    const first = await createImageUpdate(clients, wi, second, {
      fromDigest: baseline,
      detectedTime: kubeTime(new Date()),
    });
    const waiting = await waitForPhase(clients, ns, first.metadata.name, 'Scheduled');
    expect(waiting.status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('MinimumAge');
    expect(Date.parse(waiting.status!.scheduledTime!)).toBe(Date.parse(first.spec.detectedTime!) + 20_000);

    // The tag moves again before the first digest is 20 seconds old (creationTimestamp has whole
    // seconds, so the newer record is created a second later to be newer by it).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const third = testDigest(3);
    const last = await createImageUpdate(clients, wi, third, {
      fromDigest: second,
      detectedTime: kubeTime(new Date()),
    });
    const superseded = await waitForPhase(clients, ns, first.metadata.name, 'Superseded');
    expect(superseded.status?.supersededBy).toBe(last.metadata.name);

    const done = await waitForPhase(clients, ns, last.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(Date.parse(done.status!.appliedTime!)).toBeGreaterThanOrEqual(
      Date.parse(last.spec.detectedTime!) + 20_000,
    );
    const web = await clients.apps.readNamespacedDeployment({ namespace: ns, name: 'web' });
    expect(imagesOf(web).app).toBe(`${WEB}@${third}`);
    // One rollout: the template changed once, straight to the last digest.
    expect(web.metadata?.generation).toBe(2);
  });
});

describe('automatic rollback', () => {
  it('rolls a Deployment whose new pods cannot start back to the exact previous image, then refuses that digest', async () => {
    const { ns, baseline, start } = await setup('rollback');
    // A pod quota the running replicas fill: the new ReplicaSet cannot create its surge pod, so the
    // rollout makes no progress and the Deployment reports ProgressDeadlineExceeded after 10 s.
    await clients.core.createNamespacedResourceQuota({
      namespace: ns,
      body: { metadata: { name: 'pods' }, spec: { hard: { pods: '2' } } },
    });
    await until(
      () => clients.core.readNamespacedResourceQuota({ namespace: ns, name: 'pods' }),
      (q) => q.status?.used?.pods === '2',
      { what: 'the quota to count the running pods' },
    );
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, rollback: 'OnFailure' });
    await start();

    const bad = testDigest(2);
    const iu = await createImageUpdate(clients, wi, bad, { fromDigest: baseline });
    const done = await waitForPhase(
      clients,
      ns,
      iu.metadata.name,
      ['RolledBack', 'Failed', 'Succeeded'],
      120_000,
    );
    expect(done.status?.phase).toBe('RolledBack');
    expect(done.status?.failureMessage).toContain('ProgressDeadlineExceeded');
    expect(done.status?.workloads).toEqual([
      expect.objectContaining({
        kind: 'Deployment',
        name: 'web',
        container: 'app',
        previousImage: `${WEB}@${baseline}`,
        newImage: `${WEB}@${bad}`,
        state: 'RolledBack',
      }),
    ]);
    expect(done.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'RolledBack',
    });
    // The exact previous image, digest included, and the old pods serve again.
    expect(await imageOfWeb(ns)).toBe(`${WEB}@${baseline}`);
    await deploymentRolledOut(clients, ns, 'web');

    const updateEvents = await eventsIn(clients, ns, { kind: 'ImageUpdate', name: iu.metadata.name });
    expect(
      updateEvents
        .filter((e) => e.type === 'Warning')
        .map((e) => e.reason)
        .sort(),
    ).toEqual(['RolledBack', 'RollingBack']);
    const workloadEvents = await eventsIn(clients, ns, { kind: 'Deployment', name: 'web' });
    expect(
      workloadEvents
        .filter((e) => e.type === 'Warning')
        .map((e) => e.reason)
        .sort(),
    ).toEqual(['RolledBack', 'RolloutFailed']);

    const refusing = await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.refusedDigest !== undefined,
      { what: 'the WatchedImage to show the refused digest' },
    );
    expect(refusing.status?.refusedDigest).toBe(bad);

    // (Events are listed by creationTimestamp, whole seconds: their order within a second is not kept.)
    // The same digest again, as the poller records it after a re-baseline (the next free name):
    // refused, nothing patched.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const again = await createImageUpdate(clients, wi, bad, {
      fromDigest: baseline,
      name: `${iu.metadata.name}-2`,
    });
    const refused = await waitForPhase(clients, ns, again.metadata.name, [
      'Failed',
      'Succeeded',
      'RolledBack',
    ]);
    expect(refused.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'DigestRefused',
    });
    expect(await imageOfWeb(ns)).toBe(`${WEB}@${baseline}`);
  });
});

describe('CronJobs', () => {
  it('pins the job template, containers and init containers, and succeeds once patched', async () => {
    const ns = await newNamespace('cronjob');
    const baseline = testDigest(1);
    await clients.custom.createNamespacedCustomObject({
      ...CRONJOBS,
      namespace: ns,
      body: cronJob('nightly', {
        containers: { job: WEB, sidecar: 'ghcr.io/acme/sidecar:2.1' },
        initContainers: { prep: WEB },
      }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, kinds: ['CronJob'] });
    await startController({ namespaces: [ns] });
    const found = await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.workloadCount === 1,
      { what: 'the WatchedImage to find the CronJob' },
    );
    expect(found.status?.workloads).toEqual([
      { kind: 'CronJob', name: 'nightly', containers: ['prep', 'job'] },
    ]);

    const toDigest = testDigest(2);
    const iu = await createImageUpdate(clients, wi, toDigest, { fromDigest: baseline });
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(done.status?.workloads?.map((r) => [r.kind, r.name, r.container, r.state])).toEqual([
      ['CronJob', 'nightly', 'prep', 'RolledOut'],
      ['CronJob', 'nightly', 'job', 'RolledOut'],
    ]);

    const cj = (await clients.custom.getNamespacedCustomObject({
      ...CRONJOBS,
      namespace: ns,
      name: 'nightly',
    })) as {
      metadata: { annotations?: Record<string, string> };
      spec: {
        jobTemplate: {
          spec: {
            template: {
              spec: {
                containers: { name: string; image: string }[];
                initContainers: { name: string; image: string }[];
              };
            };
          };
        };
      };
    };
    const pod = cj.spec.jobTemplate.spec.template.spec;
    expect(
      Object.fromEntries([...pod.initContainers, ...pod.containers].map((c) => [c.name, c.image])),
    ).toEqual({
      prep: `${WEB}@${toDigest}`,
      job: `${WEB}@${toDigest}`,
      sidecar: 'ghcr.io/acme/sidecar:2.1',
    });
    expect(cj.metadata.annotations?.['kubewatcher.io/image-update']).toBe(iu.metadata.name);
    const events = await eventsIn(clients, ns, { kind: 'CronJob', name: 'nightly' });
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['ImagePinned', 'RolloutSucceeded']));
  });
});
