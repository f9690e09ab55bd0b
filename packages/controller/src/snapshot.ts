/**
 * The entry point of the controller's start-up snapshot (rolldown.config.ts, `snapshotBundleOptions`; the
 * blob is built by scripts/lib/programs.ts): evaluated once when the blob is built, `startController` at
 * each start.
 */
import { fileURLToPath } from 'node:url';
import { runFromStartupSnapshot } from '@kubewatcher/shared';
import { startController } from './start.ts';

runFromStartupSnapshot(fileURLToPath(import.meta.url), 'main.cjs.map', (argv, sourceMaps) => {
  void startController(argv, sourceMaps);
});
