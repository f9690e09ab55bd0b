import { describe, expect, it } from 'vitest';
import {
  CHECK_RECORD_KEY,
  formatCheckRecord,
  MAX_RECORD_AGE_MS,
  mayLeaveUnwritten,
  mergeCheckRecords,
  parseCheckRecord,
  pruneCheckRecord,
  SCHEDULE_SLACK_MS,
} from './check-record.ts';

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const MINUTE = 60_000;

describe('the check record as stored', () => {
  it('round-trips: uids grouped by check time, oldest first', () => {
    const checks = new Map([
      ['b', T0 + MINUTE],
      ['a', T0],
      ['c', T0 + MINUTE],
    ]);
    const text = formatCheckRecord(checks);
    expect(JSON.parse(text)).toEqual({
      version: 1,
      checks: [
        { checkedAt: '2026-12-01T10:00:00.000Z', uids: ['a'] },
        { checkedAt: '2026-12-01T10:01:00.000Z', uids: ['b', 'c'] },
      ],
    });
    expect(parseCheckRecord(text)).toEqual({ checks });
  });

  it('a ConfigMap as shipped (no value) is an empty record, without a problem', () => {
    expect(parseCheckRecord(undefined)).toEqual({ checks: new Map() });
    expect(parseCheckRecord('  ')).toEqual({ checks: new Map() });
  });

  it.each([
    ['not JSON', '{', /is not JSON/],
    ['another version', '{"version":2,"checks":[]}', /not a version 1 check record/],
    ['no list', '{"version":1}', /not a version 1 check record/],
    ['an entry without a time', '{"version":1,"checks":[{"uids":["a"]}]}', /without checkedAt or uids/],
    [
      'a time that is not one',
      '{"version":1,"checks":[{"checkedAt":"soon","uids":["a"]}]}',
      /without checkedAt or uids/,
    ],
  ])('a value edited into %s is read as empty and named', (_what, text, problem) => {
    const read = parseCheckRecord(text);
    expect(read.checks.size).toBe(0);
    expect(read.problem).toMatch(problem);
    expect(read.problem).toContain(CHECK_RECORD_KEY);
  });

  it('keeps the newer check of a uid listed twice, and skips uids that are not strings', () => {
    const text = JSON.stringify({
      version: 1,
      checks: [
        { checkedAt: new Date(T0 + MINUTE).toISOString(), uids: ['a', 7, ''] },
        { checkedAt: new Date(T0).toISOString(), uids: ['a'] },
      ],
    });
    expect(parseCheckRecord(text).checks).toEqual(new Map([['a', T0 + MINUTE]]));
  });
});

describe('merging and pruning', () => {
  it('a merge keeps each uid at its newer check', () => {
    const merged = mergeCheckRecords(
      new Map([
        ['a', T0],
        ['b', T0 + MINUTE],
      ]),
      new Map([
        ['a', T0 + 2 * MINUTE],
        ['b', T0],
        ['c', T0],
      ]),
    );
    expect(merged).toEqual(
      new Map([
        ['a', T0 + 2 * MINUTE],
        ['b', T0 + MINUTE],
        ['c', T0],
      ]),
    );
  });

  it('drops what a status already covers, and deleted WatchedImages when every namespace was listed', () => {
    const checks = new Map([
      ['newer', T0 + 5 * MINUTE],
      ['written-over', T0 + 5 * MINUTE],
      ['never-written', T0],
      ['gone', T0],
    ]);
    const lastWritten = new Map([
      ['newer', T0],
      ['written-over', T0 + 6 * MINUTE],
      ['never-written', Number.NaN],
    ]);
    const now = T0 + 7 * MINUTE;
    expect(pruneCheckRecord(checks, { lastWritten, allNamespaces: true, now })).toEqual(
      new Map([
        ['newer', T0 + 5 * MINUTE],
        ['never-written', T0],
      ]),
    );
    // A run over some namespaces keeps what it did not list, for a week at most.
    const some = pruneCheckRecord(checks, { lastWritten, allNamespaces: false, now });
    expect(some.get('gone')).toBe(T0);
    const later = pruneCheckRecord(checks, {
      lastWritten,
      allNamespaces: false,
      now: T0 + MAX_RECORD_AGE_MS + 1,
    });
    expect(later.has('gone')).toBe(false);
  });
});

describe('mayLeaveUnwritten', () => {
  const interval = 5 * MINUTE;
  /** The uids of `n` WatchedImages checked on time at `now`, their last check written one interval before. */
  const leftOf = (n: number, now: number) =>
    Array.from({ length: n }, (_, i) => `uid-${i}`).filter((uid) =>
      mayLeaveUnwritten({ uid, lastWritten: now - interval, intervalMs: interval, now }),
    );

  it('leaves about half of the WatchedImages due together unwritten, and the other half at the next interval', () => {
    const now = T0 + interval;
    const first = leftOf(1000, now);
    expect(first.length).toBeGreaterThan(400);
    expect(first.length).toBeLessThan(600);
    const next = new Set(leftOf(1000, now + interval));
    // The next interval's half is exactly the other one.
    expect(first.filter((uid) => next.has(uid))).toEqual([]);
    expect(first.length + next.size).toBe(1000);
  });

  it('never twice in a row: a check after an unwritten one is written', () => {
    const now = T0 + 2 * interval;
    const uid = leftOf(50, now)[0]!;
    expect(mayLeaveUnwritten({ uid, lastWritten: now - interval, intervalMs: interval, now })).toBe(true);
    expect(
      mayLeaveUnwritten({
        uid,
        lastWritten: now - 2 * interval,
        recorded: now - interval,
        intervalMs: interval,
        now,
      }),
    ).toBe(false);
    // A record entry older than the written check is one the status already covers.
    expect(
      mayLeaveUnwritten({
        uid,
        lastWritten: now - interval,
        recorded: now - 2 * interval,
        intervalMs: interval,
        now,
      }),
    ).toBe(true);
  });

  it('a late check (more than one interval and the slack after the written one) and a first check are written', () => {
    const now = T0 + 4 * interval;
    const uid = leftOf(50, now)[0]!;
    expect(
      mayLeaveUnwritten({
        uid,
        lastWritten: now - interval - SCHEDULE_SLACK_MS,
        intervalMs: interval,
        now,
      }),
    ).toBe(true);
    expect(
      mayLeaveUnwritten({
        uid,
        lastWritten: now - interval - SCHEDULE_SLACK_MS - 1,
        intervalMs: interval,
        now,
      }),
    ).toBe(false);
    expect(mayLeaveUnwritten({ uid, lastWritten: Number.NaN, intervalMs: interval, now })).toBe(false);
  });
});
