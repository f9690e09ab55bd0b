/**
 * One poller run as gather → plan → apply: gather.ts reads WatchedImages, workloads and pull
 * secrets; plan.ts decides what is due, in which order, and what each lookup means; apply.ts writes
 * ImageUpdates and status. This file only sequences them and keeps the run within its budget.
 */
import {
  boundMessage,
  type Logger,
  objectKey,
  RESOLVED_REASON,
  type RegistryFailureReason,
  settleWithLimit,
} from '@kubewatcher/shared';
import { PollApplier } from './apply.ts';
import type { PollerCluster } from './cluster.ts';
import { CredentialGatherer, GatherError, listWatchedImages, type Prepared } from './gather.ts';
import {
  decide,
  groupTargets,
  invalidStatus,
  oldestCheckFirst,
  type PollTarget,
  runDeadlines,
  selectDue,
} from './plan.ts';
import type { RegistryClient, ResolveResult } from './registry/index.ts';

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
   * Time the run may take, lookups and writes (default: unbounded). Lookups stop starting when too
   * little is left and end in time for the writes; what is not checked is due first next run.
   */
  budgetMs?: number;
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
  /** Due but not checked: the run's budget ran out first. They are the first checked next run. */
  deferred: number;
  imageUpdatesCreated: number;
  /** Distinct (image, credential) pairs resolved: one registry lookup each. */
  resolutions: number;
  requests: { head: number; get: number; token: number; total: number };
  durationMs: number;
}

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
    resolutions: 0,
    requests: { head: 0, get: 0, token: 0, total: 0 },
    durationMs: 0,
  };

  const all = await listWatchedImages(cluster, opts.namespaces);
  summary.watchedImages = all.length;

  const selection = selectDue(all, now(), opts.ignoreInterval);
  summary.notDue = selection.notDue;
  summary.suspended = selection.suspended;
  summary.invalid = selection.invalid.length;
  for (const { watchedImage, message } of selection.invalid) {
    logger.warn('invalid WatchedImage skipped', { watchedImage: objectKey(watchedImage), error: message });
    if (!opts.dryRun) await apply.writeStatus(watchedImage, invalidStatus(watchedImage, message, now()));
  }

  const gatherer = new CredentialGatherer(cluster, logger);
  const prepared: Prepared[] = [];
  for (const target of oldestCheckFirst(selection.due)) {
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

  // Groups keep the oldest-first order of their first member.
  const groups = [...groupTargets(prepared, (p) => p.credentialId).values()];
  opts.registry.planLookups(groups.map((group) => group[0]!));
  const lookupTimeoutMs = opts.registry.timeoutMs;
  const deadlines =
    opts.budgetMs === undefined ? undefined : runDeadlines(started, opts.budgetMs, lookupTimeoutMs);
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
      await record(target, result, target.pinnedDigest, target.unsupportedPinnedDigest);
    }
  });
  if (summary.deferred > 0) {
    logger.warn('run budget spent: WatchedImages left for the next run, which checks them first', {
      deferred: summary.deferred,
      budgetMs: opts.budgetMs,
    });
  }
  // Each group's failures are recorded on its WatchedImages; a rejection here is a defect, not a fault.
  const defect = outcomes.find((o) => o.status === 'rejected');
  if (defect) throw defect.reason;

  const stats = opts.registry.stats();
  summary.requests = {
    head: stats.head - statsBefore.head,
    get: stats.get - statsBefore.get,
    token: stats.token - statsBefore.token,
    total: stats.total - statsBefore.total,
  };
  summary.durationMs = Date.now() - started;
  return summary;

  async function record(
    target: PollTarget,
    result: ResolveResult,
    pinnedDigest?: string,
    unsupportedPinnedDigest?: string,
  ): Promise<void> {
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
    if (opts.dryRun) return;
    if (await apply.record(target, decision)) summary.imageUpdatesCreated++;
  }
}
