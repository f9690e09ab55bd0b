import { type ImageUpdate, podSpecOf } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { A, B, C, deployment, NOW, update, watched } from '../test/plan-fixtures.ts';
import { workloadPatchBody } from './cluster.ts';
import {
  type PatchAnswer,
  pinImage,
  planPatchAnswers,
  planUpdate,
  type UpdateInput,
  type Workload,
} from './plan-update.ts';

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
});

describe("ownership: only its WatchedImage's update is applied", () => {
  const other = { apiVersion: 'kubewatcher.io/v1alpha1', kind: 'WatchedImage', name: 'web', uid: 'old-uid' };
  it.each([
    ['owned, toDigest recorded', {}, watched(), 'Applying', 'Applying'],
    ['no owner reference', { ownerReferences: [] }, watched(), 'Failed', 'NotOwned'],
    [
      'owner is an earlier WatchedImage of the same name',
      { ownerReferences: [other] },
      watched(),
      'Failed',
      'NotOwned',
    ],
    [
      'the WatchedImage watches another image now',
      {},
      watched({ image: 'nginx:1.28' }),
      'Failed',
      'ImageChanged',
    ],
    ['toDigest is not the recorded digest', {}, watched({}, { digest: C }), 'Failed', 'DigestMismatch'],
    [
      'toDigest is not the digest recorded a minute ago, whose update is not in the cache',
      {},
      watched({}, { digest: C, lastChangedTime: '2026-11-25T11:59:00Z' }),
      'Failed',
      'DigestMismatch',
    ],
    [
      'a newer digest recorded just now, whose update the cache has not seen yet',
      {},
      watched({}, { digest: C, lastChangedTime: '2026-11-25T11:59:30Z' }),
      'Pending',
      'WaitingForNewerUpdate',
    ],
    [
      'the same, recorded by a poller that writes only lastCheckedTime',
      {},
      watched({}, { digest: C, lastCheckedTime: '2026-11-25T11:59:30Z' }),
      'Pending',
      'WaitingForNewerUpdate',
    ],
    [
      'recorded digest still fromDigest: the poller writes it next',
      {},
      watched({}, { digest: A }),
      'Pending',
      'WaitingForBaseline',
    ],
    ['no digest recorded yet', {}, watched({}, {}), 'Pending', 'WaitingForBaseline'],
  ] as const)('%s → %s %s', (_, metadata, wi, phase, reason) => {
    const u = update('web-b', B, undefined, { approved: true });
    Object.assign(u.metadata, metadata);
    const plan = planUpdate(input(u, { watchedImage: wi }));
    expect(plan.status.phase).toBe(phase);
    expect(plan.patches).toEqual([]);
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe(reason);
  });

  it('a digest recorded just now whose update the cache holds (the tag moved back): Failed at once', () => {
    const earlier = update('web-c', C, { phase: 'Succeeded' }, {}, '2026-11-25T10:00:00Z');
    const plan = planUpdate(
      input(update('web-b', B), {
        watchedImage: watched({}, { digest: C, lastChangedTime: '2026-11-25T11:59:30Z' }),
        siblings: [earlier],
      }),
    );
    expect(plan.status.phase).toBe('Failed');
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('DigestMismatch');
  });

  it('approved while Manual after its WatchedImage was re-created: Failed, nothing patched', () => {
    const manual = watched({ updatePolicy: 'Manual' });
    const waiting = planUpdate(input(update('web-b', B), { watchedImage: manual })).status;
    const recreated = { ...manual, metadata: { ...manual.metadata, uid: 'new-uid' } };
    const plan = planUpdate(
      input(update('web-b', B, waiting, { approved: true }), { watchedImage: recreated }),
    );
    expect(plan.status.phase).toBe('Failed');
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('NotOwned');
  });

  it('an unapplied update whose WatchedImage moved on to a newer update is Superseded, not failed', () => {
    const newer = update('web-c', C, undefined, {}, '2026-11-25T11:05:00Z');
    const plan = planUpdate(
      input(update('web-b', B), { siblings: [newer], watchedImage: watched({}, { digest: C }) }),
    );
    expect(plan.status.phase).toBe('Superseded');
  });

  it('Applying keeps the digest it started with when the poller has seen a newer one', () => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const plan = planUpdate(
      input(update('web-b', B, applying), { watchedImage: watched({}, { digest: C }) }),
    );
    expect(plan.status.phase).toBe('RollingOut');
    expect(plan.patches).toHaveLength(1);
  });
});

