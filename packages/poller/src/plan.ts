import {
  API_VERSION,
  boundMessage,
  CONDITION_TYPE,
  type Condition,
  IMAGE_UPDATE,
  type ImageReference,
  imageUpdateName,
  intervalOf,
  kubeTime,
  LABEL,
  nameLabelValue,
  normalizeReference,
  parseDuration,
  type RateLimit,
  RESOLVED_REASON,
  referenceString,
  setCondition,
  shortDigest,
  WATCHED_IMAGE,
  type WatchedImage,
} from '@kubewatcher/shared';
import type { RateLimitInfo, ResolveResult } from './registry/index.ts';

/**
 * The poller's pure decisions: which WatchedImages are due, how they group into registry requests,
 * and what each resolution means for the WatchedImage's status and the ImageUpdates to create.
 * No I/O here: gather.ts reads, apply.ts writes.
 */

/** A CronJob fires on the minute and runs take seconds: check a little early rather than a period late. */
export function dueTolerance(intervalMs: number): number {
  return Math.min(15_000, intervalMs / 4);
}

export interface PollTarget {
  watchedImage: WatchedImage;
  reference: ImageReference;
  /** Canonical `registry/repository:tag` the digest belongs to. */
  image: string;
}

export interface DueSelection {
  due: PollTarget[];
  notDue: number;
  suspended: number;
  invalid: { watchedImage: WatchedImage; message: string }[];
}

/** `ignoreInterval` checks every WatchedImage now (a manual run), still skipping suspended ones. */
export function selectDue(items: readonly WatchedImage[], now: Date, ignoreInterval = false): DueSelection {
  const selection: DueSelection = { due: [], notDue: 0, suspended: 0, invalid: [] };
  for (const wi of items) {
    if (wi.spec.suspend) {
      selection.suspended++;
      continue;
    }
    let reference: ImageReference;
    let intervalMs: number;
    try {
      reference = normalizeReference(wi.spec.image);
      if (reference.digest) throw new Error(`spec.image "${wi.spec.image}" must name a tag, not a digest`);
      const interval = intervalOf(wi.spec);
      const parsed = parseDuration(interval);
      if (parsed === undefined)
        throw new Error(`spec.interval "${interval}" is not a duration such as 5m or 1h`);
      intervalMs = parsed;
    } catch (err) {
      selection.invalid.push({ watchedImage: wi, message: (err as Error).message });
      continue;
    }
    const image = referenceString(reference);
    const status = wi.status;
    const last = status?.lastCheckedTime ? Date.parse(status.lastCheckedTime) : Number.NaN;
    // An edited spec (a new image, other pullSecrets) is checked at once: the Resolved condition
    // records the generation it checked. Anything else waits for the interval, a check that failed
    // before any baseline too: a 401, 404 or 429 every CronJob run is what burns rate limits.
    const checkedGeneration = status?.conditions?.find(
      (c) => c.type === CONDITION_TYPE.Resolved,
    )?.observedGeneration;
    const rebaseline =
      checkedGeneration !== undefined && wi.metadata.generation !== undefined
        ? checkedGeneration !== wi.metadata.generation
        : status?.digest !== undefined && status.resolvedImage !== image;
    // A webhook or `kubectl kubewatcher check` asked for a check after the last one.
    const requested = status?.checkRequestedTime ? Date.parse(status.checkRequestedTime) : Number.NaN;
    const checkRequested = !Number.isNaN(requested) && (Number.isNaN(last) || requested > last);
    if (
      ignoreInterval ||
      rebaseline ||
      checkRequested ||
      Number.isNaN(last) ||
      last + intervalMs - dueTolerance(intervalMs) <= now.getTime()
    ) {
      selection.due.push({ watchedImage: wi, reference, image });
    } else {
      selection.notDue++;
    }
  }
  return selection;
}

/** Targets that share a registry, repository, tag and credential are resolved with one request. */
export function groupTargets<T extends { image: string }>(
  targets: readonly T[],
  credentialId: (target: T) => string,
): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const t of targets) {
    const key = `${t.image}|${credentialId(t)}`;
    const list = groups.get(key);
    if (list) list.push(t);
    else groups.set(key, [t]);
  }
  return groups;
}

/** The status fields the poller owns, always written whole (server-side apply drops what is left out). */
export interface PollerStatus {
  digest?: string;
  shortDigest?: string;
  resolvedImage?: string;
  lastCheckedTime: string;
  lastChangedTime?: string;
  rateLimit?: RateLimit;
  conditions: Condition[];
}

export interface ImageUpdateDraft {
  name: string;
  body: {
    apiVersion: string;
    kind: string;
    metadata: {
      name: string;
      namespace: string;
      labels: Record<string, string>;
      ownerReferences: {
        apiVersion: string;
        kind: string;
        name: string;
        uid: string;
        controller: boolean;
        blockOwnerDeletion: boolean;
      }[];
    };
    spec: {
      watchedImage: string;
      image: string;
      fromDigest?: string;
      toDigest: string;
      detectedTime: string;
    };
  };
}

