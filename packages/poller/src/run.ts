/**
 * One poller run as gather → plan → apply: gather.ts reads WatchedImages, workloads and pull
 * secrets; plan.ts decides what is due, in which order, and what each lookup means; apply.ts writes
 * ImageUpdates and status. This file only sequences them and keeps the run within its budget.
 */
import {
  BoundedWork,
  boundMessage,
  type Logger,
  objectKey,
  RESOLVED_REASON,
  type RegistryFailureReason,
  settleWithLimit,
} from '@kubewatcher/shared';
import { PollApplier } from './apply.ts';
import { MAX_RECORDED_CHECKS, mayLeaveUnwritten } from './check-record.ts';
import type { ObjectRef, PollerCluster } from './cluster.ts';
import {
  type CheckRecordRead,
  CredentialGatherer,
  GatherError,
  listWatchedImages,
  type Prepared,
  readCheckRecord,
} from './gather.ts';
import {
  budgetChecks,
  type Decision,
  decide,
  groupTargets,
  invalidStatus,
  lastWrittenCheckOf,
  lowerBudget,
  oldestCheckFirst,
  type PollTarget,
  registryBudgets,
  rememberedChallenges,
  runDeadlines,
  selectDue,
  statusNeedsWrite,
} from './plan.ts';
import type { RateLimitInfo, RegistryClient, ResolveResult } from './registry/index.ts';

export interface RunOptions {
  cluster: PollerCluster;
  registry: RegistryClient;
  logger: Logger;
  /** Namespaces to check; all when empty. */
  namespaces?: readonly string[];
  /** Resolve and report, write nothing. */
  dryRun?: boolean;
  /** Check every WatchedImage now, whatever its interval (a manual run). */
  ignoreInterval?: boolean;
  /** Registry resolutions in flight at once (per-host caps live in the registry client). */
  concurrency?: number;
  /**
   * Status writes (each with the ImageUpdate before it, if any) in flight at once. They run beside the
   * lookups, not after each: a lookup waits only when this many writes are already open.
   */
  writeConcurrency?: number;
  /**
   * Time the run may take, lookups and writes (default: unbounded). Lookups stop starting when too
   * little is left and end in time for the writes; what is not checked is due first next run.
   */
  budgetMs?: number;
  /**
   * The ConfigMap of checks left unwritten (check-record.ts): with it, every other scheduled check
   * that finds nothing new is recorded there instead of in its status. Without it (or when it cannot
   * be read or updated), every scheduled check writes its status.
   */
  checkRecord?: ObjectRef;
  now?: () => Date;
}

export interface RunSummary {
  watchedImages: number;
  checked: number;
  changed: number;
  baselined: number;
  unchanged: number;
  failed: number;
  notDue: number;
  suspended: number;
  invalid: number;
  /**
   * Due but not checked: the run's time budget ran out first, or their registry is paused after a
   * 429 or has nearly spent its rate-limit budget. They are the first checked next run.
   */
  deferred: number;
  imageUpdatesCreated: number;
  /** WatchedImage status writes: only checks that changed something, or were the scheduled one. */
  statusWrites: number;
  /**
   * Scheduled checks that found nothing new and went into the check record instead of their status
   * (the next one of each is written).
   */
  checksRecorded: number;
  /** Distinct (image, credential) pairs resolved: one registry lookup each. */
  resolutions: number;
  requests: { head: number; get: number; token: number; total: number };
  durationMs: number;
}

/**
 * Status writes in flight by default. A scheduled run over many WatchedImages is bound by them (one per
 * check). They used to run inside the lookup lanes, each lane writing its group's statuses one after
 * another before its next lookup, so fewer than `concurrency` were ever open and each waited out a
 * full round trip; an API server farther away than loopback makes that the bound. Sixteen keeps one
 * client's share of the API server's inflight limit small (bench/README.md has the figures).
 */
export const WRITES_IN_FLIGHT = 16;

/**
 * One poller run: list WatchedImages, pick the due ones (the longest unchecked first), resolve each
 * distinct (image, credential) once within the run's budget, then record baselines, create
 * ImageUpdates for changes and write the Resolved condition.
 * One image's failure never stops the others; only a failure to list WatchedImages rejects.
 */
