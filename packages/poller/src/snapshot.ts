/**
 * The entry point of the poller's start-up snapshot (rolldown.config.ts, `snapshotBundleOptions`; the blob
 * is built by scripts/lib/programs.ts): evaluated once when the blob is built, `startPoller` at each start.
 */
import { fileURLToPath } from 'node:url';
import { runFromStartupSnapshot } from '@kubewatcher/shared';
import { startPoller } from './start.ts';

runFromStartupSnapshot(fileURLToPath(import.meta.url), 'main.cjs.map', (argv, sourceMaps) => {
  void startPoller(argv, sourceMaps);
});
