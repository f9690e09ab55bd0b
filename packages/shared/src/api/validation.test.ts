import { describe, expect, it } from 'vitest';
import type { ImageUpdate } from './image-update.ts';
import { RULES_NOT_CHECKED, validateImageUpdate, validateWatchedImage } from './validation.ts';

const DIGEST_A = `sha256:${'a'.repeat(64)}`;
const DIGEST_B = `sha256:${'b'.repeat(64)}`;

function watchedImage(spec: Record<string, unknown>, status?: Record<string, unknown>) {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'WatchedImage',
    metadata: { name: 'web', namespace: 'default' },
    spec,
    ...(status ? { status } : {}),
  };
}

function imageUpdate(spec: Record<string, unknown>): ImageUpdate {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'ImageUpdate',
    metadata: { name: 'web-bbbbbbbbbb', namespace: 'default' },
    spec,
  } as ImageUpdate;
}

function errorsOf(result: { ok: true } | { ok: false; errors: string[] }): string[] {
  return result.ok ? [] : result.errors;
}

describe('validateWatchedImage', () => {
  it('applies the schema defaults, as the API server does, without touching the input', () => {
    const input = watchedImage({ image: 'nginx:1.27' });
    const result = validateWatchedImage(input);
    expect(result).toEqual({
      ok: true,
      value: watchedImage({
        image: 'nginx:1.27',
        kinds: ['Deployment'],
        updatePolicy: 'Auto',
        interval: '5m',
        suspend: false,
        historyLimit: 10,
        rollback: 'Never',
      }),
    });
    expect(input.spec).toEqual({ image: 'nginx:1.27' });
  });

  it('accepts every reference form with a tag or none', () => {
    for (const image of [
      'nginx',
      'nginx:1.27',
      'library/nginx:latest',
      'ghcr.io/acme/web:stable',
      'localhost:5000/team/app:v1.2.3',
      '127.0.0.1:41234/demo/web:2025-01',
      '[::1]:5000/app:tag',
    ]) {
      expect(errorsOf(validateWatchedImage(watchedImage({ image }))), image).toEqual([]);
    }
  });

  it('accepts a full spec and a status from both writers', () => {
    const result = validateWatchedImage(
      watchedImage(
        {
          image: 'ghcr.io/acme/web:stable',
          workloadSelector: {
            matchLabels: { 'app.kubernetes.io/name': 'web' },
            matchExpressions: [
              { key: 'tier', operator: 'In', values: ['frontend'] },
              { key: 'canary', operator: 'DoesNotExist' },
            ],
          },
          kinds: ['Deployment', 'DaemonSet'],
          containers: ['web'],
          updatePolicy: 'Observe',
          interval: '1m',
          pullSecrets: [{ name: 'regcred' }],
          suspend: true,
          historyLimit: 1,
        },
        {
          digest: DIGEST_A,
          shortDigest: 'aaaaaaaaaaaa',
          lastCheckedTime: '2025-01-31T12:00:00Z',
          rateLimit: { limit: 100, remaining: 0, windowSeconds: 21600 },
          observedGeneration: 3,
          workloads: [{ kind: 'Deployment', name: 'web', containers: ['web'] }],
          workloadCount: 1,
          latestUpdate: 'web-aaaaaaaaaa',
          conditions: [
            {
              type: 'Ready',
              status: 'True',
              reason: 'WorkloadsFound',
              message: '1 workload',
              lastTransitionTime: '2025-01-31T12:00:00Z',
              observedGeneration: 3,
            },
          ],
        },
      ),
    );
    expect(errorsOf(result)).toEqual([]);
  });

  // The same verdicts the API server gives (packages/shared/test/crds.test.ts checks it against a real one).
  it.each([
    { case: 'missing image', spec: {}, errors: ['spec.image: Required value', RULES_NOT_CHECKED] },
    {
      case: 'a digest',
      spec: { image: `nginx@${DIGEST_A}` },
      contains: 'spec.image: must not contain a digest: watch a tag, e.g. nginx:1.27',
    },
    {
      case: 'uppercase',
      spec: { image: 'Nginx' },
      contains: 'spec.image: must be an image reference',
    },
    {
      case: 'a name over 255 characters',
      spec: { image: `example.com/${'a'.repeat(250)}:v1` },
      errors: ['spec.image: repository name must not be more than 255 characters'],
    },
    {
      case: 'interval 30s',
      spec: { image: 'nginx', interval: '30s' },
      errors: ['spec.interval: must be at least 1m'],
    },
    {
      case: 'interval 5 minutes',
      spec: { image: 'nginx', interval: '5 minutes' },
      errors: [
        `spec.interval: Invalid value: "5 minutes": should match '^([0-9]+(\\.[0-9]+)?(ns|us|µs|μs|ms|s|m|h))+$'`,
      ],
    },
    {
      case: 'an interval that overflows',
      spec: { image: 'nginx', interval: '9999999999h' },
      errors: ['spec.interval: must be at least 1m'],
    },
    {
      case: 'unknown kind',
      spec: { image: 'nginx', kinds: ['Pod'] },
      errors: [
        'spec.kinds[0]: Unsupported value: "Pod": supported values: "Deployment", "StatefulSet", "DaemonSet", "CronJob"',
        RULES_NOT_CHECKED,
      ],
    },
    {
      case: 'duplicate kinds',
      spec: { image: 'nginx', kinds: ['Deployment', 'Deployment'] },
      errors: ['spec.kinds[1]: Duplicate value: "Deployment"'],
    },
    {
      case: 'historyLimit 0',
      spec: { image: 'nginx', historyLimit: 0 },
      errors: ['spec.historyLimit: Invalid value: 0: should be greater than or equal to 1'],
    },
    {
      case: 'In without values',
      spec: { image: 'nginx', workloadSelector: { matchExpressions: [{ key: 'app', operator: 'In' }] } },
      errors: [
        'spec.workloadSelector.matchExpressions[0].values: must not be empty when operator is In or NotIn',
      ],
    },
    {
      case: 'DoesNotExist with values',
      spec: {
        image: 'nginx',
        workloadSelector: { matchExpressions: [{ key: 'app', operator: 'DoesNotExist', values: ['x'] }] },
      },
      errors: [
        'spec.workloadSelector.matchExpressions[0].values: must be empty when operator is Exists or DoesNotExist',
      ],
    },
    {
      case: 'a bad matchLabels key',
      spec: { image: 'nginx', workloadSelector: { matchLabels: { 'a/b/c': 'x' } } },
      errors: [
        'spec.workloadSelector.matchLabels: keys must be valid label keys, e.g. app or app.kubernetes.io/name',
      ],
    },
    {
      case: 'an update window start that is not a time of day',
      spec: { image: 'nginx', updateWindows: [{ start: '7:00', end: '24:00' }] },
      errors: ['spec.updateWindows[0].start: must be a time of day HH:MM from 00:00 to 23:59, e.g. 22:00'],
    },
    {
      case: 'an update window end past midnight',
      spec: { image: 'nginx', updateWindows: [{ start: '22:00', end: '24:30' }] },
      errors: ['spec.updateWindows[0].end: must be a time of day HH:MM from 00:00 to 24:00, e.g. 06:00'],
    },
    {
      case: 'an update window day that is not a weekday name',
      spec: { image: 'nginx', updateWindows: [{ days: ['Monday'], start: '22:00', end: '06:00' }] },
      contains: 'spec.updateWindows[0].days[0]: Unsupported value: "Monday"',
    },
    {
      case: 'an offset as the time zone',
      spec: { image: 'nginx', updateWindows: [{ start: '22:00', end: '06:00', timeZone: '+01:00' }] },
      errors: [
        'spec.updateWindows[0].timeZone: must be an IANA time zone name such as Europe/Berlin or UTC (not an offset such as +01:00)',
      ],
    },
    {
      case: 'a minimumAge that is not a duration',
      spec: { image: 'nginx', minimumAge: '1 hour' },
      contains: 'spec.minimumAge: Invalid value: "1 hour"',
    },
    {
      case: 'an unknown rollback policy',
      spec: { image: 'nginx', rollback: 'Always' },
      contains: 'spec.rollback: Unsupported value: "Always"',
    },
    {
      case: 'duplicate pull secrets',
      spec: { image: 'nginx', pullSecrets: [{ name: 'a' }, { name: 'a' }] },
      errors: ['spec.pullSecrets[1]: Duplicate value: {"name":"a"}'],
    },
  ])('rejects $case', ({ spec, errors, contains }) => {
    const result = errorsOf(validateWatchedImage(watchedImage(spec)));
    if (errors) expect(result).toEqual(errors);
    if (contains) expect(result.some((error) => error.startsWith(contains))).toBe(true);
  });

  it('skips the CEL rules when a blocking error makes them meaningless, as the API server does', () => {
    const result = errorsOf(
      validateWatchedImage(watchedImage({ image: 'nginx', interval: '30s', historyLimit: 'x' })),
    );
    expect(result).toEqual([
      'spec.historyLimit: Invalid value: "x": must be of type integer',
      RULES_NOT_CHECKED,
    ]);
  });

  it('checks the status too', () => {
    const result = errorsOf(
      validateWatchedImage(
        watchedImage(
          { image: 'nginx' },
          {
            lastCheckedTime: 'yesterday',
            conditions: [
              {
                type: 'Ready',
                status: 'Maybe',
                reason: 'not ok',
                message: '',
                lastTransitionTime: '2025-01-31T12:00:00Z',
              },
              {
                type: 'Ready',
                status: 'True',
                reason: 'Ok',
                message: '',
                lastTransitionTime: '2025-01-31T12:00:00Z',
              },
            ],
          },
        ),
      ),
    );
    expect(result).toEqual([
      'status.lastCheckedTime: Invalid value: "yesterday": must be a date-time (RFC 3339, e.g. 2025-01-31T12:00:00Z)',
      'status.conditions[0].status: Unsupported value: "Maybe": supported values: "True", "False", "Unknown"',
      `status.conditions[0].reason: Invalid value: "not ok": should match '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$'`,
      'status.conditions[1]: Duplicate value: {"type":"Ready"}',
      RULES_NOT_CHECKED,
    ]);
  });

  it('ignores unknown fields, which the API server prunes', () => {
    expect(errorsOf(validateWatchedImage(watchedImage({ image: 'nginx', futureField: true })))).toEqual([]);
  });

  it('names the kind and apiVersion it expects', () => {
    expect(
      errorsOf(validateWatchedImage({ ...watchedImage({ image: 'nginx' }), kind: 'ImageUpdate' })),
    ).toEqual([
      'kind: Unsupported value: "ImageUpdate": supported values: "WatchedImage"',
      RULES_NOT_CHECKED,
    ]);
    expect(errorsOf(validateWatchedImage('nginx'))).toEqual([
      '<root>: Invalid value: "nginx": must be of type object',
      RULES_NOT_CHECKED,
    ]);
  });
});

