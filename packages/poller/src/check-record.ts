/**
 * The check record: scheduled checks that found nothing new and were not written to their
 * WatchedImage's status, kept in one ConfigMap (`--check-record`) for the next run.
 *
 * Why: a status write costs the API server about 3 ms of CPU, and a scheduled check that finds the
 * same digest only moves `lastCheckedTime`. Writing it every other interval halves the writes while
 * LAST CHECKED stays within one interval of the newest check. The next run must still know that the
 * unwritten check happened, or it would find the WatchedImage due and ask the registry again; that is
 * what the record is for. One ConfigMap update per run replaces thousands of status writes.
 *
 * Pure functions only: the run reads the ConfigMap (gather), decides here, and replaces it (apply).
 * A lost or emptied record costs registry requests, never an update: the WatchedImages it named are
 * simply due again, checked and written.
 */

/** The ConfigMap key that holds the record. */
export const CHECK_RECORD_KEY = 'checks.json';

/**
 * At most this many checks in the record (about 40 bytes each: ~800 KB, under a ConfigMap's 1 MiB);
 * past it, checks are written to their status as before.
 */
export const MAX_RECORDED_CHECKS = 20_000;

/** A record bigger than this is not saved (a ConfigMap holds at most 1 MiB). */
export const MAX_RECORD_BYTES = 900 * 1024;

/**
 * How late after one interval a scheduled check may come and still be left unwritten: the CronJob
 * runs every minute, so a check due at `lastCheckedTime + interval` runs up to a minute later. A later
 * one (the poller was down, the registry paused) is written, so LAST CHECKED never falls further behind.
 */
export const SCHEDULE_SLACK_MS = 60_000;

/**
 * A record entry older than this is dropped when its WatchedImage is not in the run's list (a run over
 * some namespaces cannot tell a deleted WatchedImage from one it did not list).
 */
export const MAX_RECORD_AGE_MS = 7 * 24 * 3600_000;

/** WatchedImage uid → when it was last checked without its status being written (ms since the epoch). */
export type UnwrittenChecks = Map<string, number>;

interface RecordJson {
  version: 1;
  /** One entry per run time, the uids it checked without writing. */
  checks: { checkedAt: string; uids: string[] }[];
}

/** The record as stored; a value that is not one (edited by hand) is reported and read as empty. */
export function parseCheckRecord(text: string | undefined): { checks: UnwrittenChecks; problem?: string } {
  const checks: UnwrittenChecks = new Map();
  if (text === undefined || text.trim() === '') return { checks };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { checks, problem: `${CHECK_RECORD_KEY} is not JSON: ${(err as Error).message.slice(0, 120)}` };
  }
  const record = parsed as Partial<RecordJson> | null;
  if (record === null || typeof record !== 'object' || record.version !== 1 || !Array.isArray(record.checks))
    return { checks, problem: `${CHECK_RECORD_KEY} is not a version 1 check record` };
  for (const entry of record.checks) {
    const at = typeof entry?.checkedAt === 'string' ? Date.parse(entry.checkedAt) : Number.NaN;
    if (Number.isNaN(at) || !Array.isArray(entry.uids))
      return { checks: new Map(), problem: `${CHECK_RECORD_KEY} has an entry without checkedAt or uids` };
    for (const uid of entry.uids) {
      if (typeof uid === 'string' && uid !== '') checks.set(uid, Math.max(at, checks.get(uid) ?? at));
    }
  }
  return { checks };
}

/** The record as stored: uids grouped by check time (one group per run), oldest first, sorted within. */
export function formatCheckRecord(checks: ReadonlyMap<string, number>): string {
  const byTime = new Map<number, string[]>();
  for (const [uid, at] of checks) {
    const list = byTime.get(at);
    if (list) list.push(uid);
    else byTime.set(at, [uid]);
  }
  const record: RecordJson = {
    version: 1,
    checks: [...byTime.entries()]
      .sort(([a], [b]) => a - b)
      .map(([at, uids]) => ({ checkedAt: new Date(at).toISOString(), uids: uids.sort() })),
  };
  return JSON.stringify(record);
}

/** Two records as one: each uid's newer check (two runs that wrote the record at once). */
export function mergeCheckRecords(
  a: ReadonlyMap<string, number>,
  b: ReadonlyMap<string, number>,
): UnwrittenChecks {
  const merged: UnwrittenChecks = new Map(a);
  for (const [uid, at] of b) merged.set(uid, Math.max(at, merged.get(uid) ?? at));
  return merged;
}

export interface PruneContext {
  /**
   * The uids of every WatchedImage the run listed, each with the newest `lastCheckedTime` known (the
   * listed status, or what this run wrote): NaN when it was never checked.
   */
  lastWritten: ReadonlyMap<string, number>;
  /** The run listed every namespace, so a uid it did not list belongs to a deleted WatchedImage. */
  allNamespaces: boolean;
  now: number;
}

/**
 * The entries still worth keeping: a check newer than what its status says (an older one is already
 * written over), of a WatchedImage that still exists (or that a run over some namespaces did not see,
 * for at most MAX_RECORD_AGE_MS).
 */
export function pruneCheckRecord(checks: ReadonlyMap<string, number>, ctx: PruneContext): UnwrittenChecks {
  const kept: UnwrittenChecks = new Map();
  for (const [uid, at] of checks) {
    const written = ctx.lastWritten.get(uid);
    if (written === undefined) {
      if (!ctx.allNamespaces && at > ctx.now - MAX_RECORD_AGE_MS) kept.set(uid, at);
    } else if (Number.isNaN(written) || at > written) {
      kept.set(uid, at);
    }
  }
  return kept;
}

/** FNV-1a of the uid: spreads WatchedImages evenly over the two halves, the same way every run. */
function uidHash(uid: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < uid.length; i++) {
    hash ^= uid.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export interface ScheduledCheck {
  uid: string;
  /** The status's `lastCheckedTime` (ms), the last check that was written. */
  lastWritten: number;
  /** The record's entry for it (ms), if any. */
  recorded?: number;
  intervalMs: number;
  now: number;
}

/**
 * Whether a scheduled check that found nothing new may go into the record instead of the status.
 * Never two in a row (the one before was written), and only a check on time (at most one interval
 * and SCHEDULE_SLACK_MS after the written one): LAST CHECKED is then never more than one interval
 * (and the CronJob's minute) older than the newest check. Of the WatchedImages due together, half
 * are left unwritten at each interval and half written, by uid and interval number, so a run over
 * thousands all due at once writes half of them, not all of them every other run.
 */
export function mayLeaveUnwritten(check: ScheduledCheck): boolean {
  const { lastWritten, recorded, intervalMs, now } = check;
  if (Number.isNaN(lastWritten)) return false;
  if (recorded !== undefined && recorded > lastWritten) return false;
  if (now - lastWritten > intervalMs + SCHEDULE_SLACK_MS) return false;
  return (uidHash(check.uid) + Math.floor(now / intervalMs)) % 2 === 0;
}
