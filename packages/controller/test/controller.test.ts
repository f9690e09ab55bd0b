/**
 * The controller against the real local control plane (kube-apiserver, etcd, kube-controller-manager,
 * kube-scheduler and a kwok node, so Deployments get Running pods and rollouts complete), run in this
 * process with its own metrics registry. Each test has its own namespace and its own controller,
 * watching that namespace only. ImageUpdates are created the way the poller creates them.
 */
import { AdmissionregistrationV1Api, type V1Deployment } from '@kubernetes/client-node';
import {
  ANNOTATION,
  type ImageUpdate,
  type ImageUpdateStatus,
  MAX_MESSAGE_BYTES,
  podSpecOf,
} from '@kubewatcher/shared';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import {
  approve,
  createImageUpdate,
  createWatchedImage,
  daemonSet,
  deployment,
  deploymentRolledOut,
  eventsIn,
  getImageUpdate,
  getWatchedImage,
  IU,
  imagesOf,
  listImageUpdates,
  mergePatch,
  statefulSet,
  testDigest,
  until,
  waitForPhase,
  writeResolved,
} from '../../../test/support/controller-fixtures.ts';
import { ControllerWriter } from '../src/cluster.ts';
import { useControllerTestBed } from './controller-test-bed.ts';

const { clients, newNamespace, startController } = useControllerTestBed(inject('localCluster'));
const WEB = 'ghcr.io/acme/web:1.0';
const SIDECAR = 'ghcr.io/acme/sidecar:2.1';

// Runs before the test bed's afterEach (vitest runs after-hooks last registered first): the mocks go
// before the controllers stop, as they did when this file had one afterEach.
afterEach(() => {
  vi.restoreAllMocks();
});

/** A fresh namespace and a controller that watches only it. */
async function setup(prefix: string, opts: Parameters<typeof startController>[0] = {}) {
  const ns = await newNamespace(prefix);
  const start = () => startController({ namespaces: [ns], ...opts });
  return { ns, start };
}

const readDeployment = (ns: string, name: string) =>
  clients.apps.readNamespacedDeployment({ namespace: ns, name });
const generationOf = async (ns: string, name: string) =>
  (await readDeployment(ns, name)).metadata?.generation;

function result(status: ImageUpdateStatus | undefined, kind: string, name: string, container: string) {
  return status?.workloads?.find((r) => r.kind === kind && r.name === name && r.container === container);
}