describe('validateImageUpdate', () => {
  const created = imageUpdate({
    watchedImage: 'web',
    image: 'nginx:1.27',
    fromDigest: DIGEST_A,
    toDigest: DIGEST_B,
  });

  it('defaults approved to false', () => {
    const result = validateImageUpdate(created);
    expect(result.ok && result.value.spec.approved).toBe(false);
  });

  it('lets approved change against the stored object, and nothing else', () => {
    const stored = structuredClone(created);
    expect(
      errorsOf(validateImageUpdate({ ...created, spec: { ...created.spec, approved: true } }, stored)),
    ).toEqual([]);
    expect(
      errorsOf(
        validateImageUpdate(
          { ...created, spec: { ...created.spec, toDigest: `sha256:${'c'.repeat(64)}` } },
          stored,
        ),
      ),
    ).toEqual(['spec.toDigest: is immutable']);
    const { fromDigest: _removed, ...withoutFrom } = created.spec;
    expect(errorsOf(validateImageUpdate({ ...created, spec: withoutFrom }, stored))).toEqual([
      'spec.fromDigest: is immutable: it cannot be added or removed after creation',
    ]);
  });

  it('lets ignoreUpdateWindows change, and keeps detectedTime as created', () => {
    const withTime = { ...created, spec: { ...created.spec, detectedTime: '2026-12-07T12:00:00Z' } };
    const stored = structuredClone(withTime);
    expect(
      errorsOf(
        validateImageUpdate({ ...withTime, spec: { ...withTime.spec, ignoreUpdateWindows: true } }, stored),
      ),
    ).toEqual([]);
    expect(
      errorsOf(
        validateImageUpdate(
          { ...withTime, spec: { ...withTime.spec, detectedTime: '2026-12-07T13:00:00Z' } },
          stored,
        ),
      ),
    ).toEqual(['spec.detectedTime: is immutable']);
    expect(errorsOf(validateImageUpdate(created, stored))).toEqual([
      'spec.detectedTime: is immutable: it cannot be added or removed after creation',
    ]);
  });

  it('runs transition rules only on update', () => {
    const changed = { ...created, spec: { ...created.spec, watchedImage: 'other' } };
    expect(errorsOf(validateImageUpdate(changed))).toEqual([]);
    expect(errorsOf(validateImageUpdate(changed, created))).toEqual(['spec.watchedImage: is immutable']);
  });

  it('rejects digests that are not sha256 hex', () => {
    expect(
      errorsOf(validateImageUpdate({ ...created, spec: { ...created.spec, toDigest: 'sha256:abc' } })),
    ).toEqual([`spec.toDigest: Invalid value: "sha256:abc": should match '^sha256:[a-f0-9]{64}$'`]);
  });

  it('checks per-workload results keyed by kind, name and container', () => {
    const workload = { kind: 'Deployment', name: 'web', container: 'web', state: 'Patched' };
    const result = errorsOf(
      validateImageUpdate({
        ...created,
        status: {
          phase: 'Applying',
          progress: '0/2',
          workloads: [workload, { ...workload, state: 'Failed' }],
        },
      }),
    );
    expect(result).toEqual([
      'status.workloads[1]: Duplicate value: {"kind":"Deployment","name":"web","container":"web"}',
    ]);
  });
});
