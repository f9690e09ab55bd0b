/**
 * Update windows: the times of the week a WatchedImage's updates may start. Pure functions of the
 * windows and an instant; time zones come from the IANA database that Intl carries.
 *
 * A window opens, on each of its days, at the first instant the wall clock of its time zone reads
 * `start` or later, and closes at the first instant after that the clock reads `end` or later (on the
 * next day when `end` is not after `start`: the window crosses midnight; `24:00` is midnight at the
 * end of the day). Reading the wall clock this way settles the two DST cases the way a person reading
 * a clock would: when the clock springs forward over `start`, the window opens at the jump (02:30 in a
 * 02:00→03:00 gap opens at 03:00) and a window wholly inside the gap does not open that day; when the
 * clock falls back, a time that occurs twice counts at its first occurrence, so a window is one
 * interval of real time and never opens twice in a night.
 */

import type { UpdateWindow, Weekday } from '@kubewatcher/shared';

export type { UpdateWindow };

/** Weekday names in the order of Date's getUTCDay(). */
const DAY_NAMES: readonly Weekday[] = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];

/** An opening of one window: the instants it opens and closes (closes is exclusive). */
export interface WindowInterval {
  opens: Date;
  closes: Date;
  window: UpdateWindow;
}

export type WindowState =
  /** Inside a window (or no windows at all: always open); `closes` is absent then. */
  | { open: true; closes?: Date }
  /** Outside every window; `opens` is the next opening, absent only when no window ever opens. */
  | { open: false; opens?: Date };

const MINUTE = 60_000;
const DAY = 86_400_000;
/** A week and a day either side: every weekly window opens in that span, DST days included. */
const HORIZON_DAYS = 8;

/** `HH:MM` as minutes after midnight, or undefined. `24:00` is allowed only where `end` is meant. */
export function parseClockTime(text: string, allowEndOfDay = false): number | undefined {
  const m = /^([01][0-9]|2[0-4]):([0-5][0-9])$/.exec(text);
  if (!m) return undefined;
  const minutes = Number(m[1]) * 60 + Number(m[2]);
  if (minutes > 24 * 60 || (minutes === 24 * 60 && !allowEndOfDay)) return undefined;
  return minutes;
}

const formats = new Map<string, Intl.DateTimeFormat>();

/** Whether Intl knows the IANA time zone (aliases such as US/Pacific included; UTC offsets are not zones). */
export function isTimeZone(zone: string): boolean {
  if (!/^[A-Za-z]/.test(zone)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

function format(zone: string): Intl.DateTimeFormat {
  let f = formats.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formats.set(zone, f);
  }
  return f;
}

/** The wall clock of `zone` at instant `ms`, as milliseconds of a UTC date with the same fields. */
function wallClock(zone: string, ms: number): number {
  const parts: Record<string, number> = {};
  for (const p of format(zone).formatToParts(new Date(ms))) {
    if (p.type !== 'literal') parts[p.type] = Number(p.value);
  }
  return Date.UTC(parts.year!, parts.month! - 1, parts.day!, parts.hour!, parts.minute!, parts.second!);
}

/** The zone's offset from UTC at an instant, in milliseconds (whole seconds, as the database has them). */
function offsetAt(zone: string, ms: number): number {
  const whole = Math.floor(ms / 1000) * 1000;
  return wallClock(zone, whole) - whole;
}

/**
 * The first instant at which the wall clock of `zone` reads `wall` (a UTC-field date) or later,
 * provided it still reads the same date then; undefined when the date never shows a time that late
 * (the clock jumped past the whole rest of the day).
 */
function firstInstantAtOrAfter(zone: string, wall: number): number | undefined {
  // At most one offset change lies within a day of any instant in real zones, and the instant sought
  // is within 14 hours of `wall`: the offsets a day either side are the only two in play.
  const before = offsetAt(zone, wall - DAY);
  const after = offsetAt(zone, wall + DAY);
  const exact = [wall - before, wall - after]
    .filter((x) => wallClock(zone, x) === wall)
    .sort((a, b) => a - b);
  if (exact.length > 0) return exact[0];
  // `wall` falls in a gap (the clock sprang forward over it): the first instant past it is the jump.
  let lo = wall - after; // still on the old offset
  let hi = wall - before; // already on the new one
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2000) * 1000;
    if (offsetAt(zone, mid) === after) hi = mid;
    else lo = mid;
  }
  const jumpTo = wallClock(zone, hi);
  return Math.floor(jumpTo / DAY) === Math.floor(wall / DAY) ? hi : undefined;
}