describe('Auto policy', () => {
  it('pins the matching containers (init containers too), annotates, rolls out to Succeeded and records it all', async () => {
    const { ns, start } = await setup('auto');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', {
        containers: { app: WEB, sidecar: SIDECAR },
        initContainers: { migrate: WEB },
      }),
    });
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('other', { containers: { app: 'ghcr.io/acme/other:1.0' } }),
    });
    await deploymentRolledOut(clients, ns, 'web');
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    await start();

    // Before the poller's first check the controller already reports the workloads it found.
    const found = await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.workloadCount === 1,
      { what: 'WatchedImage status with the workload' },
    );
    expect(found.status?.workloads).toEqual([
      { kind: 'Deployment', name: 'web', containers: ['migrate', 'app'] },
    ]);
    expect(found.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'Unknown',
      reason: 'AwaitingFirstCheck',
    });

    // The poller writes Resolved=True with its own field manager; the controller's Ready follows.
    const baseline = testDigest(1);
    await writeResolved(clients, wi, baseline);
    const ready = await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.conditions?.find((c) => c.type === 'Ready')?.status === 'True',
      { what: 'WatchedImage Ready=True' },
    );
    expect(ready.status?.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('WorkloadsFound');
    // Both writers' conditions and fields survive each other's server-side applies.
    expect(ready.status?.conditions?.find((c) => c.type === 'Resolved')?.status).toBe('True');
    expect(ready.status?.digest).toBe(baseline);

    const toDigest = testDigest(2);
    const iu = await createImageUpdate(clients, wi, toDigest, { fromDigest: baseline });
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');

    const pinned = `${WEB}@${toDigest}`;
    const web = await readDeployment(ns, 'web');
    expect(imagesOf(web)).toEqual({ migrate: pinned, app: pinned, sidecar: SIDECAR });
    expect(web.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBe(iu.metadata.name);
    expect(web.metadata?.generation).toBe(2);
    // Succeeded means the rollout really finished: every replica runs the new template.
    expect(web.status).toMatchObject({ updatedReplicas: 2, availableReplicas: 2, replicas: 2 });

    const status = done.status!;
    expect(status.workloads?.map((r) => [r.kind, r.name, r.container, r.state]).sort()).toEqual([
      ['Deployment', 'web', 'app', 'RolledOut'],
      ['Deployment', 'web', 'migrate', 'RolledOut'],
    ]);
    expect(result(status, 'Deployment', 'web', 'app')).toMatchObject({
      previousImage: WEB,
      newImage: pinned,
    });
    expect(status.progress).toBe('2/2');
    expect(status.appliedTime).toBeTruthy();
    expect(status.completedTime).toBeTruthy();
    expect(status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'True' });

    // Untouched: the other Deployment.
    expect(await generationOf(ns, 'other')).toBe(1);

    await until(
      () => eventsIn(clients, ns),
      (events) => events.some((e) => e.kind === 'ImageUpdate' && e.reason === 'Succeeded'),
      { what: 'the Succeeded Event' },
    );
    const onUpdate = await eventsIn(clients, ns, { kind: 'ImageUpdate', name: iu.metadata.name });
    expect(onUpdate.map((e) => e.reason)).toEqual(expect.arrayContaining(['Applying', 'Succeeded']));
    const onDeployment = (await eventsIn(clients, ns, { kind: 'Deployment', name: 'web' })).filter(
      (e) => e.component === 'kubewatcher-controller',
    );
    expect(onDeployment.map((e) => e.reason)).toEqual(
      expect.arrayContaining(['ImagePinned', 'RolloutSucceeded']),
    );
    expect(onDeployment.every((e) => e.type === 'Normal')).toBe(true);

    const after = await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.latestUpdate === iu.metadata.name,
      { what: 'WatchedImage latestUpdate' },
    );
    expect(after.status).toMatchObject({ workloadCount: 1, latestUpdate: iu.metadata.name });
    expect(after.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
  });

  it('applies the update of a WatchedImage with the longest name, and records its Events', async () => {
    // 253 characters, the longest object name: the ImageUpdate's name is cut to fit, and the Events'
    // generated names (the involved object's name and a dot) are longer than a name may be.
    const name = `web-${'x'.repeat(59)}.${'y'.repeat(63)}.${'z'.repeat(63)}.${'w'.repeat(61)}`;
    const container = 'c'.repeat(63);
    const { ns, start } = await setup('longest');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { [container]: WEB }, replicas: 1 }),
    });
    const wi = await createWatchedImage(clients, ns, name, { image: WEB });
    await writeResolved(clients, wi, testDigest(1));
    await start();
    const toDigest = testDigest(2);
    const iu = await createImageUpdate(clients, wi, toDigest);
    expect(iu.metadata.name.length).toBeLessThanOrEqual(253);
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(imagesOf(await readDeployment(ns, 'web'))).toEqual({ [container]: `${WEB}@${toDigest}` });
    const events = await until(
      () => eventsIn(clients, ns, { kind: 'ImageUpdate', name: iu.metadata.name }),
      (e) => e.some((x) => x.reason === 'Succeeded'),
      { what: 'the Succeeded Event on the ImageUpdate' },
    );
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['Applying', 'Succeeded']));
  });

  it('a patch refused with a long, hostile message: Failed with a bounded, clean message and a Warning Event', async () => {
    // An admission policy refuses the patch, its message taken from the workload (a tenant's text):
    // four times the bound, multi-byte, with a bidirectional override and a NUL. (The API server drops
    // a policy message over 5 KiB for its own fallback; longer texts are the unit tests' to cover.)
    const { ns, start } = await setup('refused');
    const hostile = `${'é'.repeat(1_200)}\u202e\u0000${'z'.repeat(2_000)}`;
    const policy = `kubewatcher-test-refuse-${ns}`;
    const admission = clients.kc.makeApiClient(AdmissionregistrationV1Api);
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name: policy },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [
              {
                apiGroups: ['apps'],
                apiVersions: ['v1'],
                operations: ['UPDATE'],
                resources: ['deployments'],
              },
            ],
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
          },
          validations: [
            { expression: 'false', messageExpression: "string(object.metadata.annotations['hostile'])" },
          ],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: { metadata: { name: policy }, spec: { policyName: policy, validationActions: ['Deny'] } },
    });
    try {
      const body = deployment('web', { containers: { app: WEB }, replicas: 1 });
      body.metadata = { ...body.metadata, annotations: { hostile } };
      await clients.apps.createNamespacedDeployment({ namespace: ns, body });
      // The policy takes effect a moment after it is made: until a change is refused.
      await until(
        () =>
          clients.apps
            .patchNamespacedDeployment(
              { namespace: ns, name: 'web', body: { metadata: { labels: { probe: 'x' } } }, dryRun: 'All' },
              mergePatch,
            )
            .then(
              () => 'admitted',
              () => 'refused',
            ),
        (r) => r === 'refused',
        { what: 'the refusing policy to take effect', timeoutMs: 30_000 },
      );
      const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
      await writeResolved(clients, wi, testDigest(1));
      await start();
      const iu = await createImageUpdate(clients, wi, testDigest(2));
      const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
      expect(done.status?.phase).toBe('Failed');
      const messages = [
        ...(done.status?.workloads ?? []).map((r) => r.message ?? ''),
        ...(done.status?.conditions ?? []).map((c) => c.message ?? ''),
      ];
      expect(done.status?.workloads?.[0]).toMatchObject({ state: 'Refused' });
      expect(done.status?.workloads?.[0]?.message).toMatch(/^patch refused: .*éé/);
      const events = await until(
        () => eventsIn(clients, ns, { kind: 'Deployment', name: 'web' }),
        (e) => e.some((x) => x.reason === 'PatchFailed'),
        { what: 'the PatchFailed Event' },
      );
      for (const m of [...messages, ...events.map((e) => e.message)]) {
        expect(Buffer.byteLength(m)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
        // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them is the point
        expect(m).not.toMatch(/[\u0000-\u001f\u202a-\u202e]/);
      }
      expect(imagesOf(await readDeployment(ns, 'web'))).toEqual({ app: WEB });
    } finally {
      await admission.deleteValidatingAdmissionPolicyBinding({ name: policy }).catch(() => undefined);
      await admission.deleteValidatingAdmissionPolicy({ name: policy }).catch(() => undefined);
    }
  });

  it('rolls a StatefulSet and a DaemonSet out to Succeeded', async () => {
    const { ns, start } = await setup('kinds');
    await clients.apps.createNamespacedStatefulSet({
      namespace: ns,
      body: statefulSet('db', { containers: { db: WEB } }),
    });
    await clients.apps.createNamespacedDaemonSet({
      namespace: ns,
      body: daemonSet('agent', { containers: { agent: WEB } }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', {
      image: WEB,
      kinds: ['StatefulSet', 'DaemonSet'],
    });
    await start();

    const toDigest = testDigest(1);
    const iu = await createImageUpdate(clients, wi, toDigest);
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(done.status?.workloads?.map((r) => [r.kind, r.name, r.state]).sort()).toEqual([
      ['DaemonSet', 'agent', 'RolledOut'],
      ['StatefulSet', 'db', 'RolledOut'],
    ]);

    const sts = await clients.apps.readNamespacedStatefulSet({ namespace: ns, name: 'db' });
    const ds = await clients.apps.readNamespacedDaemonSet({ namespace: ns, name: 'agent' });
    expect(imagesOf(sts)).toEqual({ db: `${WEB}@${toDigest}` });
    expect(imagesOf(ds)).toEqual({ agent: `${WEB}@${toDigest}` });
    // Rolled out for real: the StatefulSet controller moved every pod to the new revision.
    expect(sts.status?.currentRevision).toBe(sts.status?.updateRevision);
    expect(sts.status?.updatedReplicas).toBe(2);
    expect(ds.status?.updatedNumberScheduled).toBe(ds.status?.desiredNumberScheduled);
    expect(sts.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBe(iu.metadata.name);
    expect(ds.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBe(iu.metadata.name);
  });
});

describe('Manual and Observe policies', () => {
  it('Manual waits in AwaitingApproval, then applies once spec.approved is true', async () => {
    const { ns, start } = await setup('manual');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, updatePolicy: 'Manual' });
    await start();

    const toDigest = testDigest(1);
    const iu = await createImageUpdate(clients, wi, toDigest);
    const waiting = await waitForPhase(clients, ns, iu.metadata.name, 'AwaitingApproval');
    expect(waiting.status?.workloads ?? []).toEqual([]);
    await until(
      () => eventsIn(clients, ns, { kind: 'ImageUpdate', name: iu.metadata.name }),
      (events) => events.some((e) => e.reason === 'AwaitingApproval'),
      { what: 'the AwaitingApproval Event' },
    );
    // Waiting means untouched.
    const before = await readDeployment(ns, 'web');
    expect(before.metadata?.generation).toBe(1);
    expect(imagesOf(before)).toEqual({ app: WEB });
    expect(before.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBeUndefined();

    await approve(clients, ns, iu.metadata.name);
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    const after = await readDeployment(ns, 'web');
    expect(imagesOf(after)).toEqual({ app: `${WEB}@${toDigest}` });
    expect(after.metadata?.generation).toBe(2);
  });

  it('Observe records the update (Observed) and never patches', async () => {
    const { ns, start } = await setup('observe');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, updatePolicy: 'Observe' });
    const c = await start();

    const iu = await createImageUpdate(clients, wi, testDigest(1));
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Observed', 'Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Observed');
    expect(done.status?.workloads?.map((r) => [r.name, r.container, r.state])).toEqual([
      ['web', 'app', 'Skipped'],
    ]);
    const web = await readDeployment(ns, 'web');
    expect(web.metadata?.generation).toBe(1);
    expect(imagesOf(web)).toEqual({ app: WEB });
    expect(web.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBeUndefined();
    expect(await c.metric('kubewatcher_updates_applied_total')).toBe(0);
  });
});

