import { kubeTime, MAX_MESSAGE_BYTES, nameLabelValue, type WatchedImage } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import {
  budgetChecks,
  budgetReserve,
  DEFAULT_RATE_LIMIT_PAUSE_MS,
  decide,
  dueTolerance,
  groupTargets,
  imageUpdateFailedStatus,
  invalidStatus,
  isSameChange,
  lowerBudget,
  oldestCheckFirst,
  type PollTarget,
  registryBudgets,
  rememberedChallenges,
  runDeadlines,
  selectDue,
  type WriteReason,
} from './plan.ts';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const NOW = new Date('2026-11-25T12:00:00Z');

function wi(
  name: string,
  spec: Partial<WatchedImage['spec']> = {},
  status?: WatchedImage['status'],
): WatchedImage {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'WatchedImage',
    metadata: { name, namespace: 'apps', uid: `uid-${name}`, generation: 3 },
    spec: { image: 'nginx:1.27', interval: '5m', ...spec },
    ...(status ? { status } : {}),
  } as WatchedImage;
}

const checked = (ago: number, extra: Partial<NonNullable<WatchedImage['status']>> = {}) => ({
  digest: A,
  resolvedImage: 'docker.io/library/nginx:1.27',
  lastCheckedTime: new Date(NOW.getTime() - ago).toISOString(),
  ...extra,
});

/** The Resolved condition of a check of `generation`. */
const resolvedAt = (generation: number, status: 'True' | 'False' = 'True') => ({
  conditions: [
    {
      type: 'Resolved',
      status,
      reason: status === 'True' ? 'Resolved' : 'Unauthorized',
      message: '',
      lastTransitionTime: kubeTime(NOW),
      observedGeneration: generation,
    },
  ],
});

/** A check of `generation` that failed before any baseline was recorded. */
const failedAt = (ago: number, generation: number) => ({
  lastCheckedTime: new Date(NOW.getTime() - ago).toISOString(),
  ...resolvedAt(generation, 'False'),
});

/** A WatchedImage of nginx:1.27 on Docker Hub, checked every 5 minutes, as selectDue makes it. */
const target = (item: WatchedImage): PollTarget => ({
  watchedImage: item,
  reference: { domain: 'docker.io', path: 'library/nginx', tag: '1.27' },
  image: 'docker.io/library/nginx:1.27',
  intervalMs: 5 * 60_000,
});

/** Docker Hub's challenge as the poller records it. */
const HUB_CHALLENGE = {
  registry: 'registry-1.docker.io',
  scheme: 'Bearer',
  realm: 'https://auth.docker.io/token',
  service: 'registry.docker.io',
} as const;

