import type { ImageUpdate, WatchedImage } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { PATCH_REFUSED, pinImage, planUpdate, type UpdateInput, type Workload } from './plan-update.ts';
import { planWatchedImage } from './plan-watched-image.ts';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha256:${'c'.repeat(64)}`;
const NOW = new Date('2026-11-25T12:00:00Z');

function watched(spec: Partial<WatchedImage['spec']> = {}): WatchedImage {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'WatchedImage',
    metadata: { name: 'web', namespace: 'apps', uid: 'wi-uid', generation: 1 },
    spec: {
      image: 'nginx:1.27',
      kinds: ['Deployment'],
      updatePolicy: 'Auto',
      interval: '5m',
      historyLimit: 10,
      ...spec,
    },
  } as WatchedImage;
}

function update(
  name: string,
  to: string,
  status?: ImageUpdate['status'],
  extra: Partial<ImageUpdate['spec']> = {},
  created = '2026-11-25T11:00:00Z',
): ImageUpdate {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'ImageUpdate',
    metadata: { name, namespace: 'apps', generation: 1, creationTimestamp: created },
    spec: {
      watchedImage: 'web',
      image: 'nginx:1.27',
      fromDigest: A,
      toDigest: to,
      approved: false,
      ...extra,
    },
    ...(status ? { status } : {}),
  } as ImageUpdate;
}

function deployment(
  name: string,
  image: string,
  status: Partial<NonNullable<Workload['status']>> = {},
  generation = 1,
): Workload {
  return {
    kind: 'Deployment',
    metadata: { name, namespace: 'apps', generation, labels: { app: name } },
    spec: {
      replicas: 2,
      template: {
        spec: {
          containers: [
            { name: 'app', image },
            { name: 'sidecar', image: 'busybox:1' },
          ],
        },
      },
    },
    status: {
      observedGeneration: generation,
      replicas: 2,
      updatedReplicas: 2,
      availableReplicas: 2,
      ...status,
    },
  } as Workload;
}

const input = (u: ImageUpdate, over: Partial<UpdateInput> = {}): UpdateInput => ({
  update: u,
  watchedImage: watched(),
  siblings: [],
  workloads: [deployment('front', 'nginx:1.27'), deployment('other', 'redis:7')],
  now: NOW,
  rolloutTimeoutMs: 600_000,
  ...over,
});

describe('pinImage', () => {
  it.each([
    ['nginx:1.27', `nginx:1.27@${B}`],
    [`nginx:1.27@${A}`, `nginx:1.27@${B}`],
    ['127.0.0.1:5000/acme/web:stable', `127.0.0.1:5000/acme/web:stable@${B}`],
  ])('%s', (current, expected) => expect(pinImage(current, B)).toBe(expected));
});

describe('planUpdate', () => {
  it('Auto: a new update records its plan and moves to Applying, patching nothing yet', () => {
    const plan = planUpdate(input(update('web-b', B)));
    expect(plan.status.phase).toBe('Applying');
    expect(plan.patches).toEqual([]);
    expect(plan.status.workloads).toEqual([
      {
        kind: 'Deployment',
        name: 'front',
        container: 'app',
        previousImage: 'nginx:1.27',
        newImage: `nginx:1.27@${B}`,
        state: 'Pending',
        message: '',
      },
    ]);
    expect(plan.status.appliedTime).toBe(NOW.toISOString());
    expect(plan.status.to).toBe('b'.repeat(12));
    expect(plan.status.from).toBe('a'.repeat(12));
  });

  it('Applying: patches only the matched container of the matched workload', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const plan = planUpdate(input(update('web-b', B, applying)));
    expect(plan.patches).toEqual([
      {
        kind: 'Deployment',
        name: 'front',
        containers: [{ name: 'app', image: `nginx:1.27@${B}` }],
        initContainers: [],
      },
    ]);
    expect(plan.status.phase).toBe('RollingOut');
    expect(plan.events.some((e) => e.reason === 'ImagePinned')).toBe(true);
  });

  it('Applying again after a crash: a container already on the new image is not patched twice', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const plan = planUpdate(
      input(update('web-b', B, applying), { workloads: [deployment('front', `nginx:1.27@${B}`, {}, 2)] }),
    );
    expect(plan.patches).toEqual([]);
    expect(plan.status.workloads?.[0]?.state).toBe('Patched');
  });

  it('Applying: a workload someone moved to another tag is reported and left alone', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const plan = planUpdate(
      input(update('web-b', B, applying), { workloads: [deployment('front', 'nginx:1.28')] }),
    );
    expect(plan.patches).toEqual([]);
    expect(plan.status.workloads?.[0]).toMatchObject({ state: 'Skipped' });
    expect(plan.status.workloads?.[0]?.message).toContain('changed by someone else');
  });

  it('RollingOut → Succeeded when the Deployment finished', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const rolling = planUpdate(input(update('web-b', B, applying))).status;
    const plan = planUpdate(
      input(update('web-b', B, rolling), { workloads: [deployment('front', `nginx:1.27@${B}`, {}, 2)] }),
    );
    expect(plan.status.phase).toBe('Succeeded');
    expect(plan.status.progress).toBe('1/1');
    expect(plan.status.completedTime).toBe(NOW.toISOString());
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'RolledOut',
    });
  });

  it('RollingOut stays while replicas are updating', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const rolling = planUpdate(input(update('web-b', B, applying))).status;
    const plan = planUpdate(
      input(update('web-b', B, rolling), {
        workloads: [deployment('front', `nginx:1.27@${B}`, { updatedReplicas: 1 }, 2)],
      }),
    );
    expect(plan.status.phase).toBe('RollingOut');
    expect(plan.requeueAfterMs).toBeGreaterThan(0);
  });

  it('RollingOut → Failed on ProgressDeadlineExceeded, with the reason', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const rolling = planUpdate(input(update('web-b', B, applying))).status;
    const stuck = deployment(
      'front',
      `nginx:1.27@${B}`,
      {
        updatedReplicas: 1,
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'ProgressDeadlineExceeded',
            message: 'ReplicaSet "front-x" has timed out progressing.',
          },
        ],
      },
      2,
    );
    const plan = planUpdate(input(update('web-b', B, rolling), { workloads: [stuck] }));
    expect(plan.status.phase).toBe('Failed');
    expect(plan.status.workloads?.[0]?.message).toContain('ProgressDeadlineExceeded');
    expect(plan.events.some((e) => e.type === 'Warning' && e.reason === 'RolloutFailed')).toBe(true);
  });

  it('Manual: waits for approval, then applies', () => {
    const manual = { watchedImage: watched({ updatePolicy: 'Manual' }) };
    const waiting = planUpdate(input(update('web-b', B), manual));
    expect(waiting.status.phase).toBe('AwaitingApproval');
    expect(waiting.events.map((e) => e.reason)).toEqual(['AwaitingApproval']);
    const again = planUpdate(input(update('web-b', B, waiting.status), manual));
    expect(again.events).toEqual([]);
    const approved = planUpdate(input(update('web-b', B, waiting.status, { approved: true }), manual));
    expect(approved.status.phase).toBe('Applying');
  });

  it('Observe: records and never patches', () => {
    const plan = planUpdate(
      input(update('web-b', B), { watchedImage: watched({ updatePolicy: 'Observe' }) }),
    );
    expect(plan.status.phase).toBe('Observed');
    expect(plan.patches).toEqual([]);
    expect(plan.status.workloads?.[0]?.state).toBe('Skipped');
  });

  it('a newer update supersedes an unapplied older one', () => {
    const newer = update('web-c', C, undefined, {}, '2026-11-25T11:05:00Z');
    const plan = planUpdate(input(update('web-b', B), { siblings: [newer] }));
    expect(plan.status.phase).toBe('Superseded');
    expect(plan.status.supersededBy).toBe('web-c');
  });

  it('an older update does not supersede a newer one', () => {
    const older = update('web-a', A, undefined, {}, '2026-11-25T10:00:00Z');
    expect(planUpdate(input(update('web-b', B), { siblings: [older] })).status.phase).toBe('Applying');
  });

  it('no matching workload: Succeeded at once with the reason', () => {
    const plan = planUpdate(input(update('web-b', B), { workloads: [] }));
    expect(plan.status.phase).toBe('Succeeded');
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'NoWorkloads',
    });
    expect(plan.status.conditions?.find((c) => c.type === 'Approved')).toMatchObject({
      status: 'True',
      reason: 'AutoApproved',
    });
  });

  it('the WatchedImage is gone: Failed', () => {
    expect(planUpdate(input(update('web-b', B), { watchedImage: undefined })).status.phase).toBe('Failed');
  });

  it('a terminal update is left as it is', () => {
    const done = planUpdate(input(update('web-b', B), { workloads: [] })).status;
    const plan = planUpdate(
      input(update('web-b', B, done), {
        siblings: [update('web-c', C, undefined, {}, '2026-11-25T11:05:00Z')],
      }),
    );
    expect(plan.status.phase).toBe('Succeeded');
    expect(plan.events).toEqual([]);
  });
});

describe('planWatchedImage', () => {
  it('reports the matched workloads and Ready', () => {
    const wi = {
      ...watched(),
      status: {
        conditions: [
          {
            type: 'Resolved',
            status: 'True',
            reason: 'Resolved',
            message: '',
            lastTransitionTime: NOW.toISOString(),
          },
        ],
      },
    } as WatchedImage;
    const plan = planWatchedImage(
      wi,
      [deployment('front', 'nginx:1.27'), deployment('other', 'redis:7')],
      [],
      NOW,
    );
    expect(plan.status.workloads).toEqual([{ kind: 'Deployment', name: 'front', containers: ['app'] }]);
    expect(plan.status.workloadCount).toBe(1);
    expect(plan.status.conditions[0]).toMatchObject({
      type: 'Ready',
      status: 'True',
      reason: 'WorkloadsFound',
    });
  });

  it("summarises the poller's failure in Ready", () => {
    const wi = {
      ...watched(),
      status: {
        conditions: [
          {
            type: 'Resolved',
            status: 'False',
            reason: 'Unauthorized',
            message: 'add a pullSecret',
            lastTransitionTime: NOW.toISOString(),
          },
        ],
      },
    } as WatchedImage;
    const plan = planWatchedImage(wi, [deployment('front', 'nginx:1.27')], [], NOW);
    expect(plan.status.conditions[0]).toMatchObject({
      status: 'False',
      reason: 'Unauthorized',
      message: 'add a pullSecret',
    });
  });

  it('prunes finished updates beyond historyLimit, never unfinished ones', () => {
    const updates = [
      update('u1', B, { phase: 'Succeeded' }, {}, '2026-11-25T10:00:00Z'),
      update('u2', B, { phase: 'RollingOut' }, {}, '2026-11-25T10:01:00Z'),
      update('u3', B, { phase: 'Failed' }, {}, '2026-11-25T10:02:00Z'),
      update('u4', B, { phase: 'Succeeded' }, {}, '2026-11-25T10:03:00Z'),
    ];
    const plan = planWatchedImage(watched({ historyLimit: 1 }), [], updates, NOW);
    expect(plan.prune).toEqual(['u1', 'u3']);
    expect(plan.status.latestUpdate).toBe('u4');
  });

  it('no workload: Ready False NoWorkloads', () => {
    const plan = planWatchedImage(watched(), [], [], NOW);
    expect(plan.status.conditions[0]).toMatchObject({ status: 'False', reason: 'NoWorkloads' });
  });
});

describe('Approved condition', () => {
  it.each([
    ['Auto', false, 'True', 'AutoApproved'],
    ['Manual', false, 'False', 'AwaitingApproval'],
    ['Manual', true, 'True', 'ManuallyApproved'],
    ['Observe', false, 'False', 'ObserveOnly'],
  ] as const)('%s, approved=%s → %s %s', (policy, approved, status, reason) => {
    const plan = planUpdate(
      input(update('web-b', B, undefined, { approved }), { watchedImage: watched({ updatePolicy: policy }) }),
    );
    expect(plan.status.conditions?.find((c) => c.type === 'Approved')).toMatchObject({ status, reason });
  });

  it('a refused patch fails the update with PatchFailed', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const rolling = planUpdate(input(update('web-b', B, applying))).status;
    const refused = {
      ...rolling,
      workloads: rolling.workloads?.map((r) => ({
        ...r,
        state: 'Failed' as const,
        message: `${PATCH_REFUSED} admission webhook denied`,
      })),
    };
    const plan = planUpdate(input(update('web-b', B, refused)));
    expect(plan.status.phase).toBe('Failed');
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'PatchFailed',
    });
  });
});