describe('rollouts that fail', () => {
  it('a rollout that cannot progress ends Failed with the reason and a Warning Event', async () => {
    const { ns, start } = await setup('stuck');
    // No node has this label: the new pods stay Pending and the Deployment controller gives up after 10 s.
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', {
        containers: { app: WEB },
        nodeSelector: { 'kubewatcher.io/no-such-node': 'true' },
        progressDeadlineSeconds: 10,
      }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    await start();

    const iu = await createImageUpdate(clients, wi, testDigest(1));
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed'], 120_000);
    expect(done.status?.phase).toBe('Failed');

    // The Deployment controller of kube-controller-manager, not a timer of ours, declared it.
    const web = await readDeployment(ns, 'web');
    const progressing = web.status?.conditions?.find((c) => c.type === 'Progressing');
    expect(progressing).toMatchObject({ status: 'False', reason: 'ProgressDeadlineExceeded' });
    expect(web.metadata?.generation).toBe(2);

    const r = result(done.status, 'Deployment', 'web', 'app');
    expect(r?.state).toBe('Failed');
    expect(r?.message).toContain('ProgressDeadlineExceeded');
    const ready = done.status?.conditions?.find((c) => c.type === 'Ready');
    expect(ready).toMatchObject({ status: 'False', reason: 'RolloutFailed' });
    expect(ready?.message).toContain('ProgressDeadlineExceeded');

    const warnings = await until(
      () => eventsIn(clients, ns),
      (events) =>
        events.filter((e) => e.type === 'Warning' && e.component === 'kubewatcher-controller').length >= 2,
      { what: 'Warning Events on the Deployment and the ImageUpdate' },
    );
    const ours = warnings.filter((e) => e.type === 'Warning' && e.component === 'kubewatcher-controller');
    expect(ours).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ kind: 'Deployment', name: 'web', reason: 'RolloutFailed' }),
        expect.objectContaining({ kind: 'ImageUpdate', name: iu.metadata.name, reason: 'Failed' }),
      ]),
    );
  });
});

