import type { ImageUpdate, WatchedImage } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { age, decisionPatch, formatTable, historyTable, PluginError, statusTables } from './decisions.ts';

const NOW = new Date('2026-12-01T08:00:00Z');
const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;

function update(
  name: string,
  status: Partial<NonNullable<ImageUpdate['status']>> = {},
  annotations?: Record<string, string>,
): ImageUpdate {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'ImageUpdate',
    metadata: {
      name,
      namespace: 'apps',
      resourceVersion: '42',
      creationTimestamp: '2026-12-01T07:00:00Z',
      ...(annotations ? { annotations } : {}),
    },
    spec: { watchedImage: 'web', image: 'nginx:1.27', fromDigest: A, toDigest: B },
    status,
  } as ImageUpdate;
}

describe('decisionPatch', () => {
  it('sets spec.ignoreUpdateWindows only on an approval that asks for it', () => {
    const pending = update('web-b', { phase: 'Scheduled' });
    expect(decisionPatch(pending, 'approved', 'alice', NOW, { ignoreUpdateWindows: true }).spec).toEqual({
      approved: true,
      ignoreUpdateWindows: true,
    });
    expect(decisionPatch(pending, 'approved', 'alice', NOW).spec).toEqual({ approved: true });
    expect(decisionPatch(pending, 'rejected', 'alice', NOW, { ignoreUpdateWindows: true }).spec).toEqual({
      approved: false,
    });
  });

  it('approves with who and when, conditional on the version read', () => {
    expect(decisionPatch(update('web-b', { phase: 'AwaitingApproval' }), 'approved', 'alice', NOW)).toEqual({
      metadata: {
        resourceVersion: '42',
        annotations: {
          'kubewatcher.io/decision': 'approved',
          'kubewatcher.io/decided-by': 'alice',
          'kubewatcher.io/decided-at': '2026-12-01T08:00:00Z',
        },
      },
      spec: { approved: true },
    });
  });

  it('rejects by clearing spec.approved', () => {
    expect(
      decisionPatch(update('web-b', { phase: 'AwaitingApproval' }), 'rejected', 'bob', NOW).spec,
    ).toEqual({ approved: false });
  });

  it.each([
    ['Succeeded', 'approved', 'is Succeeded: there is nothing left to approve'],
    ['Superseded', 'rejected', 'is Superseded: there is nothing left to reject'],
  ] as const)('refuses a %s update', (phase, decision, message) => {
    expect(() => decisionPatch(update('web-b', { phase }), decision, 'alice', NOW)).toThrow(PluginError);
    expect(() => decisionPatch(update('web-b', { phase }), decision, 'alice', NOW)).toThrow(message);
  });

  it('refuses to reject what is already rolling out', () => {
    expect(() =>
      decisionPatch(
        update('web-b', { phase: 'RollingOut', appliedTime: '2026-12-01T07:59:00Z' }),
        'rejected',
        'a',
        NOW,
      ),
    ).toThrow('ImageUpdate apps/web-b was applied at 2026-12-01T07:59:00Z: it cannot be rejected now');
  });
});

describe('tables', () => {
  it('pads columns like kubectl', () => {
    expect(
      formatTable(
        ['A', 'LONGER'],
        [
          ['xyz', '1'],
          ['', '22'],
        ],
      ),
    ).toBe('A     LONGER\nxyz   1\n      22');
  });

  it.each([
    ['2026-12-01T07:59:30Z', '30s'],
    ['2026-12-01T07:30:00Z', '30m'],
    ['2026-11-30T20:00:00Z', '12h'],
    ['2026-11-20T08:00:00Z', '11d'],
    [undefined, '<none>'],
  ])('age of %s is %s', (since, expected) => {
    expect(age(since, NOW)).toBe(expected);
  });

  it('status lists the watched images and only the pending updates, with decisions', () => {
    const wi = {
      metadata: { name: 'web', namespace: 'apps' },
      spec: { image: 'nginx:1.27', updatePolicy: 'Manual' },
      status: {
        digest: A,
        workloadCount: 2,
        lastCheckedTime: '2026-12-01T07:58:00Z',
        conditions: [{ type: 'Ready', status: 'True' }],
      },
    } as unknown as WatchedImage;
    const out = statusTables(
      [wi],
      [
        update(
          'web-b',
          { phase: 'AwaitingApproval' },
          { 'kubewatcher.io/decision': 'rejected', 'kubewatcher.io/decided-by': 'bob' },
        ),
        update('web-old', { phase: 'Succeeded' }),
      ],
      NOW,
    );
    expect(out.split('\n')).toEqual([
      'NAMESPACE   WATCHEDIMAGE   IMAGE        DIGEST         POLICY   WORKLOADS   READY   LAST CHECKED',
      'apps        web            nginx:1.27   aaaaaaaaaaaa   Manual   2           True    2m',
      '',
      'NAMESPACE   IMAGEUPDATE   IMAGE        FROM           TO             PHASE              DECISION          AGE',
      'apps        web-b         nginx:1.27   aaaaaaaaaaaa   bbbbbbbbbbbb   AwaitingApproval   rejected by bob   60m',
    ]);
  });

  it('history is oldest first', () => {
    const older = {
      ...update('web-a', { phase: 'Succeeded', progress: '2/2' }),
      metadata: { name: 'web-a', creationTimestamp: '2026-11-30T08:00:00Z' },
    } as ImageUpdate;
    const lines = historyTable([update('web-b', { phase: 'RollingOut' }), older], NOW).split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['IMAGEUPDATE', 'web-a', 'web-b']);
  });
});