describe('Applying: what someone else changed is left alone', () => {
  it.each([
    ['still on the old image', 'nginx:1.27', 'Patched', 1],
    ['written another way, same image and digest', 'docker.io/library/nginx:1.27', 'Patched', 1],
    ['already on the new digest', `nginx:1.27@${B}`, 'Patched', 0],
    ['moved to another tag', 'nginx:1.28', 'Skipped', 0],
    ['an emergency pin of the same tag to another digest', `nginx:1.27@${C}`, 'Skipped', 0],
    ['an emergency pin written another way', `docker.io/library/nginx:1.27@${C}`, 'Skipped', 0],
    ['an emergency pin by digest alone, the tag dropped', `nginx@${C}`, 'Skipped', 0],
    ['an emergency pin back to the old digest', `nginx:1.27@${A}`, 'Skipped', 0],
  ] as const)('%s → %s', (_, image, state, patches) => {
    const applying = planUpdate(input(update('web-b', B))).status;
    const plan = planUpdate(input(update('web-b', B, applying), { workloads: [deployment('front', image)] }));
    expect(plan.status.workloads?.[0]?.state).toBe(state);
    expect(plan.patches).toHaveLength(patches);
  });

  it('an emergency pin of one of two matched containers: that one is left alone, the other patched', () => {
    const two = (app: string, worker: string): Workload => {
      const w = deployment('front', app);
      podSpecOf(w)!.containers = [
        { name: 'app', image: app },
        { name: 'worker', image: worker },
      ];
      return w;
    };
    const applying = planUpdate(
      input(update('web-b', B), { workloads: [two('nginx:1.27', 'nginx:1.27')] }),
    ).status;
    const plan = planUpdate(
      input(update('web-b', B, applying), { workloads: [two(`nginx:1.27@${C}`, 'nginx:1.27')] }),
    );
    const images = plan.patches.flatMap((p) => p.containers.map((c) => `${c.name}=${c.image}`));
    expect(images).not.toContain(`app=nginx:1.27@${B}`);
    expect(plan.status.workloads?.find((r) => r.container === 'app')?.state).toBe('Skipped');
  });

  it('a pinned workload pinned again by a person is left alone', () => {
    const wi = watched();
    const applying = planUpdate(
      input(update('web-b', B), { watchedImage: wi, workloads: [deployment('front', `nginx:1.27@${A}`)] }),
    ).status;
    const plan = planUpdate(
      input(update('web-b', B, applying), { workloads: [deployment('front', `nginx:1.27@${C}`)] }),
    );
    expect(plan.patches).toEqual([]);
    expect(plan.status.workloads?.[0]?.message).toContain('changed by someone else');
  });
});