describe('supersession, filters and history', () => {
  it('a newer ImageUpdate supersedes an unapplied older one', async () => {
    const { ns, start } = await setup('supersede');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, updatePolicy: 'Manual' });
    await start();

    const older = await createImageUpdate(clients, wi, testDigest(1));
    await waitForPhase(clients, ns, older.metadata.name, 'AwaitingApproval');
    // creationTimestamp has one-second resolution: make the newer one visibly newer.
    await until(
      () => Date.now(),
      (now) => now >= Date.parse(String(older.metadata.creationTimestamp)) + 1100,
      { what: 'the next second' },
    );
    const newerDigest = testDigest(2);
    const newer = await createImageUpdate(clients, wi, newerDigest);

    const superseded = await waitForPhase(clients, ns, older.metadata.name, [
      'Superseded',
      'Succeeded',
      'Failed',
    ]);
    expect(superseded.status).toMatchObject({ phase: 'Superseded', supersededBy: newer.metadata.name });
    await waitForPhase(clients, ns, newer.metadata.name, 'AwaitingApproval');

    // Approving the superseded one changes nothing: it is finished.
    await approve(clients, ns, older.metadata.name);
    await approve(clients, ns, newer.metadata.name);
    const done = await waitForPhase(clients, ns, newer.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect((await getImageUpdate(clients, ns, older.metadata.name)).status?.phase).toBe('Superseded');
    const web = await readDeployment(ns, 'web');
    expect(imagesOf(web)).toEqual({ app: `${WEB}@${newerDigest}` });
    expect(web.metadata?.generation).toBe(2);
    expect(web.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBe(newer.metadata.name);
  });

  it('workloadSelector, containers and kinds leave non-matching workloads untouched', async () => {
    const { ns, start } = await setup('filters');
    const labels = { tier: 'frontend' };
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('selected', { containers: { app: WEB, helper: WEB }, labels }),
    });
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('unlabelled', { containers: { app: WEB } }),
    });
    await clients.apps.createNamespacedStatefulSet({
      namespace: ns,
      body: statefulSet('other-kind', { containers: { app: WEB }, labels }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', {
      image: WEB,
      workloadSelector: { matchLabels: labels },
      containers: ['app'],
    });
    await start();

    const toDigest = testDigest(1);
    const iu = await createImageUpdate(clients, wi, toDigest);
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(done.status?.workloads?.map((r) => [r.kind, r.name, r.container, r.state])).toEqual([
      ['Deployment', 'selected', 'app', 'RolledOut'],
    ]);

    expect(imagesOf(await readDeployment(ns, 'selected'))).toEqual({
      app: `${WEB}@${toDigest}`,
      helper: WEB,
    });
    const unlabelled = await readDeployment(ns, 'unlabelled');
    expect(unlabelled.metadata?.generation).toBe(1);
    expect(imagesOf(unlabelled)).toEqual({ app: WEB });
    const sts = await clients.apps.readNamespacedStatefulSet({ namespace: ns, name: 'other-kind' });
    expect(sts.metadata?.generation).toBe(1);
    expect(imagesOf(sts)).toEqual({ app: WEB });

    const status = await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.latestUpdate === iu.metadata.name,
      { what: 'WatchedImage status' },
    );
    expect(status.status?.workloads).toEqual([{ kind: 'Deployment', name: 'selected', containers: ['app'] }]);
  });

  it('historyLimit prunes the oldest finished ImageUpdates', async () => {
    const { ns, start } = await setup('history');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    // Observe: each update finishes at once, so every one is prunable.
    const wi = await createWatchedImage(clients, ns, 'web', {
      image: WEB,
      updatePolicy: 'Observe',
      historyLimit: 2,
    });
    await start();

    const created: ImageUpdate[] = [];
    for (let i = 1; i <= 4; i++) {
      const iu = await createImageUpdate(clients, wi, testDigest(i));
      created.push(iu);
      await waitForPhase(clients, ns, iu.metadata.name, 'Observed');
    }
    const kept = await until(
      () => listImageUpdates(clients, ns),
      (items) => items.length === 2,
      { what: 'two ImageUpdates left' },
    );
    expect(kept.map((u) => u.metadata.name).sort()).toEqual(
      created
        .slice(2)
        .map((u) => u.metadata.name)
        .sort(),
    );
    const status = await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.latestUpdate === created[3]!.metadata.name,
      { what: 'latestUpdate' },
    );
    expect(status.status?.latestUpdate).toBe(created[3]!.metadata.name);
  });
});

