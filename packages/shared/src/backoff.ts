/**
 * Exponential backoff and jitter, one convention for every retry and timer in Kubewatcher:
 *
 * - the delay before retry `attempt` (counted from 0) is `baseMs × 2^attempt`, capped at `maxMs`;
 * - jitter only ever shortens a delay, by a random fraction of up to `factor` of it:
 *   `delay × (1 − factor × random())`. A cap or a period stays an upper bound (an informer at its
 *   30 s cap never waits longer than 30 s), and callers that started together still spread out.
 *   `factor` 1 is "full jitter" (anywhere between 0 and the delay), 0.2 keeps 80 % to 100 % of it.
 */

/** `baseMs × 2^attempt`, capped at `maxMs`. */
export function exponentialDelay(attempt: number, baseMs: number, maxMs: number): number {
  // 2^attempt overflows to Infinity long before it matters; the cap keeps the result finite.
  return Math.min(baseMs * 2 ** attempt, maxMs);
}

/** `ms` shortened by a random fraction of up to `factor` (0 to 1) of it. */
export function jitter(ms: number, factor: number, random: () => number = Math.random): number {
  return ms * (1 - factor * random());
}