describe('one update of a WatchedImage patches at a time', () => {
  // web-b moves the tag to B (created first), web-c to C (created after it): the poller has recorded C.
  const recordedC = watched({}, { digest: C });
  const older = (status?: ImageUpdate['status']) => update('web-b', B, status);
  const newer = (status?: ImageUpdate['status']) =>
    update('web-c', C, status, { fromDigest: B }, '2026-11-25T11:05:00Z');
  /** `front` on `image`, annotated as the patch of ImageUpdate `by` leaves it. */
  const patchedBy = (image: string, by: string): Workload => {
    const d = deployment('front', image);
    return { ...d, metadata: { ...d.metadata, annotations: { 'kubewatcher.io/image-update': by } } };
  };
  const olderApplying = () => planUpdate(input(older())).status;

  it.each([
    ['Pending', undefined],
    ['AwaitingApproval', { phase: 'AwaitingApproval' }],
    ['Scheduled', { phase: 'Scheduled' }],
    ['Applying', { phase: 'Applying' }],
    ['RollingOut', { phase: 'RollingOut' }],
    ['Succeeded', { phase: 'Succeeded' }],
    ['Failed', { phase: 'Failed' }],
    ['Observed', { phase: 'Observed' }],
  ] as const)(
    'an older update still Applying is Superseded by a newer one in %s, patching nothing',
    (_, status) => {
      const plan = planUpdate(
        input(older(olderApplying()), {
          watchedImage: recordedC,
          siblings: [newer(status as ImageUpdate['status'])],
        }),
      );
      expect(plan.status).toMatchObject({ phase: 'Superseded', supersededBy: 'web-c' });
      expect(plan.patches).toEqual([]);
    },
  );

  it.each([
    ['Applying', 'Pending', 'WaitingForOlderUpdate'],
    ['RollingBack', 'Pending', 'WaitingForOlderUpdate'],
    ['RollingOut', 'Applying', 'Applying'],
    ['Succeeded', 'Applying', 'Applying'],
    ['Superseded', 'Applying', 'Applying'],
  ] as const)('a newer update beside an older one %s → %s %s', (olderPhase, phase, reason) => {
    const plan = planUpdate(
      input(newer(), {
        watchedImage: recordedC,
        siblings: [older({ ...olderApplying(), phase: olderPhase })],
      }),
    );
    expect(plan.status.phase).toBe(phase);
    expect(plan.patches).toEqual([]);
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe(reason);
    if (phase === 'Pending') expect(plan.requeueAfterMs).toBeGreaterThan(0);
  });

  const D = `sha256:${'d'.repeat(64)}`;
  it.each([
    ["the older update's pin, annotated by it", 'Patched', 1, patchedBy(`nginx:1.27@${B}`, 'web-b')],
    ['the older digest, annotated by another update', 'Skipped', 0, patchedBy(`nginx:1.27@${B}`, 'web-a')],
    [
      'a person pinned another digest after the older update',
      'Skipped',
      0,
      patchedBy(`nginx:1.27@${D}`, 'web-b'),
    ],
    ['the older digest, not annotated', 'Skipped', 0, deployment('front', `nginx:1.27@${B}`)],
  ] as const)(
    'Applying, a workload the plan saw on A has changed: %s → %s',
    (_, state, patches, workload) => {
      const siblings = [older({ ...olderApplying(), phase: 'RollingOut' })];
      const applying = planUpdate(
        input(newer(), {
          watchedImage: recordedC,
          siblings,
          workloads: [deployment('front', `nginx:1.27@${A}`)],
        }),
      ).status;
      const plan = planUpdate(
        input(newer(applying), { watchedImage: recordedC, siblings, workloads: [workload] }),
      );
      expect(plan.status.workloads?.[0]?.state).toBe(state);
      expect(plan.patches).toHaveLength(patches);
      if (patches > 0) {
        expect(plan.patches[0]?.containers).toEqual([{ name: 'app', image: `nginx:1.27@${C}` }]);
        // What the workload really ran before this update, for a rollback.
        expect(plan.status.workloads?.[0]?.previousImage).toBe(`nginx:1.27@${B}`);
      }
    },
  );

  it('around an API server restart: the newer update is the one the workload ends on', () => {
    // The interleaving of a failed run: each reconcile plans from its own (possibly stale) cache view.
    let front = deployment('front', `nginx:1.27@${A}`);
    const patch = (plan: { patches: { containers: { image: string }[] }[] }, by: string) => {
      for (const p of plan.patches) front = patchedBy(p.containers[0]!.image, by);
    };
    // web-b starts before web-c exists.
    const bApplying = planUpdate(input(older(), { workloads: [front] })).status;
    expect(bApplying.phase).toBe('Applying');
    // web-c is created and recorded; its first plan sees web-b Applying and waits instead of
    // recording A as what the workload runs.
    const cWaiting = planUpdate(
      input(newer(), { watchedImage: recordedC, siblings: [older(bApplying)], workloads: [front] }),
    );
    expect(cWaiting.status.phase).toBe('Pending');
    // web-b's next plan came from a view that did not hold web-c yet: it patches to B.
    const bRolling = planUpdate(input(older(bApplying), { workloads: [front] }));
    patch(bRolling, 'web-b');
    expect(podSpecOf(front)?.containers?.[0]?.image).toBe(`nginx:1.27@${B}`);
    // web-c starts once web-b rolls out, from a workload cache that has not seen web-b's patch.
    const stale = deployment('front', `nginx:1.27@${A}`);
    const cApplying = planUpdate(
      input(newer(cWaiting.status), {
        watchedImage: recordedC,
        siblings: [older(bRolling.status)],
        workloads: [stale],
      }),
    ).status;
    expect(cApplying.phase).toBe('Applying');
    // The cache catches up with web-b's patch: web-c patches over it rather than calling it someone
    // else's change (which completed it as Succeeded without a patch).
    const cRolling = planUpdate(
      input(newer(cApplying), {
        watchedImage: recordedC,
        siblings: [older(bRolling.status)],
        workloads: [front],
      }),
    );
    patch(cRolling, 'web-c');
    expect(cRolling.status.phase).toBe('RollingOut');
    // web-b, rolling out, steps aside for web-c and patches nothing more.
    const bLast = planUpdate(
      input(older(bRolling.status), {
        watchedImage: recordedC,
        siblings: [newer(cRolling.status)],
        workloads: [front],
      }),
    );
    expect(bLast.status.phase).toBe('Superseded');
    expect(bLast.patches).toEqual([]);
    expect(podSpecOf(front)?.containers?.[0]?.image).toBe(`nginx:1.27@${C}`);
  });
});

