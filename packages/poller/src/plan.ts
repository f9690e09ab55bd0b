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
  type RegistryChallenge,
  referenceString,
  registryApiHost,
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
  /** spec.interval in milliseconds. */
  intervalMs: number;
}

export interface DueSelection {
  due: PollTarget[];
  notDue: number;
  suspended: number;
  invalid: { watchedImage: WatchedImage; message: string }[];
}

/** The last check written to a WatchedImage's status, `lastCheckedTime` (ms; NaN when never checked). */
export function lastWrittenCheckOf(wi: WatchedImage): number {
  return wi.status?.lastCheckedTime ? Date.parse(wi.status.lastCheckedTime) : Number.NaN;
}

/**
 * When a WatchedImage was last checked: its status's `lastCheckedTime`, or a later check the check
 * record holds that was not written (NaN when never checked).
 */
export function lastCheckOf(
  wi: WatchedImage,
  unwritten?: ReadonlyMap<string, number>,
  written = lastWrittenCheckOf(wi),
): number {
  const recorded = wi.metadata.uid ? unwritten?.get(wi.metadata.uid) : undefined;
  if (recorded === undefined || recorded <= written) return written;
  return recorded;
}

/**
 * `ignoreInterval` checks every WatchedImage now (a manual run), still skipping suspended ones.
 * `unwritten`: the check record's checks (uid → ms), which count as checks like lastCheckedTime.
 */