export type Outcome = 'baseline' | 'unchanged' | 'changed' | 'failed';

export interface Decision {
  outcome: Outcome;
  status: PollerStatus;
  imageUpdate?: ImageUpdateDraft;
  /** For the log: what happened, in words. */
  message: string;
}

/**
 * What one resolution means for one WatchedImage. `pinnedDigest` is the digest a matched workload
 * already runs when this is the first sight (so it gets an update to the baseline).
 */
export function decide(
  target: PollTarget,
  result: ResolveResult,
  now: Date,
  pinnedDigest?: string,
  unsupportedPinnedDigest?: string,
): Decision {
  const wi = target.watchedImage;
  const previous = wi.status ?? {};
  const nowIso = now.toISOString();
  const generation = wi.metadata.generation ?? 0;
  const conditions = previous.conditions ?? [];
  const rateLimit = rateLimitStatus(result.rateLimit, nowIso) ?? keepRateLimit(previous.rateLimit);
  const kept: PollerStatus = {
    ...(previous.digest ? { digest: previous.digest, shortDigest: shortDigest(previous.digest) } : {}),
    ...(previous.resolvedImage ? { resolvedImage: previous.resolvedImage } : {}),
    ...(previous.lastChangedTime ? { lastChangedTime: previous.lastChangedTime } : {}),
    ...(rateLimit ? { rateLimit } : {}),
    lastCheckedTime: nowIso,
    conditions: [],
  };

  if (!result.ok) {
    return {
      outcome: 'failed',
      status: {
        ...kept,
        conditions: resolvedCondition(conditions, 'False', result.reason, result.message, generation, now),
      },
      message: result.message,
    };
  }

  const digest = result.digest;
  const baseline = previous.resolvedImage === target.image ? previous.digest : undefined;
  const ok = (message: string) =>
    resolvedCondition(conditions, 'True', RESOLVED_REASON.Resolved, message, generation, now);
  const resolvedStatus = (changedTime: string | undefined, message: string): PollerStatus => ({
    ...kept,
    digest,
    shortDigest: shortDigest(digest),
    resolvedImage: target.image,
    ...(changedTime ? { lastChangedTime: changedTime } : {}),
    conditions: ok(message),
  });

  if (!baseline) {
    // A pin Kubewatcher cannot record is said where the user looks, not silently skipped.
    const unsupported =
      !pinnedDigest && unsupportedPinnedDigest
        ? `; a workload pins ${unsupportedPinnedDigest.slice(0, 140)}, which Kubewatcher cannot record (sha256 digests only), so it gets no update to the baseline`
        : '';
    const status = resolvedStatus(nowIso, `${wi.spec.image} resolves to ${digest}${unsupported}`);
    const decision: Decision = {
      outcome: 'baseline',
      status,
      message: `baseline recorded: ${digest}${unsupported}`,
    };
    if (pinnedDigest && pinnedDigest !== digest) {
      decision.imageUpdate = imageUpdateDraft(target, pinnedDigest, digest, now);
      decision.message += `; a workload pins ${pinnedDigest}, so it gets an update to the baseline`;
    }
    return decision;
  }
  if (baseline === digest) {
    return {
      outcome: 'unchanged',
      status: resolvedStatus(previous.lastChangedTime, `${wi.spec.image} resolves to ${digest}`),
      message: 'unchanged',
    };
  }
  return {
    outcome: 'changed',
    status: resolvedStatus(nowIso, `${wi.spec.image} moved from ${baseline} to ${digest}`),
    imageUpdate: imageUpdateDraft(target, baseline, digest, now),
    message: `digest changed from ${baseline} to ${digest}`,
  };
}

/** The poller's status for a WatchedImage whose spec it cannot use (the controller reports InvalidSpec too). */
export function invalidStatus(wi: WatchedImage, message: string, now: Date): PollerStatus {
  return notRecordedStatus(wi, RESOLVED_REASON.InvalidImage, message, now);
}

/**
 * The status when a change was found but its ImageUpdate could not be created: checked now (so the
 * next try waits for spec.interval rather than hammering a quota or a webhook every run), the old
 * baseline kept (so the change is found again), and Resolved False saying why.
 */
export function imageUpdateFailedStatus(target: PollTarget, message: string, now: Date): PollerStatus {
  return notRecordedStatus(target.watchedImage, RESOLVED_REASON.ImageUpdateFailed, message, now);
}

/** Checked now, everything recorded before kept, Resolved False with `reason`. */
function notRecordedStatus(wi: WatchedImage, reason: string, message: string, now: Date): PollerStatus {
  const previous = wi.status ?? {};
  const rateLimit = keepRateLimit(previous.rateLimit);
  return {
    ...(previous.digest ? { digest: previous.digest, shortDigest: shortDigest(previous.digest) } : {}),
    ...(previous.resolvedImage ? { resolvedImage: previous.resolvedImage } : {}),
    ...(previous.lastChangedTime ? { lastChangedTime: previous.lastChangedTime } : {}),
    ...(rateLimit ? { rateLimit } : {}),
    lastCheckedTime: now.toISOString(),
    conditions: resolvedCondition(
      previous.conditions ?? [],
      'False',
      reason,
      message,
      wi.metadata.generation ?? 0,
      now,
    ),
  };
}