describe('planPatchAnswers: the planner decides what a patch answer means', () => {
  const long = `denied by policy: ${'x'.repeat(10_000)}\nsecond line`;
  /** Two workloads of one update, both patched by the plan. */
  function patched() {
    const two = [deployment('front', 'nginx:1.27'), deployment('back', 'nginx:1.27')];
    const applying = planUpdate(input(update('web-b', B), { workloads: two })).status;
    const u = update('web-b', B, applying);
    return { u, plan: planUpdate(input(u, { workloads: two })) };
  }
  const ok = (name: string): PatchAnswer => ({ kind: 'Deployment', name });
  const err = (name: string, code: number | undefined, message = 'no'): PatchAnswer => ({
    kind: 'Deployment',
    name,
    error: { code, message },
  });

  it.each([
    ['both applied', [ok('front'), ok('back')], 'RollingOut', undefined, ['Patched', 'Patched']],
    [
      'one refused (403), one applied',
      [err('front', 403), ok('back')],
      'RollingOut',
      undefined,
      ['Refused', 'Patched'],
    ],
    [
      'both refused (422, 400)',
      [err('front', 422), err('back', 400)],
      'Failed',
      'PatchFailed',
      ['Refused', 'Refused'],
    ],
    [
      'one deleted, one refused',
      [err('front', 404), err('back', 403)],
      'Failed',
      'PatchFailed',
      ['Skipped', 'Refused'],
    ],
    ['both deleted', [err('front', 404), err('back', 404)], 'Succeeded', 'RolledOut', ['Skipped', 'Skipped']],
  ] as const)('%s → %s', (_, answers, phase, reason, states) => {
    const { u, plan } = patched();
    const next = planPatchAnswers(plan, u, watched(), answers, NOW);
    expect(next.retry).toBeUndefined();
    expect(next.status.phase).toBe(phase);
    const stateOf = (name: string) => next.status.workloads?.find((r) => r.name === name)?.state;
    expect([stateOf('front'), stateOf('back')]).toEqual(states);
    if (reason) expect(next.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe(reason);
    const refused = answers.filter((a) => a.error && a.error.code !== 404).map((a) => a.name);
    expect(
      next.events.filter((e) => e.reason === 'PatchFailed').map((e) => (e.on as { name: string }).name),
    ).toEqual(refused);
    // No ImagePinned Event for a workload that was not patched.
    const pinned = next.events
      .filter((e) => e.reason === 'ImagePinned')
      .map((e) => (e.on as { name: string }).name);
    expect(pinned.sort()).toEqual(
      answers
        .filter((a) => !a.error)
        .map((a) => a.name)
        .sort(),
    );
  });

  it.each([[500], [409], [429], [undefined]])('a %s is transient: retry, nothing recorded', (code) => {
    const { u, plan } = patched();
    const next = planPatchAnswers(plan, u, watched(), [err('front', code, 'try later'), ok('back')], NOW);
    expect(next.retry).toBe('try later');
  });

  it('a refused patch fails the update once the rollout of the others ends, with PatchFailed', () => {
    const { u, plan } = patched();
    const rolling = planPatchAnswers(plan, u, watched(), [err('front', 403), ok('back')], NOW).status;
    const done = planUpdate(
      input(update('web-b', B, rolling), {
        workloads: [deployment('front', 'nginx:1.27'), deployment('back', `nginx:1.27@${B}`, {}, 2)],
      }),
    );
    expect(done.status.phase).toBe('Failed');
    expect(done.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('PatchFailed');
  });

  it('a refusal message of any length is bounded and on one line, in results, condition and Event', () => {
    const { u, plan } = patched();
    const next = planPatchAnswers(plan, u, watched(), [err('front', 422, long), err('back', 422, long)], NOW);
    const texts = [
      ...(next.status.workloads ?? []).map((r) => r.message ?? ''),
      ...(next.status.conditions ?? []).map((c) => c.message),
      ...next.events.map((e) => e.message),
    ];
    for (const t of texts) {
      expect(Buffer.byteLength(t, 'utf8')).toBeLessThanOrEqual(1024);
      expect(t).not.toContain('\n');
    }
    expect(next.status.workloads?.find((r) => r.name === 'front')?.message).toMatch(
      /^patch refused: denied by policy: x+…$/,
    );
  });
});

describe('planUpdate: update windows and minimum age', () => {
  // NOW is Wednesday 2026-11-25 12:00Z.
  const nights = { updateWindows: [{ start: '22:00', end: '06:00' }] };

  it('outside every window: Scheduled until the next opening, with an Event and one delayed requeue', () => {
    const plan = planUpdate(input(update('web-b', B), { watchedImage: watched(nights) }));
    expect(plan.status.phase).toBe('Scheduled');
    expect(plan.status.scheduledTime).toBe('2026-11-25T22:00:00Z');
    expect(plan.status.workloads).toEqual([]);
    expect(plan.patches).toEqual([]);
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'Unknown',
      reason: 'OutsideUpdateWindow',
    });
    expect(plan.events.map((e) => e.reason)).toEqual(['Scheduled']);
    expect(plan.events[0]?.message).toContain('starts at 2026-11-25T22:00:00Z');
    // Ten hours away: woken at the six-hour cap and planned again, never polled.
    expect(plan.requeueAfterMs).toBe(6 * 3_600_000);
    // Planned again before the start, nothing new happens and no second Event is recorded.
    const again = planUpdate(input(update('web-b', B, plan.status), { watchedImage: watched(nights) }));
    expect(again.status).toEqual(plan.status);
    expect(again.events).toEqual([]);
  });

  it('applies when the window opens, and forgets the start time', () => {
    const scheduled = planUpdate(input(update('web-b', B), { watchedImage: watched(nights) })).status;
    const plan = planUpdate(
      input(update('web-b', B, scheduled), {
        watchedImage: watched(nights),
        now: new Date('2026-11-25T22:00:00Z'),
      }),
    );
    expect(plan.status.phase).toBe('Applying');
    expect(plan.status.scheduledTime).toBeUndefined();
    expect(plan.status.workloads?.map((r) => r.state)).toEqual(['Pending']);
  });

  it('a new digest waits for spec.minimumAge, counted from spec.detectedTime', () => {
    const young = update('web-b', B, undefined, { detectedTime: '2026-11-25T11:30:00Z' });
    const plan = planUpdate(input(young, { watchedImage: watched({ minimumAge: '1h' }) }));
    expect(plan.status.phase).toBe('Scheduled');
    expect(plan.status.scheduledTime).toBe('2026-11-25T12:30:00Z');
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('MinimumAge');
    expect(plan.requeueAfterMs).toBe(30 * 60_000);
  });

  it('without spec.detectedTime (an older poller), minimumAge counts from creation', () => {
    const plan = planUpdate(input(update('web-b', B), { watchedImage: watched({ minimumAge: '90m' }) }));
    expect(plan.status.scheduledTime).toBe('2026-11-25T12:30:00Z');
    const old = planUpdate(input(update('web-b', B), { watchedImage: watched({ minimumAge: '1h' }) }));
    expect(old.status.phase).toBe('Applying');
  });

  it('a tag that moves again within the minimum age rolls out once, to the last digest', () => {
    const wi = watched({ minimumAge: '1h' });
    const first = update(
      'web-b',
      B,
      undefined,
      { detectedTime: '2026-11-25T11:40:00Z' },
      '2026-11-25T11:40:00Z',
    );
    const second = update(
      'web-c',
      C,
      undefined,
      { fromDigest: B, detectedTime: '2026-11-25T11:50:00Z' },
      '2026-11-25T11:50:00Z',
    );
    const scheduledFirst = planUpdate(input(first, { watchedImage: wi })).status;
    expect(scheduledFirst.phase).toBe('Scheduled');
    const superseded = planUpdate(
      input(
        update('web-b', B, scheduledFirst, { detectedTime: '2026-11-25T11:40:00Z' }, '2026-11-25T11:40:00Z'),
        { watchedImage: wi, siblings: [second] },
      ),
    );
    expect(superseded.status).toMatchObject({ phase: 'Superseded', supersededBy: 'web-c' });
    // By then the poller has recorded C on the WatchedImage.
    const recordedC = watched({ minimumAge: '1h' }, { digest: C });
    const last = planUpdate(input(second, { watchedImage: recordedC, siblings: [first] }));
    expect(last.status).toMatchObject({ phase: 'Scheduled', scheduledTime: '2026-11-25T12:50:00Z' });
  });

  it('Manual: approval comes first; an approval outside a window waits for it unless it says ignoreUpdateWindows', () => {
    const wi = watched({ updatePolicy: 'Manual', ...nights });
    expect(planUpdate(input(update('web-b', B), { watchedImage: wi })).status.phase).toBe('AwaitingApproval');
    const approved = planUpdate(
      input(update('web-b', B, undefined, { approved: true }), { watchedImage: wi }),
    );
    expect(approved.status.phase).toBe('Scheduled');
    const urgent = planUpdate(
      input(update('web-b', B, approved.status, { approved: true, ignoreUpdateWindows: true }), {
        watchedImage: wi,
      }),
    );
    expect(urgent.status.phase).toBe('Applying');
    expect(urgent.status.scheduledTime).toBeUndefined();
  });

  it('an approval revoked while Scheduled waits for approval again, with no start time left', () => {
    const wi = watched({ updatePolicy: 'Manual', ...nights });
    const scheduled = planUpdate(
      input(update('web-b', B, undefined, { approved: true }), { watchedImage: wi }),
    );
    expect(scheduled.status.scheduledTime).toBe('2026-11-25T22:00:00Z');
    const revoked = planUpdate(
      input(update('web-b', B, scheduled.status, { approved: false }), { watchedImage: wi }),
    );
    expect(revoked.status.phase).toBe('AwaitingApproval');
    expect(revoked.status.scheduledTime).toBeUndefined();
  });

  it('a suspended WatchedImage holds a Scheduled update in Pending, with no start time', () => {
    const scheduled = planUpdate(input(update('web-b', B), { watchedImage: watched(nights) })).status;
    const plan = planUpdate(
      input(update('web-b', B, scheduled), { watchedImage: watched({ ...nights, suspend: true }) }),
    );
    expect(plan.status.phase).toBe('Pending');
    expect(plan.status.scheduledTime).toBeUndefined();
  });

  it('windows edited while Scheduled: a new start time, with a new Event', () => {
    const scheduled = planUpdate(input(update('web-b', B), { watchedImage: watched(nights) })).status;
    const plan = planUpdate(
      input(update('web-b', B, scheduled), {
        watchedImage: watched({ updateWindows: [{ start: '13:00', end: '14:00' }] }),
      }),
    );
    expect(plan.status.scheduledTime).toBe('2026-11-25T13:00:00Z');
    expect(plan.events.map((e) => e.reason)).toEqual(['Scheduled']);
    expect(plan.requeueAfterMs).toBe(3_600_000);
  });

  it('an unknown time zone keeps the update waiting and says which field is wrong', () => {
    const wi = watched({ updateWindows: [{ start: '22:00', end: '06:00', timeZone: 'Europe/Atlantis' }] });
    const plan = planUpdate(input(update('web-b', B), { watchedImage: wi }));
    expect(plan.status.phase).toBe('Scheduled');
    expect(plan.requeueAfterMs).toBeUndefined();
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      reason: 'InvalidUpdateWindows',
      message: expect.stringContaining('spec.updateWindows[0].timeZone: "Europe/Atlantis"'),
    });
  });
});