describe('workloads changed by someone else', () => {
  it('reports a workload deleted or changed before it was patched as Skipped, and leaves it alone', async () => {
    const { ns, start } = await setup('between');
    for (const name of ['kept', 'deleted', 'changed']) {
      await clients.apps.createNamespacedDeployment({
        namespace: ns,
        body: deployment(name, { containers: { app: WEB } }),
      });
    }
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    const c = await start();
    await until(
      () => c.controller.caches.workloads.Deployment.listByNamespace(ns).length,
      (n) => n === 3,
      { what: 'the cache to hold the Deployments' },
    );

    // Someone else acts between the plan (results recorded, phase Applying) and the patches: the
    // writer of the Applying status does it, and waits until the controller's cache has seen it.
    const someoneElse = 'ghcr.io/acme/web:hotfix';
    const original = ControllerWriter.prototype.applyUpdateStatus;
    let interfered = false;
    vi.spyOn(ControllerWriter.prototype, 'applyUpdateStatus').mockImplementation(async function (
      this: ControllerWriter,
      update,
      status,
    ) {
      await original.call(this, update, status);
      if (interfered || status.phase !== 'Applying') return;
      interfered = true;
      await clients.apps.deleteNamespacedDeployment({ namespace: ns, name: 'deleted' });
      await clients.apps.patchNamespacedDeployment({
        namespace: ns,
        name: 'changed',
        body: [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: someoneElse }],
      });
      const cache = c.controller.caches.workloads.Deployment;
      await until(
        () => [cache.get(`${ns}/deleted`), cache.get(`${ns}/changed`)] as const,
        ([deleted, changed]) =>
          deleted === undefined &&
          changed !== undefined &&
          podSpecOf({ ...changed, kind: 'Deployment' })?.containers?.[0]?.image === someoneElse,
        { what: 'the cache to see the changes' },
      );
    });

    const toDigest = testDigest(1);
    const iu = await createImageUpdate(clients, wi, toDigest);
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(interfered).toBe(true);
    expect(done.status?.phase).toBe('Succeeded');
    expect(result(done.status, 'Deployment', 'kept', 'app')?.state).toBe('RolledOut');
    expect(result(done.status, 'Deployment', 'deleted', 'app')).toMatchObject({
      state: 'Skipped',
      message: expect.stringContaining('deleted'),
    });
    expect(result(done.status, 'Deployment', 'changed', 'app')).toMatchObject({
      state: 'Skipped',
      message: expect.stringContaining('changed by someone else'),
    });
    expect(done.status?.progress).toBe('1/1');

    const changed = await readDeployment(ns, 'changed');
    expect(imagesOf(changed)).toEqual({ app: someoneElse });
    expect(changed.metadata?.generation).toBe(2); // the other party's change only
    expect(changed.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBeUndefined();
    expect(imagesOf(await readDeployment(ns, 'kept'))).toEqual({ app: `${WEB}@${toDigest}` });
  });

  it('reports a workload deleted or changed during its rollout as Skipped, and does not fight over it', async () => {
    const { ns, start } = await setup('during');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('kept', { containers: { app: WEB } }),
    });
    // These two cannot finish rolling out (no node matches), so they stay RollingOut until someone acts.
    for (const name of ['deleted', 'changed']) {
      await clients.apps.createNamespacedDeployment({
        namespace: ns,
        body: deployment(name, {
          containers: { app: WEB },
          nodeSelector: { 'kubewatcher.io/no-such-node': 'true' },
          progressDeadlineSeconds: 600,
        }),
      });
    }
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    await start();

    const toDigest = testDigest(1);
    const iu = await createImageUpdate(clients, wi, toDigest);
    const rolling = await until(
      () => getImageUpdate(clients, ns, iu.metadata.name),
      (u) =>
        u.status?.phase === 'RollingOut' &&
        result(u.status, 'Deployment', 'kept', 'app')?.state === 'RolledOut',
      { what: 'kept rolled out, the others still rolling' },
    );
    expect(result(rolling.status, 'Deployment', 'changed', 'app')?.state).toBe('Patched');

    const someoneElse = 'ghcr.io/acme/web:rollback';
    await clients.apps.deleteNamespacedDeployment({ namespace: ns, name: 'deleted' });
    await clients.apps.patchNamespacedDeployment({
      namespace: ns,
      name: 'changed',
      body: [{ op: 'replace', path: '/spec/template/spec/containers/0/image', value: someoneElse }],
    });

    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(result(done.status, 'Deployment', 'deleted', 'app')).toMatchObject({
      state: 'Skipped',
      message: expect.stringContaining('deleted'),
    });
    expect(result(done.status, 'Deployment', 'changed', 'app')).toMatchObject({
      state: 'Skipped',
      message: expect.stringContaining(someoneElse),
    });
    const changed = await readDeployment(ns, 'changed');
    expect(imagesOf(changed)).toEqual({ app: someoneElse });
    expect(changed.metadata?.generation).toBe(3); // our patch, then theirs; no patch back
  });
});

