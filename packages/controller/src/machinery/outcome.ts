import { apiStatusCode, errorFields, type Logger, silentLogger } from '@kubewatcher/shared';
import { type Clock, systemClock } from './clock.ts';
import type { WorkQueue } from './workqueue.ts';

/**
 * What one reconcile of a key came to. Reconcilers return one of these instead of throwing, so the
 * worker knows whether to retry, wait or give up (Flux's Stalling / Waiting / Generic errors).
 */
export type Outcome =
  /** Converged; nothing to do until the next event. */
  | { readonly kind: 'done' }
  /** Waiting on something expected (a rollout, the next check): look again after `afterMs`. */
  | { readonly kind: 'requeueAfter'; readonly afterMs: number; readonly reason: string }
  /** Cannot progress until a human changes the input (bad config): report it, do not retry. */
  | { readonly kind: 'stalled'; readonly reason: string; readonly message: string }
  /** Transient failure (API or network): retry with per-key exponential backoff. */
  | { readonly kind: 'retry'; readonly error: unknown };

export const done = (): Outcome => ({ kind: 'done' });
export const requeueAfter = (afterMs: number, reason: string): Outcome => ({
  kind: 'requeueAfter',
  afterMs,
  reason,
});
export const stalled = (reason: string, message: string): Outcome => ({ kind: 'stalled', reason, message });
export const retry = (error: unknown): Outcome => ({ kind: 'retry', error });

/** How a reconcile ended, as the `result` label of `kubewatcher_reconcile_total`. */
export type ReconcileResult = 'success' | 'requeue' | 'stalled' | 'error' | 'conflict';

/** What the worker did with one key, for metrics and tests. */
export interface OutcomeReport {
  key: string;
  outcome: Outcome;
  result: ReconcileResult;
  /** Wall time of the reconcile call. */
  durationSeconds: number;
}

export type Reconcile = (key: string) => Promise<Outcome> | Outcome;

export interface RunWorkerOptions {
  logger?: Logger;
  /** Called after each key with what happened; errors it throws are logged and ignored. */
  onOutcome?: (report: OutcomeReport) => void;
  /** Measures reconcile durations. Default: the system clock. */
  clock?: Clock;
}

/** `true` for HTTP 409 from the API: an update raced another writer (stale resourceVersion). */
export function isConflict(err: unknown): boolean {
  return apiStatusCode(err) === 409;
}

/**
 * Applies an outcome to the queue:
 * - `done` → `forget` (reset backoff);
 * - `requeueAfter` → `forget`, then `addAfter(afterMs)` (waiting is not failing);
 * - `stalled` → `forget`, no requeue (the next change of the object queues it again);
 * - `retry` → `addRateLimited` (per-key 5 ms doubling, bounded by the overall token bucket). A 409
 *   Conflict goes the same way: the first retries come within milliseconds, reading the object anew.
 */
export function applyOutcome(queue: WorkQueue, key: string, outcome: Outcome): ReconcileResult {
  switch (outcome.kind) {
    case 'done':
      queue.forget(key);
      return 'success';
    case 'requeueAfter':
      queue.forget(key);
      queue.addAfter(key, outcome.afterMs);
      return 'requeue';
    case 'stalled':
      queue.forget(key);
      return 'stalled';
    case 'retry':
      queue.addRateLimited(key);
      return isConflict(outcome.error) ? 'conflict' : 'error';
  }
}

/**
 * One worker: takes keys from `queue` until it shuts down, reconciles each and applies the outcome.
 * A thrown error counts as `retry(error)`. Nothing a reconcile does can end the loop or the process;
 * run it several times on one queue for parallel workers (the queue never hands one key to two).
 * Resolves when the queue has shut down.
 */
export async function runWorker(
  queue: WorkQueue,
  reconcile: Reconcile,
  opts: RunWorkerOptions = {},
): Promise<void> {
  const logger = opts.logger ?? silentLogger;
  const clock = opts.clock ?? systemClock;
  for (;;) {
    const key = await queue.get();
    if (key === undefined) return;
    const started = clock.now();
    let outcome: Outcome;
    try {
      outcome = await reconcile(key);
      if (!isOutcome(outcome))
        outcome = retry(new Error(`reconcile returned no outcome: ${String(outcome)}`));
    } catch (err) {
      outcome = retry(err);
    }
    const durationSeconds = (clock.now() - started) / 1000;
    let result: ReconcileResult = 'error';
    try {
      result = applyOutcome(queue, key, outcome);
      logOutcome(logger, queue, key, outcome, result, durationSeconds);
      opts.onOutcome?.({ key, outcome, result, durationSeconds });
    } catch (err) {
      logger.error('worker: handling a reconcile outcome failed', { key, result, ...errorFields(err) });
    } finally {
      queue.done(key);
    }
  }
}

function isOutcome(value: unknown): value is Outcome {
  const kind = (value as { kind?: unknown } | null | undefined)?.kind;
  return kind === 'done' || kind === 'requeueAfter' || kind === 'stalled' || kind === 'retry';
}

function logOutcome(
  logger: Logger,
  queue: WorkQueue,
  key: string,
  outcome: Outcome,
  result: ReconcileResult,
  durationSeconds: number,
): void {
  const duration = Math.round(durationSeconds * 1000) / 1000;
  switch (outcome.kind) {
    case 'done':
      logger.debug('reconciled', { key, duration });
      return;
    case 'requeueAfter':
      logger.debug('reconciled, looking again later', {
        key,
        afterMs: outcome.afterMs,
        reason: outcome.reason,
        duration,
      });
      return;
    case 'stalled':
      logger.warn('reconcile stalled: not retrying until the object changes', {
        key,
        reason: outcome.reason,
        message: outcome.message,
      });
      return;
    case 'retry': {
      const fields = { key, retries: queue.numRequeues(key), duration, ...errorFields(outcome.error) };
      if (result === 'conflict') logger.info('reconcile conflicted with another writer, retrying', fields);
      else logger.error('reconcile failed, retrying with backoff', fields);
      return;
    }
  }
}
