import type { ImageUpdate } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { A, B, C, deployment, NOW, update, watched } from '../test/plan-fixtures.ts';
import { PATCH_REFUSED, pinImage, planUpdate, type UpdateInput } from './plan-update.ts';

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

  it('Manual: a rejection is recorded on the Approved condition and nothing is applied', () => {
    const manual = { watchedImage: watched({ updatePolicy: 'Manual' }) };
    const rejected = update('web-b', B);
    rejected.metadata.annotations = {
      'kubewatcher.io/decision': 'rejected',
      'kubewatcher.io/decided-by': 'alice',
    };
    const plan = planUpdate(input(rejected, manual));
    expect(plan.status.phase).toBe('AwaitingApproval');
    expect(plan.patches).toEqual([]);
    expect(plan.status.conditions?.find((c) => c.type === 'Approved')).toMatchObject({
      status: 'False',
      reason: 'Rejected',
      message: 'rejected by alice',
    });
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