describe('planUpdate: rollback', () => {
  const stuck = (name: string, image: string) =>
    deployment(
      name,
      image,
      {
        updatedReplicas: 1,
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'ProgressDeadlineExceeded',
            message: `ReplicaSet "${name}-x" has progressed too slowly.`,
          },
        ],
      },
      2,
    );
  const onFailure = { watchedImage: watched({ rollback: 'OnFailure' }) };
  const rollingOut = (over: Partial<UpdateInput> = {}) => {
    const applying = planUpdate(input(update('web-b', B), { ...onFailure, ...over })).status;
    return planUpdate(input(update('web-b', B, applying), { ...onFailure, ...over })).status;
  };

  it('a failed rollout with rollback OnFailure records RollingBack first, patching nothing yet', () => {
    const plan = planUpdate(
      input(update('web-b', B, rollingOut()), {
        ...onFailure,
        workloads: [stuck('front', `nginx:1.27@${B}`)],
      }),
    );
    expect(plan.status.phase).toBe('RollingBack');
    expect(plan.patches).toEqual([]);
    expect(plan.status.failureMessage).toContain('ProgressDeadlineExceeded');
    expect(plan.events.find((e) => e.on === 'update')).toMatchObject({
      type: 'Warning',
      reason: 'RollingBack',
    });
  });

  it('RollingBack puts the exact previous image back, pinned to the digest before the change', () => {
    const failing = planUpdate(
      input(update('web-b', B, rollingOut()), {
        ...onFailure,
        workloads: [stuck('front', `nginx:1.27@${B}`)],
      }),
    ).status;
    const plan = planUpdate(
      input(update('web-b', B, failing), { ...onFailure, workloads: [stuck('front', `nginx:1.27@${B}`)] }),
    );
    expect(plan.patches).toEqual([
      {
        kind: 'Deployment',
        name: 'front',
        containers: [{ name: 'app', image: `nginx:1.27@${A}` }],
        initContainers: [],
      },
    ]);
    expect(plan.status.phase).toBe('RolledBack');
    expect(plan.status.workloads?.[0]).toMatchObject({
      state: 'RolledBack',
      message: `rolled back to nginx:1.27@${A}`,
    });
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'False',
      reason: 'RolledBack',
      message: expect.stringContaining('ProgressDeadlineExceeded'),
    });
    expect(plan.events.map((e) => [e.type, e.reason])).toEqual([
      ['Warning', 'RolledBack'],
      ['Warning', 'RolledBack'],
    ]);
  });

  it('RollingBack again after a crash: a container already back is not patched twice', () => {
    const failing = planUpdate(
      input(update('web-b', B, rollingOut()), {
        ...onFailure,
        workloads: [stuck('front', `nginx:1.27@${B}`)],
      }),
    ).status;
    const plan = planUpdate(
      input(update('web-b', B, failing), {
        ...onFailure,
        workloads: [deployment('front', `nginx:1.27@${A}`, {}, 3)],
      }),
    );
    expect(plan.patches).toEqual([]);
    expect(plan.status.phase).toBe('RolledBack');
    expect(plan.status.workloads?.[0]?.state).toBe('RolledBack');
  });

  it('puts back every workload the update changed, also those that rolled out; leaves changed ones alone', () => {
    const workloads = [
      deployment('front', 'nginx:1.27'),
      deployment('back', `nginx:1.27@${A}`),
      deployment('edge', 'nginx:1.27'),
    ];
    const rolling = rollingOut({ workloads });
    const after = [
      stuck('front', `nginx:1.27@${B}`),
      deployment('back', `nginx:1.27@${B}`, {}, 2),
      deployment('edge', 'nginx:1.28', {}, 2),
    ];
    const failing = planUpdate(input(update('web-b', B, rolling), { ...onFailure, workloads: after })).status;
    expect(failing.workloads?.map((r) => [r.name, r.state])).toEqual([
      ['back', 'RolledOut'],
      ['edge', 'Skipped'],
      ['front', 'Failed'],
    ]);
    const plan = planUpdate(input(update('web-b', B, failing), { ...onFailure, workloads: after }));
    expect(plan.patches.map((p) => [p.name, p.containers[0]?.image])).toEqual([
      ['back', `nginx:1.27@${A}`],
      ['front', `nginx:1.27@${A}`],
    ]);
    expect(plan.status.workloads?.map((r) => [r.name, r.state])).toEqual([
      ['back', 'RolledBack'],
      ['edge', 'Skipped'],
      ['front', 'RolledBack'],
    ]);
  });

  it('the rollout timeout is a failure too (kinds that report none)', () => {
    const rolling = { ...rollingOut(), appliedTime: '2026-11-25T11:00:00Z' };
    const plan = planUpdate(
      input(update('web-b', B, rolling), {
        ...onFailure,
        workloads: [deployment('front', `nginx:1.27@${B}`, { updatedReplicas: 1 }, 2)],
      }),
    );
    expect(plan.status.phase).toBe('RollingBack');
    expect(plan.status.failureMessage).toContain('rollout not finished after 600s');
  });

  it('rollback Never (the default) leaves a failed update Failed', () => {
    const plan = planUpdate(
      input(update('web-b', B, rollingOut()), { workloads: [stuck('front', `nginx:1.27@${B}`)] }),
    );
    expect(plan.status.phase).toBe('Failed');
  });

  it('a refused patch is not a failed rollout: nothing to roll back', () => {
    const rolling = rollingOut();
    const refused = {
      ...rolling,
      workloads: rolling.workloads?.map((r) => ({
        ...r,
        state: 'Refused' as const,
        message: 'patch refused: denied',
      })),
    };
    const plan = planUpdate(input(update('web-b', B, refused), onFailure));
    expect(plan.status.phase).toBe('Failed');
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('PatchFailed');
  });

  it('a rolled-back digest is refused until the tag moves on', () => {
    const rolledBack = update('web-b', B, { phase: 'RolledBack' }, {}, '2026-11-25T10:00:00Z');
    const again = planUpdate(
      input(update('web-b-2', B, undefined, {}, '2026-11-25T11:00:00Z'), {
        ...onFailure,
        siblings: [rolledBack],
      }),
    );
    expect(again.status.phase).toBe('Failed');
    expect(again.status.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      reason: 'DigestRefused',
      message: expect.stringContaining('rolled back by ImageUpdate web-b'),
    });
    const movedOn = planUpdate(
      input(update('web-c', C, undefined, { fromDigest: B }, '2026-11-25T11:00:00Z'), {
        watchedImage: watched({ rollback: 'OnFailure' }, { digest: C }),
        siblings: [rolledBack],
      }),
    );
    expect(movedOn.status.phase).toBe('Applying');
  });

  it('a RolledBack update is terminal', () => {
    const done = update('web-b', B, { phase: 'RolledBack' });
    const plan = planUpdate(input(done, onFailure));
    expect(plan.status.phase).toBe('RolledBack');
    expect(plan.patches).toEqual([]);
    expect(plan.events).toEqual([]);
  });
});