describe('conflicts', () => {
  it('retries a status write that conflicts with another writer (409) and still succeeds', async () => {
    const { ns, start } = await setup('conflict');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    const c = await start();

    // Between the controller's cache read and its status write, someone else changes the ImageUpdate
    // (an annotation), once before the Applying write and once before the write after the patches.
    const original = ControllerWriter.prototype.applyUpdateStatus;
    const interfered: string[] = [];
    const conflicts: number[] = [];
    vi.spyOn(ControllerWriter.prototype, 'applyUpdateStatus').mockImplementation(async function (
      this: ControllerWriter,
      update,
      status,
    ) {
      const phase = status.phase ?? '';
      if (
        update.metadata.namespace === ns &&
        ['Applying', 'RollingOut'].includes(phase) &&
        !interfered.includes(phase)
      ) {
        interfered.push(phase);
        await clients.custom.patchNamespacedCustomObject(
          {
            ...IU,
            namespace: ns,
            name: update.metadata.name,
            body: {
              metadata: { annotations: { [`example.com/touched-before-${phase.toLowerCase()}`]: 'yes' } },
            },
          },
          mergePatch,
        );
      }
      try {
        return await original.call(this, update, status);
      } catch (err) {
        if ((err as { code?: number }).code === 409) conflicts.push(409);
        throw err;
      }
    });

    const toDigest = testDigest(1);
    const iu = await createImageUpdate(clients, wi, toDigest);
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed']);
    expect(done.status?.phase).toBe('Succeeded');
    expect(interfered).toEqual(['Applying', 'RollingOut']);
    expect(conflicts.length).toBeGreaterThanOrEqual(2);
    expect(
      await c.metric('kubewatcher_reconcile_total', { controller: 'imageupdate', result: 'conflict' }),
    ).toBeGreaterThanOrEqual(2);
    // The other writer's change is kept, and the retry after the patches patched nothing twice.
    expect(Object.keys(done.metadata.annotations ?? {})).toEqual(
      expect.arrayContaining([
        'example.com/touched-before-applying',
        'example.com/touched-before-rollingout',
      ]),
    );
    const web: V1Deployment = await readDeployment(ns, 'web');
    expect(web.metadata?.generation).toBe(2);
    expect(imagesOf(web)).toEqual({ app: `${WEB}@${toDigest}` });
  });
});
