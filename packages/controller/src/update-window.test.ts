import { describe, expect, it } from 'vitest';
import {
  isTimeZone,
  nextOpening,
  parseClockTime,
  type UpdateWindow,
  windowProblems,
  windowState,
} from './update-window.ts';

const WEEKNIGHTS: UpdateWindow = { days: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri'], start: '22:00', end: '06:00' };
const at = (iso: string) => new Date(iso);

describe('windowState', () => {
  it('is always open without windows', () => {
    expect(windowState(undefined, at('2026-12-01T12:00:00Z'))).toEqual({ open: true });
    expect(windowState([], at('2026-12-01T12:00:00Z'))).toEqual({ open: true });
  });

  // 2026-12-07 is a Monday.
  it.each([
    ['Monday 23:00: open until Tuesday 06:00', '2026-12-07T23:00:00Z', true, '2026-12-08T06:00:00.000Z'],
    [
      'Monday 22:00 exactly: open (start is inclusive)',
      '2026-12-07T22:00:00Z',
      true,
      '2026-12-08T06:00:00.000Z',
    ],
    [
      'Tuesday 05:59: still open (crossed midnight)',
      '2026-12-08T05:59:00Z',
      true,
      '2026-12-08T06:00:00.000Z',
    ],
    [
      'Tuesday 06:00: closed (end is exclusive), opens at 22:00',
      '2026-12-08T06:00:00Z',
      false,
      '2026-12-08T22:00:00.000Z',
    ],
    ['Monday 21:59: opens in a minute', '2026-12-07T21:59:00Z', false, '2026-12-07T22:00:00.000Z'],
    [
      'Saturday 05:00: the window Friday opened is still open',
      '2026-12-12T05:00:00Z',
      true,
      '2026-12-12T06:00:00.000Z',
    ],
    [
      'Saturday 07:00: next opening is Monday night',
      '2026-12-12T07:00:00Z',
      false,
      '2026-12-14T22:00:00.000Z',
    ],
    ['Sunday 23:00: Sunday is not a window day', '2026-12-13T23:00:00Z', false, '2026-12-14T22:00:00.000Z'],
    [
      'Monday 03:00: Sunday night opened no window',
      '2026-12-14T03:00:00Z',
      false,
      '2026-12-14T22:00:00.000Z',
    ],
  ])('%s', (_name, instant, open, change) => {
    const state = windowState([WEEKNIGHTS], at(instant));
    expect(state.open).toBe(open);
    expect((state.open ? state.closes : state.opens)?.toISOString()).toBe(change);
  });

  it.each([
    // 2026-01-15 is a Thursday; Berlin is UTC+1 in winter, UTC+2 in summer.
    [
      'Berlin office hours in winter: 08:30Z is 09:30 CET',
      'Europe/Berlin',
      '2026-01-15T08:30:00Z',
      true,
      '2026-01-15T16:00:00.000Z',
    ],
    [
      'Berlin office hours in summer: 07:30Z is 09:30 CEST',
      'Europe/Berlin',
      '2026-07-16T07:30:00Z',
      true,
      '2026-07-16T15:00:00.000Z',
    ],
    [
      'Berlin before nine: 07:30Z is 08:30 CET',
      'Europe/Berlin',
      '2026-01-15T07:30:00Z',
      false,
      '2026-01-15T08:00:00.000Z',
    ],
    [
      'New York: 13:59Z is 08:59 EST',
      'America/New_York',
      '2026-01-15T13:59:00Z',
      false,
      '2026-01-15T14:00:00.000Z',
    ],
    [
      'Kolkata (+05:30): 03:30Z is 09:00 IST',
      'Asia/Kolkata',
      '2026-01-15T03:30:00Z',
      true,
      '2026-01-15T11:30:00.000Z',
    ],
    [
      'Auckland is a day ahead: Friday 22:00Z is Saturday there',
      'Pacific/Auckland',
      '2026-01-16T22:00:00Z',
      false,
      '2026-01-18T20:00:00.000Z',
    ],
  ])('%s', (_name, timeZone, instant, open, change) => {
    const window: UpdateWindow = {
      days: ['Mon', 'Tue', 'Wed', 'Thu', 'Fri'],
      start: '09:00',
      end: '17:00',
      timeZone,
    };
    const state = windowState([window], at(instant));
    expect(state.open).toBe(open);
    expect((state.open ? state.closes : state.opens)?.toISOString()).toBe(change);
  });

  it('ends at midnight with 24:00, and every day when days is absent', () => {
    const evening: UpdateWindow = { start: '18:00', end: '24:00' };
    expect(windowState([evening], at('2026-12-13T23:59:59Z'))).toEqual({
      open: true,
      closes: at('2026-12-14T00:00:00Z'),
    });
    expect(windowState([evening], at('2026-12-14T00:00:00Z'))).toEqual({
      open: false,
      opens: at('2026-12-14T18:00:00Z'),
    });
  });

  it('treats overlapping and touching windows as one stretch', () => {
    const windows: UpdateWindow[] = [
      { start: '01:00', end: '03:00' },
      { start: '02:00', end: '04:00' },
      { start: '04:00', end: '05:00' },
    ];
    expect(windowState(windows, at('2026-12-07T01:30:00Z'))).toEqual({
      open: true,
      closes: at('2026-12-07T05:00:00Z'),
    });
    // The earliest of several next openings wins, whatever the list order.
    expect(nextOpening([{ start: '10:00', end: '11:00' }, ...windows], at('2026-12-07T12:00:00Z'))).toEqual(
      at('2026-12-08T01:00:00Z'),
    );
  });

  it('mixes time zones: each window reads its own clock', () => {
    const windows: UpdateWindow[] = [
      { start: '02:00', end: '03:00', timeZone: 'America/New_York' }, // 07:00Z–08:00Z in winter
      { start: '02:00', end: '03:00', timeZone: 'Asia/Tokyo' }, // 17:00Z–18:00Z the day before
    ];
    expect(nextOpening(windows, at('2026-12-07T09:00:00Z'))).toEqual(at('2026-12-07T17:00:00Z'));
    expect(nextOpening(windows, at('2026-12-07T18:00:00Z'))).toEqual(at('2026-12-08T07:00:00Z'));
    expect(nextOpening(windows, at('2026-12-08T07:30:00Z'))).toEqual(at('2026-12-08T07:30:00Z'));
  });
});

describe('windows on DST change days', () => {
  // Europe/Berlin springs forward on Sunday 2026-03-29 at 01:00Z (02:00 CET → 03:00 CEST) and falls
  // back on Sunday 2026-10-25 at 01:00Z (03:00 CEST → 02:00 CET).
  const berlin = (start: string, end: string, days?: UpdateWindow['days']): UpdateWindow => ({
    start,
    end,
    timeZone: 'Europe/Berlin',
    ...(days ? { days } : {}),
  });

  it.each([
    // [name, window, from, expected opening, expected closing]
    [
      'spring forward: a start inside the skipped hour opens at the jump',
      berlin('02:30', '04:00'),
      '2026-03-28T23:00:00Z',
      '2026-03-29T01:00:00.000Z', // 03:00 CEST
      '2026-03-29T02:00:00.000Z', // 04:00 CEST
    ],
    [
      'spring forward: a window wholly inside the skipped hour does not open that day',
      berlin('02:00', '02:30'),
      '2026-03-28T23:00:00Z',
      '2026-03-30T00:00:00.000Z', // Monday 02:00 CEST
      '2026-03-30T00:30:00.000Z',
    ],
    [
      'spring forward: a window across the jump is an hour shorter',
      berlin('01:00', '09:00'),
      '2026-03-28T23:00:00Z',
      '2026-03-29T00:00:00.000Z', // 01:00 CET
      '2026-03-29T07:00:00.000Z', // 09:00 CEST: 7 hours
    ],
    [
      'spring forward: a window crossing midnight into the change day',
      berlin('23:00', '02:30', ['Sat']),
      '2026-03-28T12:00:00Z',
      '2026-03-28T22:00:00.000Z', // Saturday 23:00 CET
      '2026-03-29T01:00:00.000Z', // 02:30 does not exist: closes at the jump to 03:00
    ],
    [
      'fall back: a start in the repeated hour counts at its first occurrence',
      berlin('02:30', '04:00'),
      '2026-10-24T23:00:00Z',
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T03:00:00.000Z', // 04:00 CET: 2.5 hours of real time
    ],
    [
      'fall back: a window across the repeated hour is an hour longer',
      berlin('01:00', '09:00'),
      '2026-10-24T22:00:00Z',
      '2026-10-24T23:00:00.000Z', // 01:00 CEST
      '2026-10-25T08:00:00.000Z', // 09:00 CET: 9 hours
    ],
    [
      'fall back: a window inside the repeated hour opens once, at the first pass',
      berlin('02:15', '02:45'),
      '2026-10-24T23:00:00Z',
      '2026-10-25T00:15:00.000Z',
      '2026-10-25T00:45:00.000Z',
    ],
    [
      'New York springs forward at 07:00Z on 2026-03-08: 02:30 opens at 03:00 EDT',
      { start: '02:30', end: '05:00', timeZone: 'America/New_York' },
      '2026-03-08T05:00:00Z',
      '2026-03-08T07:00:00.000Z',
      '2026-03-08T09:00:00.000Z',
    ],
    [
      'New York falls back at 06:00Z on 2026-11-01: 01:30 EDT is the first 01:30',
      { start: '01:30', end: '03:00', timeZone: 'America/New_York' },
      '2026-11-01T04:00:00Z',
      '2026-11-01T05:30:00.000Z', // 01:30 EDT
      '2026-11-01T08:00:00.000Z', // 03:00 EST
    ],
    [
      'Sydney falls back in April (southern hemisphere): 03:00 AEDT → 02:00 AEST on 2026-04-05',
      { start: '02:30', end: '03:30', timeZone: 'Australia/Sydney' },
      '2026-04-04T14:00:00Z',
      '2026-04-04T15:30:00.000Z', // 02:30 AEDT
      '2026-04-04T17:30:00.000Z', // 03:30 AEST
    ],
    [
      'Lord Howe springs forward by half an hour (02:00 → 02:30 on 2026-10-04)',
      { start: '02:00', end: '02:20', timeZone: 'Australia/Lord_Howe' },
      '2026-10-03T14:00:00Z',
      '2026-10-04T15:00:00.000Z', // not on the 4th: Monday 02:00 +11
      '2026-10-04T15:20:00.000Z',
    ],
  ])('%s', (_name, window, from, opens, closes) => {
    const opening = nextOpening([window], at(from));
    expect(opening?.toISOString()).toBe(opens);
    const state = windowState([window], opening!);
    expect(state).toEqual({ open: true, closes: at(closes) });
  });

  it('stays open through the fall-back hour when the clock drops below the start again', () => {
    // 01:15Z is 02:15 CET, earlier on the wall clock than the 02:30 start, yet the window opened at
    // 02:30 CEST and has not reached 04:00.
    expect(windowState([berlin('02:30', '04:00')], at('2026-10-25T01:15:00Z'))).toEqual({
      open: true,
      closes: at('2026-10-25T03:00:00Z'),
    });
    // The second pass of 02:15–02:45 does not reopen the window.
    expect(windowState([berlin('02:15', '02:45')], at('2026-10-25T01:20:00Z'))).toEqual({
      open: false,
      opens: at('2026-10-26T01:15:00Z'),
    });
  });
});

describe('nextOpening', () => {
  it('is the instant itself inside a window', () => {
    expect(nextOpening([WEEKNIGHTS], at('2026-12-07T23:00:00Z'))).toEqual(at('2026-12-07T23:00:00Z'));
    expect(nextOpening(undefined, at('2026-12-07T12:00:00Z'))).toEqual(at('2026-12-07T12:00:00Z'));
  });

  it('finds a window a week away', () => {
    const mondays: UpdateWindow = { days: ['Mon'], start: '10:00', end: '11:00' };
    expect(nextOpening([mondays], at('2026-12-07T11:00:00Z'))).toEqual(at('2026-12-14T10:00:00Z'));
  });

  it('reads start equal to end as a whole day, from start to the same time the next day', () => {
    const mondays: UpdateWindow = { days: ['Mon'], start: '10:00', end: '10:00' };
    expect(windowState([mondays], at('2026-12-08T09:59:00Z'))).toEqual({
      open: true,
      closes: at('2026-12-08T10:00:00Z'),
    });
    expect(nextOpening([mondays], at('2026-12-08T10:00:00Z'))).toEqual(at('2026-12-14T10:00:00Z'));
  });
});

describe('parseClockTime, isTimeZone, windowProblems', () => {
  it.each([
    ['00:00', false, 0],
    ['23:59', false, 1439],
    ['24:00', true, 1440],
    ['24:00', false, undefined],
    ['24:01', true, undefined],
    ['7:00', false, undefined],
    ['07:60', false, undefined],
    ['25:00', true, undefined],
  ])('parseClockTime(%s, end=%s) = %s', (text, end, minutes) => {
    expect(parseClockTime(text, end)).toBe(minutes);
  });

  it.each([
    ['Europe/Berlin', true],
    ['UTC', true],
    ['US/Pacific', true],
    ['Nowhere/City', false],
    ['+01:00', false],
    ['', false],
  ])('isTimeZone(%s) = %s', (zone, known) => {
    expect(isTimeZone(zone)).toBe(known);
  });

  it('names the field and value of an unknown time zone', () => {
    expect(
      windowProblems([
        { start: '01:00', end: '02:00' },
        { start: '01:00', end: '02:00', timeZone: 'Mars/Olympus' },
      ]),
    ).toEqual([
      'spec.updateWindows[1].timeZone: "Mars/Olympus" is not an IANA time zone known to this controller (e.g. Europe/Berlin, America/New_York, UTC)',
    ]);
    expect(windowProblems(undefined)).toEqual([]);
  });
});