describe('CronJobs', () => {
  const cronJob = (image: string, generation = 1): Workload =>
    ({
      kind: 'CronJob',
      metadata: { name: 'nightly', namespace: 'apps', generation, labels: { app: 'nightly' } },
      spec: {
        schedule: '0 3 * * *',
        jobTemplate: {
          spec: {
            template: {
              spec: { containers: [{ name: 'job', image }], initContainers: [{ name: 'prep', image }] },
            },
          },
        },
      },
      // A CronJob's status has no observedGeneration and nothing that rolls out.
      status: {},
    }) as unknown as Workload;
  const wi = watched({ kinds: ['CronJob'] });

  it('patches the containers and init containers of the job template, and is done once patched', () => {
    const applying = planUpdate(
      input(update('web-b', B), { watchedImage: wi, workloads: [cronJob('nginx:1.27')] }),
    );
    expect(applying.status.workloads?.map((r) => [r.kind, r.name, r.container])).toEqual([
      ['CronJob', 'nightly', 'prep'],
      ['CronJob', 'nightly', 'job'],
    ]);
    const patched = planUpdate(
      input(update('web-b', B, applying.status), { watchedImage: wi, workloads: [cronJob('nginx:1.27')] }),
    );
    expect(patched.patches).toEqual([
      {
        kind: 'CronJob',
        name: 'nightly',
        containers: [{ name: 'job', image: `nginx:1.27@${B}` }],
        initContainers: [{ name: 'prep', image: `nginx:1.27@${B}` }],
      },
    ]);
    const done = planUpdate(
      input(update('web-b', B, patched.status), {
        watchedImage: wi,
        workloads: [cronJob(`nginx:1.27@${B}`, 2)],
      }),
    );
    expect(done.status.phase).toBe('Succeeded');
    expect(done.status.workloads?.map((r) => r.state)).toEqual(['RolledOut', 'RolledOut']);
    expect(done.status.workloads?.[0]?.message).toBe(
      'CronJob template patched: the next run uses the new image',
    );
  });

  it('are not matched unless kinds lists CronJob', () => {
    const plan = planUpdate(input(update('web-b', B), { workloads: [cronJob('nginx:1.27')] }));
    expect(plan.status.phase).toBe('Succeeded');
    expect(plan.status.conditions?.find((c) => c.type === 'Ready')?.reason).toBe('NoWorkloads');
  });
});

describe('workloadPatchBody', () => {
  it.each([
    ['Deployment', { spec: { template: { spec: { containers: [{ name: 'app', image: 'x@sha256:1' }] } } } }],
    [
      'CronJob',
      {
        spec: {
          jobTemplate: {
            spec: { template: { spec: { containers: [{ name: 'app', image: 'x@sha256:1' }] } } },
          },
        },
      },
    ],
  ] as const)(
    '%s: only the named containers, under the pod template, and the annotation',
    (kind, expected) => {
      expect(
        workloadPatchBody(
          { kind, name: 'w', containers: [{ name: 'app', image: 'x@sha256:1' }], initContainers: [] },
          'web-b',
        ),
      ).toEqual({ metadata: { annotations: { 'kubewatcher.io/image-update': 'web-b' } }, ...expected });
    },
  );
});
