/** Polling until a condition holds, for scripts and tests that wait on a cluster they do not watch. */

/**
 * Calls `check` every `intervalMs` (default 250 ms) until it returns true; throws `describe()` once
 * `timeoutMs` has passed without it.
 */
export async function waitFor(
  check: () => Promise<boolean>,
  timeoutMs: number,
  describe: () => string,
  intervalMs = 250,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(describe());
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