/**
 * Due targets, the longest unchecked first (never checked before all): a run that runs out of time
 * leaves the most recently checked for the next run, so no image waits two runs in a row.
 */
export function oldestCheckFirst<T extends PollTarget>(targets: readonly T[]): T[] {
  const checked = (t: T) => {
    const at = Date.parse(t.watchedImage.status?.lastCheckedTime ?? '');
    return Number.isNaN(at) ? Number.NEGATIVE_INFINITY : at;
  };
  return [...targets].sort((a, b) => checked(a) - checked(b));
}

/** When a run stops starting lookups, and the deadline every lookup must end by. */
export interface RunDeadlines {
  /** No lookup starts at or after this instant (ms): one started later could not end in time. */
  lastStart: number;
  /** Every lookup ends by this instant (ms), leaving `reserveMs` for the status writes. */
  lookupDeadline: number;
  reserveMs: number;
}

/**
 * Deadlines for a run that may take `budgetMs` from `startedMs`, whose lookups take at most
 * `lookupTimeoutMs` each: a tenth of the budget, at least 5 s, is kept for the writes that follow.
 */
export function runDeadlines(startedMs: number, budgetMs: number, lookupTimeoutMs: number): RunDeadlines {
  const reserveMs = Math.max(5_000, budgetMs / 10);
  const lookupDeadline = startedMs + budgetMs - reserveMs;
  // A lookup given less than a quarter of its timeout would mostly fail for want of time.
  return { lastStart: lookupDeadline - lookupTimeoutMs / 4, lookupDeadline, reserveMs };
}

function resolvedCondition(
  conditions: readonly Condition[],
  status: 'True' | 'False',
  reason: string,
  message: string,
  observedGeneration: number,
  now: Date,
): Condition[] {
  // Messages carry registry and API text: bounded, or an oversized condition fails every write.
  const next = setCondition(
    conditions,
    { type: CONDITION_TYPE.Resolved, status, reason, message: boundMessage(message), observedGeneration },
    now,
  );
  // Only our own condition goes into the apply: the controller owns the others.
  return next.filter((c) => c.type === CONDITION_TYPE.Resolved);
}

function rateLimitStatus(info: RateLimitInfo | undefined, observedTime: string): PollerStatus['rateLimit'] {
  if (!info) return undefined;
  return {
    limit: info.limit,
    remaining: info.remaining,
    ...(info.windowSeconds !== undefined ? { windowSeconds: info.windowSeconds } : {}),
    observedTime,
  };
}

function keepRateLimit(previous: PollerStatus['rateLimit'] | undefined): PollerStatus['rateLimit'] {
  return previous ? { ...previous } : undefined;
}

/** `detectedTime` is now: this run is the first to see `toDigest` (a rerun meets its own record). */
export function imageUpdateDraft(
  target: PollTarget,
  fromDigest: string | undefined,
  toDigest: string,
  detectedTime: Date,
): ImageUpdateDraft {
  const wi = target.watchedImage;
  const wiName = wi.metadata.name!;
  const name = imageUpdateName(wiName, toDigest);
  return {
    name,
    body: {
      apiVersion: API_VERSION,
      kind: IMAGE_UPDATE.kind,
      metadata: {
        name,
        namespace: wi.metadata.namespace!,
        // A WatchedImage name may be 253 characters; a label value at most 63.
        labels: { [LABEL.watchedImage]: nameLabelValue(wiName) },
        ownerReferences: [
          {
            apiVersion: API_VERSION,
            kind: WATCHED_IMAGE.kind,
            name: wiName,
            uid: wi.metadata.uid!,
            controller: true,
            blockOwnerDeletion: false,
          },
        ],
      },
      spec: {
        watchedImage: wiName,
        image: wi.spec.image,
        ...(fromDigest ? { fromDigest } : {}),
        toDigest,
        detectedTime: kubeTime(detectedTime),
      },
    },
  };
}

/**
 * Whether an ImageUpdate found under the name we wanted is the one this change already created
 * (a rerun after a crash), rather than an older record of the same target digest (a tag that moved
 * back): same digests, and created no earlier than the baseline it moves away from.
 */
export function isSameChange(
  existing: {
    metadata?: { creationTimestamp?: string | Date };
    spec?: { fromDigest?: string; toDigest?: string };
  },
  draft: ImageUpdateDraft,
  baselineSince: string | undefined,
): boolean {
  if (existing.spec?.toDigest !== draft.body.spec.toDigest) return false;
  if ((existing.spec?.fromDigest ?? '') !== (draft.body.spec.fromDigest ?? '')) return false;
  if (!baselineSince) return true;
  const created = existing.metadata?.creationTimestamp;
  if (!created) return true;
  // creationTimestamp has one-second resolution.
  return new Date(created).getTime() >= Math.floor(Date.parse(baselineSince) / 1000) * 1000;
}
