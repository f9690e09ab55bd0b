import { describe, expect, it } from 'vitest';
import { refusedDigest, rollbackImage, type ScheduleInput, scheduleUpdate } from './update-control.ts';
import type { UpdateWindow } from './update-window.ts';

const HOUR = 3_600_000;
const NIGHTS: UpdateWindow[] = [{ start: '22:00', end: '06:00' }];
const at = (iso: string) => new Date(iso);

describe('scheduleUpdate', () => {
  const base = (over: Partial<ScheduleInput>): ScheduleInput => ({
    detectedTime: at('2026-12-07T12:00:00Z'),
    now: at('2026-12-07T12:00:00Z'),
    ...over,
  });

  it.each<[string, Partial<ScheduleInput>, string | undefined, string | undefined]>([
    // [name, input, expected start time (undefined: start now), expected reason]
    ['no windows, no minimum age: starts at once', {}, undefined, undefined],
    [
      'inside a window: starts at once',
      { now: at('2026-12-07T23:00:00Z'), updateWindows: NIGHTS },
      undefined,
      undefined,
    ],
    [
      'outside: waits for the window',
      { updateWindows: NIGHTS },
      '2026-12-07T22:00:00.000Z',
      'OutsideUpdateWindow',
    ],
    [
      'young digest: waits for the minimum age',
      { minimumAgeMs: HOUR },
      '2026-12-07T13:00:00.000Z',
      'MinimumAge',
    ],
    [
      'old enough: starts at once',
      { minimumAgeMs: HOUR, now: at('2026-12-07T13:00:00Z') },
      undefined,
      undefined,
    ],
    [
      'minimum age ends inside a window: the age decides',
      {
        minimumAgeMs: HOUR,
        detectedTime: at('2026-12-07T22:30:00Z'),
        now: at('2026-12-07T22:30:00Z'),
        updateWindows: NIGHTS,
      },
      '2026-12-07T23:30:00.000Z',
      'MinimumAge',
    ],
    [
      'minimum age ends after the window closed: the next window decides',
      {
        minimumAgeMs: HOUR,
        detectedTime: at('2026-12-08T05:30:00Z'),
        now: at('2026-12-08T05:30:00Z'),
        updateWindows: NIGHTS,
      },
      '2026-12-08T22:00:00.000Z',
      'OutsideUpdateWindow',
    ],
    [
      'ignoreUpdateWindows starts outside a window',
      { updateWindows: NIGHTS, ignoreUpdateWindows: true },
      undefined,
      undefined,
    ],
    [
      'ignoreUpdateWindows still waits for the minimum age',
      { updateWindows: NIGHTS, ignoreUpdateWindows: true, minimumAgeMs: HOUR },
      '2026-12-07T13:00:00.000Z',
      'MinimumAge',
    ],
    [
      'a detection time in the future (clock skew) waits for it',
      { detectedTime: at('2026-12-07T12:00:30Z'), minimumAgeMs: 0 },
      '2026-12-07T12:00:30.000Z',
      'MinimumAge',
    ],
  ])('%s', (_name, over, startTime, reason) => {
    const decision = scheduleUpdate(base(over));
    if (startTime === undefined) {
      expect(decision).toEqual({ start: true });
      return;
    }
    expect(decision.start).toBe(false);
    if (decision.start) return;
    expect(decision.startTime?.toISOString()).toBe(startTime);
    expect(decision.reason).toBe(reason);
    expect(decision.message).toContain(`${startTime.slice(0, 19)}Z`);
  });

  it('names both causes when the window opens after the minimum age', () => {
    const decision = scheduleUpdate(base({ minimumAgeMs: HOUR, updateWindows: NIGHTS }));
    expect(decision).toEqual({
      start: false,
      startTime: at('2026-12-07T22:00:00Z'),
      reason: 'OutsideUpdateWindow',
      message:
        'starts at 2026-12-07T22:00:00Z, when the next update window opens; the new digest was first seen at 2026-12-07T12:00:00Z and reaches spec.minimumAge at 2026-12-07T13:00:00Z',
    });
  });

  it('skips a Sunday whose window lies in the hour the clock springs over', () => {
    const never: UpdateWindow[] = [
      { start: '02:00', end: '02:30', timeZone: 'Europe/Berlin', days: ['Sun'] },
    ];
    // 2026-03-29 skips 02:00–03:00 in Berlin: the window first opens the Sunday after.
    const decision = scheduleUpdate(
      base({
        updateWindows: never,
        now: at('2026-03-28T12:00:00Z'),
        detectedTime: at('2026-03-28T12:00:00Z'),
      }),
    );
    expect(decision.start).toBe(false);
    if (!decision.start) expect(decision.startTime?.toISOString()).toBe('2026-04-05T00:00:00.000Z');
  });
});

describe('rollbackImage', () => {
  const A = `sha256:${'a'.repeat(64)}`;
  it.each([
    ['a pinned previous image is put back exactly', `nginx:1.27@${A}`, undefined, `nginx:1.27@${A}`],
    [
      'a pinned previous image keeps its own digest',
      `nginx:1.27@${A}`,
      `sha256:${'f'.repeat(64)}`,
      `nginx:1.27@${A}`,
    ],
    ['a bare tag is pinned to the digest before the change', 'nginx:1.27', A, `nginx:1.27@${A}`],
    [
      'a registry with a port keeps its spelling',
      'localhost:5000/web:stable',
      A,
      `localhost:5000/web:stable@${A}`,
    ],
    ['without a known previous digest the tag goes back as it was', 'nginx:1.27', undefined, 'nginx:1.27'],
  ])('%s', (_name, previous, from, expected) => {
    expect(rollbackImage(previous, from)).toBe(expected);
  });
});

describe('refusedDigest', () => {
  const u = (name: string, toDigest: string, phase?: string) => ({
    metadata: { name },
    spec: { toDigest },
    ...(phase ? { status: { phase } } : {}),
  });
  it.each([
    ['nothing rolled back', [u('a', 'B', 'Succeeded')], undefined],
    ['the newest update was rolled back', [u('a', 'B', 'Succeeded'), u('b', 'C', 'RolledBack')], 'C'],
    [
      'a later update to the same digest is still refused',
      [u('b', 'C', 'RolledBack'), u('c', 'C', 'Pending')],
      'C',
    ],
    ['the tag moved on: nothing refused', [u('b', 'C', 'RolledBack'), u('c', 'D', 'Pending')], undefined],
    [
      'moved on and back: nothing refused',
      [u('b', 'C', 'RolledBack'), u('c', 'D', 'Succeeded'), u('d', 'C')],
      undefined,
    ],
    ['an older rollback behind a success', [u('a', 'B', 'RolledBack'), u('b', 'C', 'Succeeded')], undefined],
    ['no updates', [], undefined],
  ])('%s', (_name, updates, digest) => {
    expect(refusedDigest(updates)?.digest).toBe(digest);
  });
});