/** The opening of `window` on the local date `day` (midnight of it, UTC fields), if it opens then. */
function intervalOn(window: UpdateWindow, day: number): WindowInterval | undefined {
  const zone = window.timeZone ?? 'UTC';
  const weekday = DAY_NAMES[new Date(day).getUTCDay()]!;
  if (window.days && window.days.length > 0 && !window.days.includes(weekday)) return undefined;
  const start = parseClockTime(window.start);
  const end = parseClockTime(window.end, true);
  if (start === undefined || end === undefined) return undefined;
  const opens = firstInstantAtOrAfter(zone, day + start * MINUTE);
  if (opens === undefined) return undefined;
  const endWall = end > start ? day + end * MINUTE : day + DAY + end * MINUTE;
  // 24:00 is 00:00 of the next day; a clock that springs forward over that midnight closes at the jump.
  const closes = firstInstantAtOrAfter(zone, endWall);
  if (closes === undefined || closes <= opens) return undefined;
  return { opens: new Date(opens), closes: new Date(closes), window };
}

/** Openings of the windows whose local dates lie within `fromDay`..`toDay` days of `at`, by opening time. */
function intervalsAround(
  windows: readonly UpdateWindow[],
  at: number,
  fromDay: number,
  toDay: number,
): WindowInterval[] {
  const out: WindowInterval[] = [];
  for (const window of windows) {
    const today = Math.floor(wallClock(window.timeZone ?? 'UTC', at) / DAY) * DAY;
    for (let d = fromDay; d <= toDay; d++) {
      const interval = intervalOn(window, today + d * DAY);
      if (interval) out.push(interval);
    }
  }
  return out.sort((a, b) => a.opens.getTime() - b.opens.getTime());
}

/**
 * Whether `at` lies inside one of the windows, and when the state next changes: when the windows
 * it is inside close (the latest of overlapping ones that form one stretch), or when the next opens.
 * No windows means always open.
 */
export function windowState(windows: readonly UpdateWindow[] | undefined, at: Date): WindowState {
  if (!windows || windows.length === 0) return { open: true };
  const t = at.getTime();
  // A window that crosses midnight opened yesterday (or, after a fall-back at midnight, the day before).
  const intervals = intervalsAround(windows, t, -2, HORIZON_DAYS);
  const containing = intervals.filter((i) => i.opens.getTime() <= t && t < i.closes.getTime());
  if (containing.length > 0) {
    let closes = Math.max(...containing.map((i) => i.closes.getTime()));
    // Overlapping or touching windows are one stretch of open time.
    for (const i of intervals) {
      if (i.opens.getTime() <= closes && i.closes.getTime() > closes) closes = i.closes.getTime();
    }
    return { open: true, closes: new Date(closes) };
  }
  const next = intervals.find((i) => i.opens.getTime() > t);
  return next ? { open: false, opens: next.opens } : { open: false };
}

/** The first instant at or after `at` inside a window (`at` itself when it is inside one). */
export function nextOpening(windows: readonly UpdateWindow[] | undefined, at: Date): Date | undefined {
  const state = windowState(windows, at);
  return state.open ? at : state.opens;
}

/** Problems with the windows that the schema cannot see, e.g. an unknown time zone, in words. */
export function windowProblems(windows: readonly UpdateWindow[] | undefined): string[] {
  const problems: string[] = [];
  (windows ?? []).forEach((w, i) => {
    if (w.timeZone !== undefined && !isTimeZone(w.timeZone)) {
      problems.push(
        `spec.updateWindows[${i}].timeZone: "${w.timeZone}" is not an IANA time zone known to this controller (e.g. Europe/Berlin, America/New_York, UTC)`,
      );
    }
  });
  return problems;
}