export async function runPoll(opts: RunOptions): Promise<RunSummary> {
  const now = opts.now ?? (() => new Date());
  const started = Date.now();
  const { cluster, logger } = opts;
  const apply = new PollApplier(cluster, logger, now);
  // Every write of the run goes through here; the lookups only wait for a free slot.
  const writes = new BoundedWork(opts.writeConcurrency ?? WRITES_IN_FLIGHT);
  // The client may outlive one run (its stats are cumulative): report this run's requests only.
  const statsBefore = opts.registry.stats();
  const summary: RunSummary = {
    watchedImages: 0,
    checked: 0,
    changed: 0,
    baselined: 0,
    unchanged: 0,
    failed: 0,
    notDue: 0,
    suspended: 0,
    invalid: 0,
    deferred: 0,
    imageUpdatesCreated: 0,
    statusWrites: 0,
    checksRecorded: 0,
    resolutions: 0,
    requests: { head: 0, get: 0, token: 0, total: 0 },
    durationMs: 0,
  };

  const all = await listWatchedImages(cluster, opts.namespaces);
  summary.watchedImages = all.length;
  // Read in a dry run too, so it reports as due what a real run would check; only a real run saves it.
  const checkRecord = opts.checkRecord ? await readCheckRecord(cluster, opts.checkRecord, logger) : undefined;
  /** Checks this run leaves unwritten, for the record. */
  const unwritten: { target: PollTarget; decision: Decision }[] = [];
  /** The lastCheckedTime of each status this run wrote, by uid. */
  const written = new Map<string, number>();

  const selectedAt = now();
  const selection = selectDue(all, selectedAt, opts.ignoreInterval, checkRecord?.checks);
  summary.notDue = selection.notDue;
  summary.suspended = selection.suspended;
  summary.invalid = selection.invalid.length;
  for (const { watchedImage, message } of selection.invalid) {
    logger.warn('invalid WatchedImage skipped', { watchedImage: objectKey(watchedImage), error: message });
    const status = invalidStatus(watchedImage, message, now());
    // Met every run, but written only when the problem is new or different: no interval applies.
    if (!opts.dryRun && statusNeedsWrite(watchedImage.status, status, now(), Number.POSITIVE_INFINITY)) {
      await writes.start(async () => {
        if (await apply.writeStatus(watchedImage, status)) summary.statusWrites++;
      });
    }
  }

  const gatherer = new CredentialGatherer(cluster, logger);
  const prepared: Prepared[] = [];
  for (const target of oldestCheckFirst(selection.due, checkRecord?.checks)) {
    try {
      prepared.push(await gatherer.prepare(target));
    } catch (err) {
      summary.checked++; // record() counts it as failed
      const reason = err instanceof GatherError ? err.reason : RESOLVED_REASON.RegistryError;
      const result: ResolveResult = {
        ok: false,
        // Not a registry failure, but reported on the same condition the same way.
        reason: reason as RegistryFailureReason,
        message: boundMessage((err as Error).message),
      };
      await record(target, result);
    }
  }

  // Groups keep the oldest-first order of their first member. Registries paused by a 429 or near
  // the end of their budget (as earlier runs recorded them) get fewer lookups or none.
  const grouped = [...groupTargets(prepared, (p) => p.credentialId).values()];
  const { send: groups, deferred: heldBack } = budgetChecks(grouped, registryBudgets(all, now()), now());
  for (const [registry, { groups: waiting, why, budget }] of heldBack) {
    const count = waiting.reduce((n, g) => n + g.length, 0);
    summary.deferred += count;
    logger.info(
      why === 'paused'
        ? 'registry paused after a 429: its due WatchedImages wait'
        : 'registry budget nearly spent: some due WatchedImages wait for a later run',
      {
        registry,
        deferred: count,
        ...(budget.pausedUntil !== undefined
          ? { pausedUntil: new Date(budget.pausedUntil).toISOString() }
          : {}),
        ...(budget.limit !== undefined
          ? {
              limit: budget.limit,
              estimatedRemaining: budget.estimatedRemaining,
              allowance: budget.allowance,
            }
          : {}),
      },
    );
  }
  opts.registry.planLookups(groups.map((group) => group[0]!));
  // What earlier runs learned of each registry's challenge, so its token is fetched before the first HEAD.
  opts.registry.rememberChallenges(rememberedChallenges(all));
  /** Per registry, the lowest budget seen this run and the WatchedImage whose status carries it. */
  const carriers = new Map<string, { info: RateLimitInfo; target: PollTarget; recorded: Recorded }>();
  const lookupTimeoutMs = opts.registry.timeoutMs;
  const deadlines =
    opts.budgetMs === undefined ? undefined : runDeadlines(started, opts.budgetMs, lookupTimeoutMs);
  const timeDeferredBefore = summary.deferred;
  const outcomes = await settleWithLimit(groups, opts.concurrency ?? 8, async (group) => {
    if (deadlines && Date.now() >= deadlines.lastStart) {
      summary.deferred += group.length;
      return;
    }
    summary.resolutions++;
    const first = group[0]!;
    const result = await opts.registry.resolveDigest(
      first.reference,
      first.credential,
      deadlines ? { deadline: deadlines.lookupDeadline } : {},
    );
    for (const target of group) {
      summary.checked++;
      const recorded = await record(target, result, target.pinnedDigest, target.unsupportedPinnedDigest);
      const registry = target.reference.domain;
      if (lowerBudget(carriers.get(registry)?.info, result.rateLimit))
        carriers.set(registry, { info: result.rateLimit!, target, recorded });
    }
  });
  const failedWrites = await writes.settle();
  if (summary.deferred > timeDeferredBefore) {
    logger.warn('run budget spent: WatchedImages left for the next run, which checks them first', {
      deferred: summary.deferred - timeDeferredBefore,
      budgetMs: opts.budgetMs,
    });
  }
  // Each group's failures are recorded on its WatchedImages; a rejection here is a defect, not a fault.
  const defect = outcomes.find((o) => o.status === 'rejected');
  if (defect) throw defect.reason;
  if (failedWrites.length > 0) throw failedWrites[0];

  // The next run paces itself by these figures: each registry's lowest goes into one status at least.
  if (!opts.dryRun) {
    for (const carrier of carriers.values()) {
      if (carrier.recorded.written) continue;
      const applied = await apply.record(carrier.target, { status: carrier.recorded.decision.status });
      if (applied.statusWritten) noteWritten(carrier.target, carrier.recorded.decision);
    }
  }
  if (checkRecord && !opts.dryRun) await saveCheckRecord(checkRecord);

  const stats = opts.registry.stats();
  summary.requests = {
    head: stats.head - statsBefore.head,
    get: stats.get - statsBefore.get,
    token: stats.token - statsBefore.token,
    total: stats.total - statsBefore.total,
  };
  summary.durationMs = Date.now() - started;
  return summary;

  /**
   * Decides what `result` means for `target` and starts its writes (ImageUpdate, status); resolves
   * once they have started. `written` turns true when the status write has landed (after
   * `writes.settle()`, it is final).
   */
  async function record(
    target: PollTarget,
    result: ResolveResult,
    pinnedDigest?: string,
    unsupportedPinnedDigest?: string,
  ): Promise<Recorded> {
    const wi = target.watchedImage;
    const decision = decide(target, result, now(), pinnedDigest, unsupportedPinnedDigest);
    if (decision.outcome === 'failed') summary.failed++;
    else if (decision.outcome === 'changed') summary.changed++;
    else if (decision.outcome === 'baseline') summary.baselined++;
    else summary.unchanged++;
    const level =
      decision.outcome === 'failed' ? 'warn' : decision.outcome === 'unchanged' ? 'debug' : 'info';
    logger[level](decision.message, {
      watchedImage: objectKey(wi),
      image: wi.spec.image,
      outcome: decision.outcome,
    });
    const recorded: Recorded = { decision, written: false };
    if (opts.dryRun || (!decision.write && !decision.imageUpdate)) return recorded;
    if (checkRecord && mayRecordInstead(checkRecord, target, decision)) {
      unwritten.push({ target, decision });
      return recorded;
    }
    await writes.start(async () => {
      const applied = await apply.record(target, decision);
      if (applied.imageUpdateCreated) summary.imageUpdatesCreated++;
      if (applied.statusWritten) noteWritten(target, decision);
      recorded.written = applied.statusWritten;
    });
    return recorded;
  }

  function noteWritten(target: PollTarget, decision: Decision): void {
    summary.statusWrites++;
    const uid = target.watchedImage.metadata.uid;
    if (uid) written.set(uid, Date.parse(decision.status.lastCheckedTime));
  }

  /** A scheduled check that found nothing new, its previous one written, room left in the record. */
  function mayRecordInstead(record: CheckRecordRead, target: PollTarget, decision: Decision): boolean {
    const uid = target.watchedImage.metadata.uid;
    if (!uid || decision.writeReason !== 'schedule' || decision.imageUpdate) return false;
    if (record.checks.size + unwritten.length >= MAX_RECORDED_CHECKS) return false;
    return mayLeaveUnwritten({
      uid,
      lastWritten: lastWrittenCheckOf(target.watchedImage),
      ...(record.checks.has(uid) ? { recorded: record.checks.get(uid)! } : {}),
      intervalMs: target.intervalMs,
      now: now().getTime(),
    });
  }

  /**
   * Replaces the record with this run's unwritten checks and the older ones still needed. If that
   * fails, the checks are written to their status after all: the record is a saving, never the only
   * copy of anything.
   */
  async function saveCheckRecord(record: CheckRecordRead): Promise<void> {
    const pending = unwritten.filter(({ target }) => !written.has(target.watchedImage.metadata.uid!));
    const saved = await apply.saveCheckRecord(record, {
      listed: all,
      written,
      allNamespaces: !opts.namespaces || opts.namespaces.length === 0,
      checkedAt: selectedAt.getTime(),
      uids: pending.map(({ target }) => target.watchedImage.metadata.uid!),
      now: now().getTime(),
    });
    if (saved) {
      summary.checksRecorded = pending.length;
      return;
    }
    for (const { target, decision } of pending) {
      await writes.start(async () => {
        if ((await apply.record(target, decision)).statusWritten) noteWritten(target, decision);
      });
    }
    const failed = await writes.settle();
    if (failed.length > 0) throw failed[0];
  }
}

/** A check's decision, and whether its status write has landed (set when the write ends). */
interface Recorded {
  decision: Decision;
  written: boolean;
}
