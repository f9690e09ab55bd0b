import type { Condition, WatchedImage } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { B, C, deployment, NOW, update, watched } from '../test/plan-fixtures.ts';
import type { Workload } from './plan-update.ts';
import { planWatchedImage } from './plan-watched-image.ts';

const EARLIER = '2026-11-25T11:00:00Z';

/** The poller's `Resolved` condition, as it sits in the WatchedImage's status. */
function resolved(status: Condition['status'], reason: string, message = ''): Condition {
  return { type: 'Resolved', status, reason, message, lastTransitionTime: EARLIER };
}

function withConditions(wi: WatchedImage, ...conditions: Condition[]): WatchedImage {
  return { ...wi, status: { ...wi.status, conditions } } as WatchedImage;
}

const checked = (spec: Partial<WatchedImage['spec']> = {}) =>
  withConditions(watched(spec), resolved('True', 'Resolved'));
const front = deployment('front', 'nginx:1.27');
const other = deployment('other', 'redis:7');

describe('planWatchedImage: Ready, in its order of precedence', () => {
  it.each([
    {
      name: 'an invalid spec wins over everything',
      wi: withConditions(
        watched({ interval: '30s', suspend: true }),
        resolved('False', 'Unauthorized', 'add a pullSecret'),
      ),
      workloads: [front],
      ready: { status: 'False', reason: 'InvalidSpec' },
      message: 'interval',
    },
    {
      name: 'suspended wins over a registry failure',
      wi: withConditions(watched({ suspend: true }), resolved('False', 'Unauthorized', 'add a pullSecret')),
      workloads: [front],
      ready: { status: 'False', reason: 'Suspended' },
      message: 'spec.suspend',
    },
    {
      name: "the poller's failure, with its reason and message, wins over no workloads",
      wi: withConditions(watched(), resolved('False', 'Unauthorized', 'add a pullSecret')),
      workloads: [],
      ready: { status: 'False', reason: 'Unauthorized', message: 'add a pullSecret' },
      message: 'add a pullSecret',
    },
    {
      name: 'no workload runs the image',
      wi: checked(),
      workloads: [other],
      ready: { status: 'False', reason: 'NoWorkloads' },
      message: 'no Deployment in namespace apps runs nginx:1.27',
    },
    {
      name: 'workloads found, the poller has not checked yet',
      wi: watched(),
      workloads: [front],
      ready: { status: 'Unknown', reason: 'AwaitingFirstCheck' },
      message: '1 workload(s) found',
    },
    {
      name: 'workloads found and the image resolved',
      wi: checked(),
      workloads: [front, other],
      ready: { status: 'True', reason: 'WorkloadsFound' },
      message: 'watching 1 workload(s): Deployment/front',
    },
  ])('$name → $ready.reason', ({ wi, workloads, ready, message }) => {
    const plan = planWatchedImage(wi, workloads, [], NOW);
    expect(plan.status.conditions).toHaveLength(1);
    expect(plan.status.conditions[0]).toMatchObject({ type: 'Ready', observedGeneration: 1, ...ready });
    expect(plan.status.conditions[0]?.message).toContain(message);
  });

  it('names five workloads and counts the rest', () => {
    const many = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => deployment(n, 'nginx:1.27'));
    const plan = planWatchedImage(checked(), many, [], NOW);
    expect(plan.status.conditions[0]?.message).toBe(
      'watching 7 workload(s): Deployment/a, Deployment/b, Deployment/c, Deployment/d, Deployment/e and 2 more',
    );
  });

  it('keeps lastTransitionTime while the status stays, moves it when the status flips', () => {
    const first = planWatchedImage(checked(), [front], [], new Date(EARLIER));
    const stored = withConditions(checked(), resolved('True', 'Resolved'), ...first.status.conditions);
    const same = planWatchedImage(stored, [front], [], NOW);
    expect(same.status.conditions[0]?.lastTransitionTime).toBe(EARLIER);
    const flipped = planWatchedImage(stored, [], [], NOW);
    expect(flipped.status.conditions[0]).toMatchObject({
      status: 'False',
      lastTransitionTime: '2026-11-25T12:00:00Z', // NOW, in the API's seconds precision
    });
  });

  it("writes only Ready, never the poller's Resolved", () => {
    const plan = planWatchedImage(checked(), [front], [], NOW);
    expect(plan.status.conditions.map((c) => c.type)).toEqual(['Ready']);
  });
});