describe('selectDue', () => {
  const cases: [string, WatchedImage, 'due' | 'notDue' | 'suspended' | 'invalid'][] = [
    ['never checked', wi('a'), 'due'],
    ['checked 6m ago, interval 5m', wi('a', {}, checked(6 * 60_000)), 'due'],
    ['checked 2m ago, interval 5m', wi('a', {}, checked(2 * 60_000)), 'notDue'],
    ['checked 50s ago, interval 1m (within tolerance)', wi('a', { interval: '1m' }, checked(50_000)), 'due'],
    ['checked 30s ago, interval 1m', wi('a', { interval: '1m' }, checked(30_000)), 'notDue'],
    ['image changed since the baseline', wi('a', { image: 'nginx:1.28' }, checked(10_000)), 'due'],
    ['no baseline digest yet', wi('a', {}, { lastCheckedTime: NOW.toISOString() }), 'notDue'],
    ['failed before any baseline, 2m ago', wi('a', {}, failedAt(2 * 60_000, 3)), 'notDue'],
    ['failed before any baseline, 6m ago', wi('a', {}, failedAt(6 * 60_000, 3)), 'due'],
    ['failed before any baseline, spec edited since', wi('a', {}, failedAt(10_000, 2)), 'due'],
    ['checked this generation 2m ago', wi('a', {}, checked(2 * 60_000, resolvedAt(3))), 'notDue'],
    ['spec edited since the last check', wi('a', {}, checked(10_000, resolvedAt(2))), 'due'],
    [
      'image edited, checked since',
      wi('a', { image: 'nginx:1.28' }, checked(10_000, resolvedAt(3))),
      'notDue',
    ],
    [
      'checked 2m ago, a check requested since',
      wi(
        'a',
        {},
        checked(2 * 60_000, { checkRequestedTime: new Date(NOW.getTime() - 60_000).toISOString() }),
      ),
      'due',
    ],
    [
      'checked 1m ago, the check requested before it',
      wi(
        'a',
        {},
        checked(60_000, { checkRequestedTime: new Date(NOW.getTime() - 2 * 60_000).toISOString() }),
      ),
      'notDue',
    ],
    [
      'suspended, a check requested',
      wi('a', { suspend: true }, { checkRequestedTime: NOW.toISOString() }),
      'suspended',
    ],
    ['suspended', wi('a', { suspend: true }), 'suspended'],
    ['digest in image', wi('a', { image: `nginx@${A}` }), 'invalid'],
    ['unparsable image', wi('a', { image: 'Nginx:1' }), 'invalid'],
    ['bad interval', wi('a', { interval: 'soon' }), 'invalid'],
  ];
  it.each(cases)('%s', (_name, item, expected) => {
    const s = selectDue([item], NOW);
    const got = s.due.length
      ? 'due'
      : s.notDue
        ? 'notDue'
        : s.suspended
          ? 'suspended'
          : s.invalid.length
            ? 'invalid'
            : 'none';
    expect(got).toBe(expected);
  });

  it('normalises the image it resolves', () => {
    expect(selectDue([wi('a', { image: 'nginx' })], NOW).due[0]!.image).toBe(
      'docker.io/library/nginx:latest',
    );
  });

  it('checks a little early rather than a whole CronJob period late', () => {
    expect(dueTolerance(60_000)).toBe(15_000);
    expect(dueTolerance(3_600_000)).toBe(15_000);
    expect(dueTolerance(20_000)).toBe(5_000);
  });
});

describe('selectDue with a check record', () => {
  const MIN = 60_000;
  const ago = (ms: number) => NOW.getTime() - ms;

  it('counts an unwritten check like a written one: not due again until its interval has passed', () => {
    const item = wi('a', {}, checked(6 * MIN, resolvedAt(3)));
    expect(selectDue([item], NOW).due).toHaveLength(1);
    expect(selectDue([item], NOW, false, new Map([['uid-a', ago(MIN)]])).due).toHaveLength(0);
    expect(selectDue([item], NOW, false, new Map([['uid-a', ago(5 * MIN)]])).due).toHaveLength(1);
    // An entry older than the written check changes nothing; another uid's entry is not this one's.
    expect(selectDue([item], NOW, false, new Map([['uid-a', ago(7 * MIN)]])).due).toHaveLength(1);
    expect(selectDue([item], NOW, false, new Map([['uid-b', ago(MIN)]])).due).toHaveLength(1);
  });

  it('still checks at once what was requested after the written check, and an edited spec', () => {
    const record = new Map([['uid-a', ago(MIN)]]);
    const requested = wi(
      'a',
      {},
      checked(6 * MIN, { ...resolvedAt(3), checkRequestedTime: new Date(ago(2 * MIN)).toISOString() }),
    );
    expect(selectDue([requested], NOW, false, record).due).toHaveLength(1);
    const edited = wi('a', {}, checked(6 * MIN, resolvedAt(2)));
    expect(selectDue([edited], NOW, false, record).due).toHaveLength(1);
  });

  it('orders by the newest check, written or recorded', () => {
    const targets = ['a', 'b'].map((name) => target(wi(name, {}, checked(10 * MIN))));
    const record = new Map([['uid-a', ago(6 * MIN)]]);
    expect(oldestCheckFirst(targets, record).map((t) => t.watchedImage.metadata.name)).toEqual(['b', 'a']);
  });
});

describe('groupTargets', () => {
  it('groups by image and credential', () => {
    const t = (image: string, cred: string) => ({ image, cred });
    const groups = groupTargets([t('x:1', 'a'), t('x:1', 'a'), t('x:1', 'b'), t('x:2', 'a')], (x) => x.cred);
    expect([...groups.values()].map((g) => g.length)).toEqual([2, 1, 1]);
  });
});