export function selectDue(
  items: readonly WatchedImage[],
  now: Date,
  ignoreInterval = false,
  unwritten?: ReadonlyMap<string, number>,
): DueSelection {
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
    const written = lastWrittenCheckOf(wi);
    const last = lastCheckOf(wi, unwritten, written);
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
    // Against the written check: a request is served by a check that writes (statusWriteReason).
    const checkRequested = !Number.isNaN(requested) && (Number.isNaN(written) || requested > written);
    if (
      ignoreInterval ||
      rebaseline ||
      checkRequested ||
      Number.isNaN(last) ||
      last + intervalMs - dueTolerance(intervalMs) <= now.getTime()
    ) {
      selection.due.push({ watchedImage: wi, reference, image, intervalMs });
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

/** What a run knows of one registry's limits before it starts, read back from the WatchedImages' status. */
export interface RegistryBudget {
  /** The registry as written in image references (`docker.io`, `127.0.0.1:5000`). */
  registry: string;
  /** A 429 paused it until this time (ms since the epoch): nothing is sent to it before. */
  pausedUntil?: number;
  /** Lookups this run may send it; unset when it reports no limit. */
  allowance?: number;
  limit?: number;
  /** `remaining` as last seen plus what the window has given back since (see registryBudgets). */
  estimatedRemaining?: number;
}

/** Requests of a registry's budget left for others (kubelet pulls from the same address) and for retries. */
export function budgetReserve(limit: number): number {
  return Math.max(1, Math.ceil(limit / 10));
}

/** A window assumed for figures that name none. */
const DEFAULT_WINDOW_SECONDS = 3600;

/**
 * Each registry's pause and budget from the rate-limit status of every WatchedImage listed (due or
 * not): the latest pause, and the newest figures (ties: the lower remaining). A budget comes back as
 * its window goes by, at limit/window per second, as in a sliding window (Docker Hub's 6-hour one):
 * a fixed window that resets all at once is only underestimated. Each run may spend the estimate
 * minus a reserve (budgetReserve), so the registry is never driven to 0 by the poller.
 */
export function registryBudgets(items: readonly WatchedImage[], now: Date): Map<string, RegistryBudget> {
  const newest = new Map<string, { observed: number; limit: number; remaining: number; window: number }>();
  const budgets = new Map<string, RegistryBudget>();
  for (const wi of items) {
    const rl = wi.status?.rateLimit;
    if (!rl) continue;
    let registry: string;
    try {
      registry = normalizeReference(wi.spec.image).domain;
    } catch {
      continue;
    }
    const budget = budgets.get(registry) ?? { registry };
    budgets.set(registry, budget);
    const paused = rl.pausedUntil ? Date.parse(rl.pausedUntil) : Number.NaN;
    if (paused > now.getTime() && paused > (budget.pausedUntil ?? 0)) budget.pausedUntil = paused;
    const observed = rl.observedTime ? Date.parse(rl.observedTime) : Number.NaN;
    if (rl.limit === undefined || rl.remaining === undefined || Number.isNaN(observed)) continue;
    const seen = newest.get(registry);
    if (!seen || observed > seen.observed || (observed === seen.observed && rl.remaining < seen.remaining)) {
      newest.set(registry, {
        observed,
        limit: rl.limit,
        remaining: rl.remaining,
        window: rl.windowSeconds || DEFAULT_WINDOW_SECONDS,
      });
    }
  }
  for (const [registry, figures] of newest) {
    const elapsedSeconds = Math.max(0, (now.getTime() - figures.observed) / 1000);
    const regained = Math.floor((figures.limit * elapsedSeconds) / figures.window);
    const estimate = Math.min(figures.limit, figures.remaining + regained);
    const budget = budgets.get(registry)!;
    budget.limit = figures.limit;
    budget.estimatedRemaining = estimate;
    budget.allowance = Math.max(0, estimate - budgetReserve(figures.limit));
  }
  return budgets;
}

export interface BudgetedChecks<G> {
  /** The lookups to send this run, in the order given. */
  send: G[];
  /** Per registry, the lookups left for a later run and why. */
  deferred: Map<string, { groups: G[]; why: 'paused' | 'budget'; budget: RegistryBudget }>;
}

/**
 * Which lookups a run sends: none to a paused registry, at most `allowance` to one with a known
 * budget, the first ones in the order given (runPoll's is oldest check first, oldestCheckFirst);
 * the rest wait for a later run (they stay due), so checks spread over the window instead of
 * driving the registry past its budget.
 */
export function budgetChecks<G extends readonly PollTarget[]>(
  groups: readonly G[],
  budgets: ReadonlyMap<string, RegistryBudget>,
  now: Date,
): BudgetedChecks<G> {
  const byRegistry = new Map<string, G[]>();
  for (const group of groups) {
    const registry = group[0]!.reference.domain;
    if (!budgets.has(registry)) continue;
    byRegistry.set(registry, [...(byRegistry.get(registry) ?? []), group]);
  }
  const held = new Set<G>();
  const deferred: BudgetedChecks<G>['deferred'] = new Map();
  for (const [registry, list] of byRegistry) {
    const budget = budgets.get(registry)!;
    let keep: number;
    let why: 'paused' | 'budget';
    if (budget.pausedUntil !== undefined && budget.pausedUntil > now.getTime()) {
      keep = 0;
      why = 'paused';
    } else if (budget.allowance !== undefined) {
      keep = budget.allowance;
      why = 'budget';
    } else continue;
    if (list.length <= keep) continue;
    const waiting = list.slice(keep);
    for (const g of waiting) held.add(g);
    deferred.set(registry, { groups: waiting, why, budget });
  }
  return { send: groups.filter((g) => !held.has(g)), deferred };
}

/**
 * Whether `next` should replace `current` as the figures a run leaves for the next one: the lower
 * `remaining` (the budget only shrinks within a run), or a different limit or window.
 */
export function lowerBudget(current: RateLimitInfo | undefined, next: RateLimitInfo | undefined): boolean {
  if (!next) return false;
  if (!current) return true;
  if (next.limit !== current.limit || next.windowSeconds !== current.windowSeconds) return true;
  return next.remaining < current.remaining;
}

/** The status fields the poller owns, always written whole (server-side apply drops what is left out). */
export interface PollerStatus {
  digest?: string;
  shortDigest?: string;
  resolvedImage?: string;
  lastCheckedTime: string;
  lastChangedTime?: string;
  rateLimit?: RateLimit;
  registryChallenge?: RegistryChallenge;
  conditions: Condition[];
}

const CHALLENGE_SCHEMES: ReadonlySet<string> = new Set(['Bearer', 'Basic']);

/**
 * The registry challenges earlier runs recorded in the WatchedImages' status, one per registry, for
 * the registry client to try before any 401 (RegistryClient.rememberChallenges, which checks each
 * realm again when used). A record counts only for the registry its WatchedImage's spec.image names
 * now, and only in the shape the poller writes. Records of one registry that disagree are all set
 * aside: that registry's challenge is learned live, so no single WatchedImage can steer the others.
 */
export function rememberedChallenges(items: readonly WatchedImage[]): RegistryChallenge[] {
  const byRegistry = new Map<string, { challenge: RegistryChallenge; key: string } | 'conflict'>();
  for (const wi of items) {
    const c = wi.status?.registryChallenge;
    if (!c || typeof c !== 'object') continue;
    let apiHost: string;
    try {
      apiHost = registryApiHost(normalizeReference(wi.spec.image).domain).toLowerCase();
    } catch {
      continue;
    }
    if (typeof c.registry !== 'string' || c.registry.toLowerCase() !== apiHost) continue;
    if (typeof c.scheme !== 'string' || !CHALLENGE_SCHEMES.has(c.scheme)) continue;
    if (c.realm !== undefined && typeof c.realm !== 'string') continue;
    if (c.service !== undefined && typeof c.service !== 'string') continue;
    if (c.scheme === 'Bearer' && !c.realm) continue;
    const challenge: RegistryChallenge =
      c.scheme === 'Basic'
        ? { registry: apiHost, scheme: 'Basic' }
        : {
            registry: apiHost,
            scheme: 'Bearer',
            realm: c.realm!,
            ...(c.service ? { service: c.service } : {}),
          };
    const key = JSON.stringify([challenge.scheme, challenge.realm ?? '', challenge.service ?? '']);
    const seen = byRegistry.get(apiHost);
    if (seen === undefined) byRegistry.set(apiHost, { challenge, key });
    else if (seen !== 'conflict' && seen.key !== key) byRegistry.set(apiHost, 'conflict');
  }
  const remembered: RegistryChallenge[] = [];
  for (const entry of byRegistry.values()) if (entry !== 'conflict') remembered.push(entry.challenge);
  return remembered;
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
  /** Whether `status` must be written (statusWriteReason); ImageUpdates always come with a write. */
  write: boolean;
  writeReason?: WriteReason;
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
  const decision = decideStatus(target, result, now, pinnedDigest, unsupportedPinnedDigest);
  const writeReason = statusWriteReason(target.watchedImage.status, decision.status, now, target.intervalMs);
  return { ...decision, write: writeReason !== undefined, ...(writeReason ? { writeReason } : {}) };
}

function decideStatus(
  target: PollTarget,
  result: ResolveResult,
  now: Date,
  pinnedDigest?: string,
  unsupportedPinnedDigest?: string,
): Omit<Decision, 'write' | 'writeReason'> {
  const wi = target.watchedImage;
  const previous = wi.status ?? {};
  const nowIso = now.toISOString();
  const generation = wi.metadata.generation ?? 0;
  const conditions = previous.conditions ?? [];
  const rateLimit = nextRateLimit(previous.rateLimit, result, now);
  // A registry that answered without asking for authentication has nothing to remember; a failure
  // that learned nothing keeps what was known.
  const registryChallenge = result.challenge ?? (result.ok ? undefined : previous.registryChallenge);
  const kept: PollerStatus = {
    ...(previous.digest ? { digest: previous.digest, shortDigest: shortDigest(previous.digest) } : {}),
    ...(previous.resolvedImage ? { resolvedImage: previous.resolvedImage } : {}),
    ...(previous.lastChangedTime ? { lastChangedTime: previous.lastChangedTime } : {}),
    ...(rateLimit ? { rateLimit } : {}),
    ...(registryChallenge ? { registryChallenge: { ...registryChallenge } } : {}),
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
    const decision: Omit<Decision, 'write' | 'writeReason'> = {
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
  const rateLimit = nextRateLimit(previous.rateLimit, undefined, now);
  return {
    ...(previous.digest ? { digest: previous.digest, shortDigest: shortDigest(previous.digest) } : {}),
    ...(previous.resolvedImage ? { resolvedImage: previous.resolvedImage } : {}),
    ...(previous.lastChangedTime ? { lastChangedTime: previous.lastChangedTime } : {}),
    ...(rateLimit ? { rateLimit } : {}),
    ...(previous.registryChallenge ? { registryChallenge: { ...previous.registryChallenge } } : {}),
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
export function oldestCheckFirst<T extends PollTarget>(
  targets: readonly T[],
  unwritten?: ReadonlyMap<string, number>,
): T[] {
  const checked = (t: T) => {
    const at = lastCheckOf(t.watchedImage, unwritten);
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

/** How long a registry that answered 429 without Retry-After is left alone. */
export const DEFAULT_RATE_LIMIT_PAUSE_MS = 5 * 60_000;

/**
 * The rate-limit status after a check: the figures the result carries (else the stored ones), and the
 * pause a 429 asks for (else a stored pause that has not ended).
 */
function nextRateLimit(
  previous: PollerStatus['rateLimit'] | undefined,
  result: ResolveResult | undefined,
  now: Date,
): PollerStatus['rateLimit'] {
  const info = result?.rateLimit;
  const { pausedUntil: storedPause, ...stored } = previous ?? {};
  const figures: RateLimit = info
    ? {
        limit: info.limit,
        remaining: info.remaining,
        ...(info.windowSeconds !== undefined ? { windowSeconds: info.windowSeconds } : {}),
        observedTime: now.toISOString(),
      }
    : stored.limit !== undefined
      ? stored
      : {};
  let pausedUntil: string | undefined;
  if (result && !result.ok && result.reason === RESOLVED_REASON.RateLimited) {
    pausedUntil = new Date(
      now.getTime() + (result.retryAfterMs ?? DEFAULT_RATE_LIMIT_PAUSE_MS),
    ).toISOString();
  } else if (storedPause !== undefined && Date.parse(storedPause) > now.getTime()) {
    pausedUntil = storedPause;
  }
  if (figures.limit === undefined && !pausedUntil) return undefined;
  return { ...figures, ...(pausedUntil ? { pausedUntil } : {}) };
}

/**
 * Why a check's status has to be written, or undefined when it need not be. Each write costs the API
 * server a server-side apply (about 3 ms of its CPU), so an unchanged check is written only when the
 * next run or a person needs it:
 * - `content`: a field other than the time stamps differs (digest, baseline, Resolved condition, the
 *   rate-limit figures that pace the next run: limit, window, pause; the registry challenge it
 *   authenticates with up front);
 * - `requested`: a webhook or the plugin asked for a check after the last one (status.checkRequestedTime);
 * - `schedule`: the check was the scheduled one (lastCheckedTime at least one interval old, within
 *   the due tolerance), because the next run picks the due WatchedImages by lastCheckedTime. With a
 *   check record, every other such check goes there instead (check-record.ts).
 * An early check (--ignore-interval) that found nothing new is not written, so lastCheckedTime, the
 * LAST CHECKED column, is never more than one interval older than the newest check. `remaining`
 * alone does not count: runPoll writes the lowest one of each registry once per run (the carriers).
 */
export type WriteReason = 'content' | 'requested' | 'schedule';

export function statusWriteReason(
  previous: WatchedImage['status'] | undefined,
  next: PollerStatus,
  now: Date,
  intervalMs: number,
): WriteReason | undefined {
  const before = previous ?? {};
  const last = before.lastCheckedTime ? Date.parse(before.lastCheckedTime) : Number.NaN;
  if (Number.isNaN(last) || statusContentDiffers(before, next)) return 'content';
  const requested = before.checkRequestedTime ? Date.parse(before.checkRequestedTime) : Number.NaN;
  if (requested > last) return 'requested';
  if (now.getTime() - last >= intervalMs - dueTolerance(intervalMs)) return 'schedule';
  return undefined;
}

/** Whether a check's status has to be written (statusWriteReason gives the reason). */
export function statusNeedsWrite(
  previous: WatchedImage['status'] | undefined,
  next: PollerStatus,
  now: Date,
  intervalMs: number,
): boolean {
  return statusWriteReason(previous, next, now, intervalMs) !== undefined;
}

function statusContentDiffers(before: NonNullable<WatchedImage['status']>, next: PollerStatus): boolean {
  if (
    before.digest !== next.digest ||
    before.shortDigest !== next.shortDigest ||
    before.resolvedImage !== next.resolvedImage ||
    before.lastChangedTime !== next.lastChangedTime
  )
    return true;
  const was = before.conditions?.find((c) => c.type === CONDITION_TYPE.Resolved);
  const will = next.conditions.find((c) => c.type === CONDITION_TYPE.Resolved);
  if (
    was?.status !== will?.status ||
    was?.reason !== will?.reason ||
    was?.message !== will?.message ||
    was?.observedGeneration !== will?.observedGeneration
  )
    return true;
  // A learned challenge that differs is what the next run authenticates with up front.
  const c = before.registryChallenge;
  const d = next.registryChallenge;
  if (
    c?.registry !== d?.registry ||
    c?.scheme !== d?.scheme ||
    c?.realm !== d?.realm ||
    c?.service !== d?.service
  )
    return true;
  const a = before.rateLimit;
  const b = next.rateLimit;
  return (
    a?.limit !== b?.limit ||
    a?.windowSeconds !== b?.windowSeconds ||
    a?.pausedUntil !== b?.pausedUntil ||
    (a?.remaining === undefined) !== (b?.remaining === undefined)
  );
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
