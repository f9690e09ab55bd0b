/**
 * Bounded concurrency: independent pieces of work (registry lookups, workload patches, Events) run
 * several at a time, never more than a limit, so one slow piece costs its own time and not everyone's.
 */

/**
 * Runs `work` over `items` with at most `limit` in flight (a pool: the next item starts as soon as one
 * ends) and resolves, once every item has ended, with each outcome in the items' order. A failure
 * never stops the others; the caller decides what a rejected outcome means.
 */
export async function settleWithLimit<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  const outcomes: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      try {
        outcomes[index] = { status: 'fulfilled', value: await work(items[index]!) };
      } catch (reason) {
        outcomes[index] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  return outcomes;
}

/**
 * Work that arrives one piece at a time (unlike settleWithLimit's list), never more than `limit` in
 * flight: `start` resolves once the piece has started, after waiting for a free slot, so a producer
 * faster than the work (registry lookups feeding status writes) is held back instead of queuing
 * without bound, and is not held up while its own pieces run. `settle` waits for every piece started
 * and returns the failures; a failure stops nothing.
 */
export class BoundedWork {
  readonly #limit: number;
  readonly #running = new Set<Promise<void>>();
  readonly #failures: unknown[] = [];

  constructor(limit: number) {
    this.#limit = Math.max(1, limit);
  }

  async start(work: () => Promise<void>): Promise<void> {
    while (this.#running.size >= this.#limit) await Promise.race(this.#running);
    const piece: Promise<void> = work()
      .catch((reason: unknown) => {
        this.#failures.push(reason);
      })
      .finally(() => this.#running.delete(piece));
    this.#running.add(piece);
  }

  /** Waits for every piece started so far (and any started meanwhile); the failures, in order. */
  async settle(): Promise<unknown[]> {
    while (this.#running.size > 0) await Promise.all(this.#running);
    return [...this.#failures];
  }
}