describe('decide', () => {
  it('records the first digest as the baseline without an update', () => {
    const d = decide(target(wi('a')), { ok: true, digest: A, method: 'HEAD' }, NOW);
    expect(d.outcome).toBe('baseline');
    expect(d.imageUpdate).toBeUndefined();
    expect(d.status).toMatchObject({
      digest: A,
      shortDigest: 'a'.repeat(12),
      resolvedImage: 'docker.io/library/nginx:1.27',
    });
    expect(d.status.conditions).toEqual([
      expect.objectContaining({
        type: 'Resolved',
        status: 'True',
        reason: 'Resolved',
        observedGeneration: 3,
      }),
    ]);
  });

  it('gives a workload pinned to another digest an update to the baseline on first sight', () => {
    const d = decide(target(wi('a')), { ok: true, digest: A, method: 'HEAD' }, NOW, B);
    expect(d.imageUpdate?.body.spec).toEqual({
      watchedImage: 'a',
      image: 'nginx:1.27',
      fromDigest: B,
      toDigest: A,
      detectedTime: '2026-11-25T12:00:00Z',
    });
  });

  it('does nothing when the digest is unchanged, and keeps lastChangedTime', () => {
    const item = wi('a', {}, checked(600_000, { lastChangedTime: '2026-11-01T00:00:00.000Z' }));
    const d = decide(target(item), { ok: true, digest: A, method: 'HEAD' }, NOW);
    expect(d.outcome).toBe('unchanged');
    expect(d.imageUpdate).toBeUndefined();
    expect(d.status.lastChangedTime).toBe('2026-11-01T00:00:00.000Z');
    expect(d.status.lastCheckedTime).toBe(NOW.toISOString());
  });

  it('creates an owned ImageUpdate with a deterministic name when the digest moves', () => {
    const d = decide(target(wi('web', {}, checked(600_000))), { ok: true, digest: B, method: 'HEAD' }, NOW);
    expect(d.outcome).toBe('changed');
    expect(d.status.digest).toBe(B);
    expect(d.status.lastChangedTime).toBe(NOW.toISOString());
    expect(d.imageUpdate?.name).toBe(`web-${'b'.repeat(10)}`);
    expect(d.imageUpdate?.body.spec).toEqual({
      watchedImage: 'web',
      image: 'nginx:1.27',
      fromDigest: A,
      toDigest: B,
      detectedTime: '2026-11-25T12:00:00Z',
    });
    expect(d.imageUpdate?.body.metadata.ownerReferences[0]).toMatchObject({
      kind: 'WatchedImage',
      name: 'web',
      uid: 'uid-web',
    });
    expect(d.imageUpdate?.body.metadata.labels).toEqual({ 'kubewatcher.io/watched-image': 'web' });
  });

  it('keeps the baseline and reports the reason when resolution fails', () => {
    const item = wi('a', {}, checked(600_000));
    const d = decide(
      target(item),
      { ok: false, reason: 'Unauthorized', message: 'credentials rejected' },
      NOW,
    );
    expect(d.outcome).toBe('failed');
    expect(d.status.digest).toBe(A);
    expect(d.status.conditions[0]).toMatchObject({
      type: 'Resolved',
      status: 'False',
      reason: 'Unauthorized',
      message: 'credentials rejected',
    });
  });

  it('moves lastTransitionTime only when the Resolved status flips', () => {
    const since = '2026-11-20T00:00:00.000Z';
    const item = wi(
      'a',
      {},
      checked(600_000, {
        conditions: [
          {
            type: 'Resolved',
            status: 'True',
            reason: 'Resolved',
            message: 'x',
            lastTransitionTime: since,
            observedGeneration: 3,
          },
        ],
      }),
    );
    const same = decide(target(item), { ok: true, digest: A, method: 'HEAD' }, NOW);
    expect(same.status.conditions[0]!.lastTransitionTime).toBe(since);
    const flipped = decide(target(item), { ok: false, reason: 'NotFound', message: 'gone' }, NOW);
    expect(flipped.status.conditions[0]!.lastTransitionTime).toBe(kubeTime(NOW));
  });

  it('records the registry rate limit it saw', () => {
    const d = decide(
      target(wi('a')),
      { ok: true, digest: A, method: 'HEAD', rateLimit: { limit: 100, remaining: 76, windowSeconds: 21600 } },
      NOW,
    );
    expect(d.status.rateLimit).toEqual({
      limit: 100,
      remaining: 76,
      windowSeconds: 21600,
      observedTime: NOW.toISOString(),
    });
  });

  it("writes only its own condition, never the controller's", () => {
    const item = wi(
      'a',
      {},
      checked(1, {
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'WorkloadsFound',
            message: 'x',
            lastTransitionTime: NOW.toISOString(),
          },
        ],
      }),
    );
    const d = decide(target(item), { ok: true, digest: A, method: 'HEAD' }, NOW);
    expect(d.status.conditions.map((c) => c.type)).toEqual(['Resolved']);
  });
});