describe('planWatchedImage: matched workloads', () => {
  const statefulSet = { ...deployment('db', 'nginx:1.27'), kind: 'StatefulSet' } as Workload;
  const labelled = (name: string, tier: string) => {
    const d = deployment(name, 'nginx:1.27');
    return { ...d, metadata: { ...d.metadata, labels: { app: name, tier } } } as Workload;
  };

  it.each([
    {
      name: 'the Deployments running the image, with the matching containers only',
      spec: {},
      workloads: [front, other],
      expected: [{ kind: 'Deployment', name: 'front', containers: ['app'] }],
    },
    {
      name: 'kinds defaults to Deployment',
      spec: { kinds: undefined },
      workloads: [front, statefulSet],
      expected: [{ kind: 'Deployment', name: 'front', containers: ['app'] }],
    },
    {
      name: 'kinds names the kinds, sorted by kind and name',
      spec: { kinds: ['StatefulSet', 'Deployment'] as WatchedImage['spec']['kinds'] },
      workloads: [statefulSet, front],
      expected: [
        { kind: 'Deployment', name: 'front', containers: ['app'] },
        { kind: 'StatefulSet', name: 'db', containers: ['app'] },
      ],
    },
    {
      name: 'workloadSelector filters by label',
      spec: { workloadSelector: { matchLabels: { tier: 'web' } } },
      workloads: [labelled('a', 'web'), labelled('b', 'batch')],
      expected: [{ kind: 'Deployment', name: 'a', containers: ['app'] }],
    },
    {
      name: 'containers names the containers',
      spec: { containers: ['sidecar'] },
      workloads: [front],
      expected: [],
    },
    {
      name: 'a pinned digest still matches its tag',
      spec: {},
      workloads: [deployment('front', `nginx:1.27@${B}`)],
      expected: [{ kind: 'Deployment', name: 'front', containers: ['app'] }],
    },
  ])('$name', ({ spec, workloads, expected }) => {
    const plan = planWatchedImage(checked(spec), workloads, [], NOW);
    expect(plan.status.workloads).toEqual(expected);
    expect(plan.status.workloadCount).toBe(expected.length);
  });

  it('an invalid spec matches nothing', () => {
    const plan = planWatchedImage(watched({ interval: '30s' }), [front], [], NOW);
    expect(plan.status).toMatchObject({ workloads: [], workloadCount: 0 });
  });
});

describe('planWatchedImage: history', () => {
  const history = [
    update('u1', B, { phase: 'Succeeded' }, {}, '2026-11-25T10:00:00Z'),
    update('u2', B, { phase: 'RollingOut' }, {}, '2026-11-25T10:01:00Z'),
    update('u3', B, { phase: 'Failed' }, {}, '2026-11-25T10:02:00Z'),
    update('u4', B, { phase: 'Succeeded' }, {}, '2026-11-25T10:03:00Z'),
    update('u5', B, { phase: 'AwaitingApproval' }, {}, '2026-11-25T10:04:00Z'),
  ];

  it.each([
    { historyLimit: 10, prune: [] },
    { historyLimit: 4, prune: ['u1'] },
    { historyLimit: 2, prune: ['u1', 'u3'] },
    { historyLimit: 1, prune: ['u1', 'u3', 'u4'] },
    { historyLimit: 0, prune: ['u1', 'u3', 'u4'] },
  ])(
    'historyLimit $historyLimit prunes $prune: finished ones only, oldest first',
    ({ historyLimit, prune }) => {
      const plan = planWatchedImage(watched({ historyLimit }), [], history, NOW);
      expect(plan.prune).toEqual(prune);
    },
  );

  it('historyLimit defaults to 10', () => {
    const eleven = Array.from({ length: 11 }, (_, i) =>
      update(`u${i}`, B, { phase: 'Succeeded' }, {}, `2026-11-25T10:${String(i).padStart(2, '0')}:00Z`),
    );
    expect(planWatchedImage(watched({ historyLimit: undefined }), [], eleven, NOW).prune).toEqual(['u0']);
  });

  it('latestUpdate is the newest by creation, whatever the list order', () => {
    const plan = planWatchedImage(watched(), [], [...history].reverse(), NOW);
    expect(plan.status.latestUpdate).toBe('u5');
    expect(planWatchedImage(watched(), [], [], NOW).status).not.toHaveProperty('latestUpdate');
  });

  it('an invalid spec still reports latestUpdate and prunes', () => {
    const plan = planWatchedImage(watched({ interval: '30s', historyLimit: 1 }), [], history, NOW);
    expect(plan.status.latestUpdate).toBe('u5');
    expect(plan.prune).toEqual(['u1', 'u3', 'u4']);
  });
});

describe('planWatchedImage: update control', () => {
  it('shows the digest a rollback refused, until the tag moves on', () => {
    const rolledBack = update('u1', B, { phase: 'RolledBack' }, {}, '2026-11-25T10:00:00Z');
    expect(planWatchedImage(watched(), [], [rolledBack], NOW).status.refusedDigest).toBe(B);
    const movedOn = update('u2', C, { phase: 'Succeeded' }, { fromDigest: B }, '2026-11-25T10:30:00Z');
    expect(planWatchedImage(watched(), [], [rolledBack, movedOn], NOW).status.refusedDigest).toBeUndefined();
  });

  it('reports an update window time zone the controller does not know as InvalidSpec', () => {
    const wi = watched({ updateWindows: [{ start: '22:00', end: '06:00', timeZone: 'Europe/Atlantis' }] });
    expect(
      planWatchedImage(wi, [deployment('front', 'nginx:1.27')], [], NOW).status.conditions[0],
    ).toMatchObject({
      status: 'False',
      reason: 'InvalidSpec',
      message: expect.stringContaining('spec.updateWindows[0].timeZone: "Europe/Atlantis"'),
    });
  });
});
