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