describe('every outcome has a status that fits', () => {
  it('a refused ImageUpdate: checked now, the old baseline kept, Resolved False ImageUpdateFailed', () => {
    const item = wi('a', {}, checked(600_000, { lastChangedTime: '2026-11-01T00:00:00.000Z' }));
    const status = imageUpdateFailedStatus(target(item), 'quota exceeded', NOW);
    expect(status).toMatchObject({
      digest: A,
      lastChangedTime: '2026-11-01T00:00:00.000Z',
      lastCheckedTime: NOW.toISOString(),
    });
    expect(status.conditions).toEqual([
      expect.objectContaining({
        type: 'Resolved',
        status: 'False',
        reason: 'ImageUpdateFailed',
        message: 'quota exceeded',
      }),
    ]);
  });

  it.each([
    ['a registry message with control characters', `bad\u0007\n${'x'.repeat(40_000)}`],
    ['a multi-byte message', 'é'.repeat(5_000)],
  ])('bounds %s written into the condition', (_name, message) => {
    const d = decide(target(wi('a')), { ok: false, reason: 'RegistryError', message }, NOW);
    const written = d.status.conditions[0]!.message;
    expect(Buffer.byteLength(written)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them is the point
    expect(written).not.toMatch(/[\u0000-\u001f]/);
  });

  it.each([
    ['a short name as it is', 'web', 'web'],
    ['63 characters as they are', 'w'.repeat(63), 'w'.repeat(63)],
  ])('labels the ImageUpdate with %s', (_name, name, label) => {
    const d = decide(target(wi(name, {}, checked(600_000))), { ok: true, digest: B, method: 'HEAD' }, NOW);
    expect(d.imageUpdate?.body.metadata.labels).toEqual({ 'kubewatcher.io/watched-image': label });
  });

  it('labels a name longer than 63 characters with a cut and a hash that still tell names apart', () => {
    const long = (end: string) => `${'w'.repeat(70)}-${end}`;
    const [x, y] = [nameLabelValue(long('x')), nameLabelValue(long('y'))];
    expect(x).not.toBe(y);
    for (const v of [x, y]) expect(v).toMatch(/^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$/);
    expect(nameLabelValue(`${'a'.repeat(54)}.-${'b'.repeat(20)}`)).toMatch(/^a{54}-[0-9a-f]{8}$/);
  });

  it('reports a pinned digest it cannot record instead of creating an update from it', () => {
    const sha512 = `sha512:${'c'.repeat(128)}`;
    const d = decide(target(wi('a')), { ok: true, digest: A, method: 'HEAD' }, NOW, undefined, sha512);
    expect(d.outcome).toBe('baseline');
    expect(d.imageUpdate).toBeUndefined();
    expect(d.status.conditions[0]!.message).toContain(
      `a workload pins ${sha512}, which Kubewatcher cannot record`,
    );
  });
});

describe('run order and budget', () => {
  it('puts the longest unchecked first, never-checked before all, keeping ties in order', () => {
    const targets = [
      ['recent', wi('recent', {}, checked(60_000))],
      ['never', wi('never')],
      ['old', wi('old', {}, checked(3_600_000))],
      ['never-2', wi('never-2')],
      ['middle', wi('middle', {}, checked(600_000))],
    ].map(([, item]) => ({
      watchedImage: item as WatchedImage,
      reference: { domain: 'docker.io', path: 'x' },
      image: 'x',
      intervalMs: 5 * 60_000,
    }));
    expect(oldestCheckFirst(targets).map((t) => t.watchedImage.metadata.name)).toEqual([
      'never',
      'never-2',
      'old',
      'middle',
      'recent',
    ]);
  });

  it.each([
    // budget, lookup timeout → reserve, lookups end by, last start
    [240_000, 20_000, 24_000, 216_000, 211_000],
    [30_000, 20_000, 5_000, 25_000, 20_000],
    [10_000, 2_000, 5_000, 5_000, 4_500],
  ])(
    'a %d ms budget with %d ms lookups keeps %d ms for writes',
    (budget, timeout, reserve, deadline, lastStart) => {
      expect(runDeadlines(1_000, budget, timeout)).toEqual({
        reserveMs: reserve,
        lookupDeadline: 1_000 + deadline,
        lastStart: 1_000 + lastStart,
      });
    },
  );
});

describe('isSameChange', () => {
  const draft = decide(
    {
      watchedImage: wi('web', {}, checked(1)),
      reference: { domain: 'docker.io', path: 'library/nginx', tag: '1.27' },
      image: 'docker.io/library/nginx:1.27',
      intervalMs: 5 * 60_000,
    },
    { ok: true, digest: B, method: 'HEAD' },
    NOW,
  ).imageUpdate!;
  const since = '2026-11-25T11:00:00.000Z';
  it('recognises its own update after a crash', () => {
    expect(
      isSameChange(
        { metadata: { creationTimestamp: '2026-11-25T11:30:00Z' }, spec: { fromDigest: A, toDigest: B } },
        draft,
        since,
      ),
    ).toBe(true);
  });
  it('treats an older record of the same digests as history (the tag moved back)', () => {
    expect(
      isSameChange(
        { metadata: { creationTimestamp: '2026-11-24T00:00:00Z' }, spec: { fromDigest: A, toDigest: B } },
        draft,
        since,
      ),
    ).toBe(false);
  });
  it('treats other digests as a different change', () => {
    expect(
      isSameChange(
        { metadata: { creationTimestamp: '2026-11-25T11:30:00Z' }, spec: { fromDigest: B, toDigest: B } },
        draft,
        since,
      ),
    ).toBe(false);
  });
});

describe('which checks are written', () => {
  const MIN = 60_000;
  /** A WatchedImage whose last check (ago ms before NOW) resolved to A, as the poller wrote it. */
  const resolvedBefore = (ago: number, rateLimit?: NonNullable<WatchedImage['status']>['rateLimit']) => {
    const first = decide(
      target(wi('a')),
      { ok: true, digest: A, method: 'HEAD', ...(rateLimit ? { rateLimit: rateLimit as never } : {}) },
      new Date(NOW.getTime() - ago),
    ).status;
    return wi('a', {}, { ...first, lastChangedTime: first.lastChangedTime! });
  };
  const ok = { ok: true as const, digest: A, method: 'HEAD' as const };
  const cases: [string, WatchedImage, Parameters<typeof decide>[1], WriteReason | undefined][] = [
    ['never checked', wi('a'), ok, 'content'],
    ['unchanged, checked 2m ago (an early check)', resolvedBefore(2 * MIN), ok, undefined],
    ['unchanged, checked 5m ago (the scheduled check)', resolvedBefore(5 * MIN), ok, 'schedule'],
    [
      'unchanged, checked 4m50s ago (within the due tolerance)',
      resolvedBefore(4 * MIN + 50_000),
      ok,
      'schedule',
    ],
    ['digest moved, checked 2m ago', resolvedBefore(2 * MIN), { ...ok, digest: B }, 'content'],
    [
      'unchanged, checked 2m ago, a check requested (webhook) since',
      wi(
        'a',
        {},
        {
          ...resolvedBefore(2 * MIN).status!,
          checkRequestedTime: new Date(NOW.getTime() - MIN).toISOString(),
        },
      ),
      ok,
      'requested',
    ],
    [
      'unchanged, checked 2m ago, the last request served by it',
      wi(
        'a',
        {},
        {
          ...resolvedBefore(2 * MIN).status!,
          checkRequestedTime: new Date(NOW.getTime() - 3 * MIN).toISOString(),
        },
      ),
      ok,
      undefined,
    ],
    [
      'failure after a success, checked 2m ago',
      resolvedBefore(2 * MIN),
      { ok: false, reason: 'NotFound', message: 'gone' },
      'content',
    ],
    [
      'only remaining changed, checked 2m ago',
      resolvedBefore(2 * MIN, { limit: 100, remaining: 50, windowSeconds: 3600 }),
      { ...ok, rateLimit: { limit: 100, remaining: 40, windowSeconds: 3600 } },
      undefined,
    ],
    [
      'the limit changed, checked 2m ago',
      resolvedBefore(2 * MIN, { limit: 100, remaining: 50, windowSeconds: 3600 }),
      { ...ok, rateLimit: { limit: 200, remaining: 150, windowSeconds: 3600 } },
      'content',
    ],
    [
      'a 429, checked 2m ago',
      resolvedBefore(2 * MIN),
      { ok: false, reason: 'RateLimited', message: 'slow down', retryAfterMs: 60_000 },
      'content',
    ],
    [
      'a challenge learned, checked 2m ago',
      resolvedBefore(2 * MIN),
      { ...ok, challenge: HUB_CHALLENGE },
      'content',
    ],
    [
      'the same challenge again, checked 2m ago',
      wi('a', {}, { ...resolvedBefore(2 * MIN).status!, registryChallenge: HUB_CHALLENGE }),
      { ...ok, challenge: { ...HUB_CHALLENGE } },
      undefined,
    ],
    [
      'another realm, checked 2m ago',
      wi('a', {}, { ...resolvedBefore(2 * MIN).status!, registryChallenge: HUB_CHALLENGE }),
      { ...ok, challenge: { ...HUB_CHALLENGE, realm: 'https://auth.docker.io/v2/token' } },
      'content',
    ],
    [
      'digest moved, checked 5m ago (scheduled too)',
      resolvedBefore(5 * MIN),
      { ...ok, digest: B },
      'content',
    ],
    [
      'unchanged, checked 5m ago, a check requested since',
      wi(
        'a',
        {},
        {
          ...resolvedBefore(5 * MIN).status!,
          checkRequestedTime: new Date(NOW.getTime() - MIN).toISOString(),
        },
      ),
      ok,
      'requested',
    ],
  ];
  it.each(cases)('%s', (_name, item, result, reason) => {
    const decision = decide(target(item), result, NOW);
    expect(decision.writeReason).toBe(reason);
    expect(decision.write).toBe(reason !== undefined);
  });

  it('records a pause after a 429: Retry-After, else the default, keeping the known figures', () => {
    const item = resolvedBefore(6 * MIN, { limit: 100, remaining: 3, windowSeconds: 3600 });
    const withRetry = decide(
      target(item),
      { ok: false, reason: 'RateLimited', message: '429', retryAfterMs: 120_000 },
      NOW,
    );
    expect(withRetry.status.rateLimit).toMatchObject({
      limit: 100,
      remaining: 3,
      pausedUntil: new Date(NOW.getTime() + 120_000).toISOString(),
    });
    const without = decide(target(item), { ok: false, reason: 'RateLimited', message: '429' }, NOW);
    expect(without.status.rateLimit?.pausedUntil).toBe(
      new Date(NOW.getTime() + DEFAULT_RATE_LIMIT_PAUSE_MS).toISOString(),
    );
  });

  it('keeps a pause that has not ended and drops one that has', () => {
    const paused = (until: number) =>
      wi(
        'a',
        {},
        {
          ...checked(6 * MIN),
          rateLimit: { observedTime: NOW.toISOString(), pausedUntil: new Date(until).toISOString() },
        },
      );
    const notFound = { ok: false as const, reason: 'NotFound' as const, message: 'gone' };
    expect(decide(target(paused(NOW.getTime() + MIN)), notFound, NOW).status.rateLimit?.pausedUntil).toBe(
      new Date(NOW.getTime() + MIN).toISOString(),
    );
    expect(decide(target(paused(NOW.getTime() - MIN)), ok, NOW).status.rateLimit).toBeUndefined();
  });
});

describe('registry budgets', () => {
  const MIN = 60_000;
  const at = (ago: number) => new Date(NOW.getTime() - ago).toISOString();
  const limited = (
    name: string,
    image: string,
    rateLimit: NonNullable<WatchedImage['status']>['rateLimit'],
  ): WatchedImage => wi(name, { image }, { ...checked(MIN), rateLimit });

  it('reads the newest figures of each registry, the lower remaining on a tie, and a pause', () => {
    const budgets = registryBudgets(
      [
        limited('a', 'nginx:1', {
          limit: 100,
          remaining: 80,
          windowSeconds: 21600,
          observedTime: at(10 * MIN),
        }),
        limited('b', 'redis:7', { limit: 100, remaining: 30, windowSeconds: 21600, observedTime: at(MIN) }),
        limited('c', 'redis:6', { limit: 100, remaining: 20, windowSeconds: 21600, observedTime: at(MIN) }),
        limited('d', 'ghcr.io/acme/web:v1', { observedTime: at(0), pausedUntil: at(-5 * MIN) }),
        limited('e', 'quay.io/x/y:1', { observedTime: at(10 * MIN), pausedUntil: at(MIN) }),
        wi('f', { image: 'gcr.io/p/i:1' }, checked(MIN)),
      ],
      NOW,
    );
    // One minute of a 6-hour window of 100 gives nothing back yet.
    expect(budgets.get('docker.io')).toEqual({
      registry: 'docker.io',
      limit: 100,
      estimatedRemaining: 20,
      allowance: 20 - budgetReserve(100),
    });
    expect(budgets.get('ghcr.io')).toEqual({
      registry: 'ghcr.io',
      pausedUntil: NOW.getTime() + 5 * MIN,
    });
    // A pause that has ended and a registry without figures set nothing.
    expect(budgets.get('quay.io')).toEqual({ registry: 'quay.io' });
    expect(budgets.has('gcr.io')).toBe(false);
  });

  it('gives the budget back as the window goes by, never above the limit', () => {
    const figures = (ago: number) => [
      limited('a', 'nginx:1', { limit: 60, remaining: 0, windowSeconds: 3600, observedTime: at(ago) }),
    ];
    expect(registryBudgets(figures(30 * MIN), NOW).get('docker.io')?.estimatedRemaining).toBe(30);
    expect(registryBudgets(figures(5 * 60 * MIN), NOW).get('docker.io')?.estimatedRemaining).toBe(60);
    expect(registryBudgets(figures(0), NOW).get('docker.io')?.allowance).toBe(0);
  });

  const group = (name: string, image: string, lastCheckedAgo?: number): PollTarget[] => {
    const [domain, ...rest] = image.split('/');
    return [
      {
        watchedImage: wi(
          name,
          { image },
          lastCheckedAgo === undefined ? undefined : { lastCheckedTime: at(lastCheckedAgo) },
        ),
        reference: { domain: domain!, path: rest.join('/').split(':')[0]!, tag: 'v1' },
        image,
        intervalMs: 5 * MIN,
      },
    ];
  };

  it('sends a budgeted registry at most its allowance, the first in the order given, and a paused one nothing', () => {
    const groups = [
      group('never', 'hub.example/b:v1'),
      group('oldest', 'hub.example/c:v1', 60 * MIN),
      group('recent', 'hub.example/a:v1', 6 * MIN),
      group('other', 'other.example/d:v1', 6 * MIN),
      group('paused', 'paused.example/e:v1', 6 * MIN),
      group('free', 'free.example/f:v1', 6 * MIN),
    ];
    const { send, deferred } = budgetChecks(
      groups,
      new Map([
        ['hub.example', { registry: 'hub.example', allowance: 2, limit: 10, estimatedRemaining: 3 }],
        ['other.example', { registry: 'other.example', allowance: 5 }],
        ['paused.example', { registry: 'paused.example', pausedUntil: NOW.getTime() + MIN }],
      ]),
      NOW,
    );
    expect(send.map((g) => g[0]!.watchedImage.metadata.name)).toEqual(['never', 'oldest', 'other', 'free']);
    expect(deferred.get('hub.example')).toMatchObject({ why: 'budget' });
    expect(deferred.get('hub.example')!.groups.map((g) => g[0]!.watchedImage.metadata.name)).toEqual([
      'recent',
    ]);
    expect(deferred.get('paused.example')).toMatchObject({ why: 'paused' });
    expect(deferred.has('other.example')).toBe(false);
  });

  it('keeps the lowest figures of a run, or new ones when the limit changes', () => {
    const f = (limit: number, remaining: number) => ({ limit, remaining, windowSeconds: 60 });
    expect(lowerBudget(undefined, f(10, 5))).toBe(true);
    expect(lowerBudget(f(10, 5), f(10, 4))).toBe(true);
    expect(lowerBudget(f(10, 4), f(10, 5))).toBe(false);
    expect(lowerBudget(f(10, 4), f(20, 15))).toBe(true);
    expect(lowerBudget(f(10, 4), undefined)).toBe(false);
  });
});

describe('remembered registry challenges', () => {
  it("reads back one challenge per registry, for the registry the WatchedImage's image names now", () => {
    expect(
      rememberedChallenges([
        wi('a', {}, checked(0, { registryChallenge: HUB_CHALLENGE })),
        wi('b', {}, checked(0, { registryChallenge: HUB_CHALLENGE })),
        wi(
          'c',
          { image: 'ghcr.io/acme/web:1' },
          checked(0, { registryChallenge: { registry: 'ghcr.io', scheme: 'Basic' } }),
        ),
        wi('d'),
      ]),
    ).toEqual([HUB_CHALLENGE, { registry: 'ghcr.io', scheme: 'Basic' }]);
  });

  it('sets aside a record whose registry is not the one spec.image names (the image moved)', () => {
    const moved = wi('a', { image: 'quay.io/acme/web:1' }, checked(0, { registryChallenge: HUB_CHALLENGE }));
    expect(rememberedChallenges([moved])).toEqual([]);
  });

  it('sets aside every record of a registry when they disagree, so no one WatchedImage steers the others', () => {
    const elsewhere = { ...HUB_CHALLENGE, realm: 'https://auth.docker.io/other' };
    expect(
      rememberedChallenges([
        wi('a', {}, checked(0, { registryChallenge: HUB_CHALLENGE })),
        wi('b', {}, checked(0, { registryChallenge: elsewhere })),
        wi('c', {}, checked(0, { registryChallenge: HUB_CHALLENGE })),
      ]),
    ).toEqual([]);
  });

  it.each([
    ['an unknown scheme', { ...HUB_CHALLENGE, scheme: 'Negotiate' }],
    ['Bearer without a realm', { registry: HUB_CHALLENGE.registry, scheme: 'Bearer' }],
    ['a realm that is not a string', { ...HUB_CHALLENGE, realm: 42 }],
    ['a service that is not a string', { ...HUB_CHALLENGE, service: ['x'] }],
    ['no registry', { scheme: 'Basic' }],
    ['not an object', 'Bearer realm=x'],
  ])('ignores a record with %s', (_what, record) => {
    const item = wi('a', {}, checked(0, { registryChallenge: record as never }));
    expect(rememberedChallenges([item])).toEqual([]);
  });

  it('keeps only the fields the poller writes', () => {
    const extra = { ...HUB_CHALLENGE, token: 'should-never-be-here' } as never;
    expect(rememberedChallenges([wi('a', {}, checked(0, { registryChallenge: extra }))])).toEqual([
      HUB_CHALLENGE,
    ]);
  });

  it('decide records the challenge the lookup knew, keeps the last one on a failure that learned none, and drops it when the registry asked for none', () => {
    const learned = { ...HUB_CHALLENGE, realm: 'https://auth.docker.io/v2' };
    const before = wi('a', {}, checked(60_000, { registryChallenge: HUB_CHALLENGE }));
    const ok = decide(target(before), { ok: true, digest: A, method: 'HEAD', challenge: learned }, NOW);
    expect(ok.status.registryChallenge).toEqual(learned);
    const failed = decide(
      target(before),
      { ok: false, reason: 'RegistryUnreachable', message: 'connection refused' },
      NOW,
    );
    expect(failed.status.registryChallenge).toEqual(HUB_CHALLENGE);
    const open = decide(target(before), { ok: true, digest: A, method: 'HEAD' }, NOW);
    expect(open.status.registryChallenge).toBeUndefined();
    expect(invalidStatus(before, 'bad', NOW).registryChallenge).toEqual(HUB_CHALLENGE);
  });
});
