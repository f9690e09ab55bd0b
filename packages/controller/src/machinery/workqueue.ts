import { exponentialDelay } from '@kubewatcher/shared';
import { type Clock, systemClock, type TimerHandle } from './clock.ts';

/**
 * Decides how long a key waits before its next retry. `when` is called once per retry and counts it;
 * `forget` resets the key after a success.
 */
export interface RateLimiter {
  /** Milliseconds to wait before the key's next attempt; records the attempt. */
  when(key: string): number;
  forget(key: string): void;
  /** Retries recorded for the key since it was last forgotten. */
  numRequeues(key: string): number;
}

/** Per-key exponential backoff: `baseDelayMs * 2^failures`, capped at `maxDelayMs`. */
export class ItemExponentialBackoff implements RateLimiter {
  readonly #failures = new Map<string, number>();
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;

  constructor(baseDelayMs = 5, maxDelayMs = 1_000_000) {
    this.#baseDelayMs = baseDelayMs;
    this.#maxDelayMs = maxDelayMs;
  }

  when(key: string): number {
    const failures = this.#failures.get(key) ?? 0;
    this.#failures.set(key, failures + 1);
    // Not jittered, as client-go's per-item limiter is not: the overall token bucket bounds a crowd of
    // retries.
    return exponentialDelay(failures, this.#baseDelayMs, this.#maxDelayMs);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/**
 * An overall token bucket shared by all keys (golang.org/x/time/rate `Reserve` semantics): `burst`
 * retries go through at once, then one every `1000 / qps` ms. It bounds the retry rate of the whole
 * controller when many keys fail together (e.g. the API server is down).
 */
export class TokenBucket implements RateLimiter {
  readonly #qps: number;
  readonly #burst: number;
  readonly #clock: Clock;
  #tokens: number;
  #last: number;

  constructor(qps = 10, burst = 100, clock: Clock = systemClock) {
    if (!(qps > 0) || !(burst >= 1))
      throw new Error(`token bucket needs qps > 0 and burst >= 1 (got ${qps}, ${burst})`);
    this.#qps = qps;
    this.#burst = burst;
    this.#clock = clock;
    this.#tokens = burst;
    this.#last = clock.now();
  }

  when(_key: string): number {
    this.#refill();
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : (-this.#tokens / this.#qps) * 1000;
  }

  /**
   * Takes a token only when one is there (`Allow` semantics): refused calls cost nothing, so a flood
   * of refused requests does not keep the bucket empty after it stops.
   */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #refill(): void {
    const now = this.#clock.now();
    const elapsed = Math.max(0, now - this.#last);
    this.#tokens = Math.min(this.#burst, this.#tokens + (elapsed / 1000) * this.#qps);
    this.#last = now;
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** The longest delay of several limiters (client-go `MaxOfRateLimiter`); every limiter records the retry. */
export class MaxOfRateLimiter implements RateLimiter {
  readonly #limiters: readonly RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    let delay = 0;
    for (const limiter of this.#limiters) delay = Math.max(delay, limiter.when(key));
    return delay;
  }

  forget(key: string): void {
    for (const limiter of this.#limiters) limiter.forget(key);
  }

  numRequeues(key: string): number {
    let n = 0;
    for (const limiter of this.#limiters) n = Math.max(n, limiter.numRequeues(key));
    return n;
  }
}

export interface RateLimiterOptions {
  /** First per-key retry delay; doubles on each retry. Default 5 ms. */
  baseDelayMs?: number;
  /** Cap of the per-key delay. Default 1000 s. */
  maxDelayMs?: number;
  /** Overall retries per second once the burst is spent. Default 10. */
  qps?: number;
  /** Overall retries allowed at once. Default 100. */
  burst?: number;
}

/** client-go's `DefaultControllerRateLimiter`: max of per-key exponential backoff and an overall token bucket. */
export function defaultControllerRateLimiter(
  opts: RateLimiterOptions = {},
  clock: Clock = systemClock,
): RateLimiter {
  return new MaxOfRateLimiter(
    new ItemExponentialBackoff(opts.baseDelayMs ?? 5, opts.maxDelayMs ?? 1_000_000),
    new TokenBucket(opts.qps ?? 10, opts.burst ?? 100, clock),
  );
}

/**
 * Callbacks for metrics; all optional. `metrics.ts` has `workQueueHooks` feeding the Prometheus
 * metrics of one named queue.
 */
export interface WorkQueueHooks {
  /** Keys waiting for a worker (not counting delayed keys or keys being processed). */
  depth?(depth: number): void;
  /** A key was queued that was not queued already. */
  added?(): void;
  /** `addRateLimited` was called. */
  retried?(): void;
  /** Seconds a key spent queued before a worker took it. */
  queueLatency?(seconds: number): void;
  /** Seconds between `get` and `done` of a key. */
  workDuration?(seconds: number): void;
}

export interface WorkQueueOptions {
  /** Time source for delays, the token bucket and durations. Default: the system clock. */
  clock?: Clock;
  /** Either a ready limiter or options of the default one (per-key 5 ms … 1000 s, 10 qps / 100 burst). */
  rateLimiter?: RateLimiter | RateLimiterOptions;
  hooks?: WorkQueueHooks;
}

/**
 * A client-go style work queue of string keys (`namespace/name`, or any string).
 *
 * - Deduplicated: a key added while it waits is queued once.
 * - Never concurrent: a key added while a worker processes it is handed out again only after `done`.
 * - Delays: `addAfter` holds a key back (the earliest pending time wins); `addRateLimited` holds it
 *   back by the rate limiter, and `forget` resets its backoff.
 * - Shutdown: `shutDown` drops queued and delayed keys and makes every `get` resolve `undefined`;
 *   `shutDownWithDrain` does the same and then waits until every key being processed is `done`.
 *   Dropping queued keys is safe because reconcilers are level-based: the next leader or the next
 *   start lists everything again.
 *
 * Workers loop `get` → process → `done` (see `runWorker` in outcome.ts).
 */
export class WorkQueue {
  readonly #clock: Clock;
  readonly #limiter: RateLimiter;
  readonly #hooks: WorkQueueHooks;

  /** Keys ready for a worker, in order. */
  #queue: string[] = [];
  /** Keys that need processing: queued ones, and processed ones re-added meanwhile. Value: when queued. */
  readonly #dirty = new Map<string, number>();
  /** Keys handed to a worker and not yet `done`. Value: when handed out. */
  readonly #processing = new Map<string, number>();
  /** Workers waiting in `get`. */
  #getters: Array<(key: string | undefined) => void> = [];

  /** Delayed keys: when each becomes ready, and a sequence number to keep equal times in order. */
  readonly #waiting = new Map<string, { at: number; seq: number }>();
  #seq = 0;
  #timer: TimerHandle | undefined;
  #timerAt = Number.POSITIVE_INFINITY;

  #shuttingDown = false;
  #drainers: Array<() => void> = [];

  constructor(opts: WorkQueueOptions = {}) {
    this.#clock = opts.clock ?? systemClock;
    const rl = opts.rateLimiter;
    this.#limiter =
      rl && typeof (rl as RateLimiter).when === 'function'
        ? (rl as RateLimiter)
        : defaultControllerRateLimiter(rl as RateLimiterOptions | undefined, this.#clock);
    this.#hooks = opts.hooks ?? {};
  }

  /** Queues `key` unless it is queued already or the queue is shutting down. */
  add(key: string): void {
    if (this.#shuttingDown || this.#dirty.has(key)) return;
    this.#dirty.set(key, this.#clock.now());
    this.#hooks.added?.();
    // Being processed: `done` queues it again, so one key never runs on two workers.
    if (this.#processing.has(key)) return;
    this.#enqueue(key);
  }

  /** Queues `key` after `ms`. A key already delayed keeps the earlier of the two times. */
  addAfter(key: string, ms: number): void {
    if (this.#shuttingDown) return;
    if (!(ms > 0)) {
      this.add(key);
      return;
    }
    const at = this.#clock.now() + ms;
    const existing = this.#waiting.get(key);
    if (existing && existing.at <= at) return;
    this.#waiting.set(key, { at, seq: this.#seq++ });
    this.#schedule();
  }

  /** Queues `key` after the rate limiter's delay: per-key backoff, bounded overall by the token bucket. */
  addRateLimited(key: string): void {
    if (this.#shuttingDown) return;
    this.#hooks.retried?.();
    this.addAfter(key, this.#limiter.when(key));
  }

  /** Resets the key's backoff (after a success, or when giving up). Does not unqueue it. */
  forget(key: string): void {
    this.#limiter.forget(key);
  }

  /** Rate-limited retries of the key since it was last forgotten. */
  numRequeues(key: string): number {
    return this.#limiter.numRequeues(key);
  }

  /**
   * The next key to process, waiting until one is ready; `undefined` once the queue shuts down. Every
   * key returned must be given back with `done`.
   */
  get(): Promise<string | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#queue.length > 0 ? this.#take() : undefined;
    if (key !== undefined) return Promise.resolve(key);
    return new Promise((resolve) => this.#getters.push(resolve));
  }

  /** Ends the processing of `key`; if it was added meanwhile it is queued again. */
  done(key: string): void {
    const started = this.#processing.get(key);
    if (started === undefined) return;
    this.#processing.delete(key);
    this.#hooks.workDuration?.((this.#clock.now() - started) / 1000);
    if (!this.#shuttingDown && this.#dirty.has(key)) this.#enqueue(key);
    if (this.#shuttingDown && this.#processing.size === 0) this.#releaseDrainers();
  }

  /** Keys ready for a worker (not counting delayed keys or keys being processed). */
  len(): number {
    return this.#queue.length;
  }

  /** Keys waiting for their `addAfter`/`addRateLimited` delay. */
  delayedLen(): number {
    return this.#waiting.size;
  }

  /** Keys handed out by `get` and not yet `done`. */
  processingLen(): number {
    return this.#processing.size;
  }

  isShuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /** Stops the queue at once: adds are ignored, queued and delayed keys dropped, `get` resolves `undefined`. */
  shutDown(): void {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    this.#waiting.clear();
    this.#queue = [];
    // Keys being processed stay in processing until `done`; forget that any was re-added.
    this.#dirty.clear();
    this.#hooks.depth?.(0);
    const getters = this.#getters;
    this.#getters = [];
    for (const resolve of getters) resolve(undefined);
    if (this.#processing.size === 0) this.#releaseDrainers();
  }

  /** `shutDown`, then resolves once every key being processed is `done`. */
  shutDownWithDrain(): Promise<void> {
    const drained = new Promise<void>((resolve) => this.#drainers.push(resolve));
    this.shutDown();
    if (this.#processing.size === 0) this.#releaseDrainers();
    return drained;
  }

  #enqueue(key: string): void {
    const getter = this.#getters.shift();
    if (getter) {
      getter(this.#takeKey(key));
      return;
    }
    this.#queue.push(key);
    this.#hooks.depth?.(this.#queue.length);
  }

  #take(): string | undefined {
    const key = this.#queue.shift();
    if (key === undefined) return undefined;
    this.#hooks.depth?.(this.#queue.length);
    return this.#takeKey(key);
  }

  #takeKey(key: string): string {
    const now = this.#clock.now();
    const queuedAt = this.#dirty.get(key) ?? now;
    this.#dirty.delete(key);
    this.#processing.set(key, now);
    this.#hooks.queueLatency?.((now - queuedAt) / 1000);
    return key;
  }

  #releaseDrainers(): void {
    const drainers = this.#drainers;
    this.#drainers = [];
    for (const resolve of drainers) resolve();
  }

  /** Keeps one timer, set for the earliest delayed key. */
  #schedule(): void {
    let next = Number.POSITIVE_INFINITY;
    for (const { at } of this.#waiting.values()) if (at < next) next = at;
    if (next === this.#timerAt) return;
    if (this.#timer) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = next;
    if (next === Number.POSITIVE_INFINITY) return;
    this.#timer = this.#clock.setTimeout(() => this.#onTimer(), next - this.#clock.now());
  }

  #onTimer(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = this.#clock.now();
    const ready = [...this.#waiting].filter(([, w]) => w.at <= now);
    ready.sort(([, a], [, b]) => a.at - b.at || a.seq - b.seq);
    for (const [key] of ready) {
      this.#waiting.delete(key);
      this.add(key);
    }
    this.#schedule();
  }
}
