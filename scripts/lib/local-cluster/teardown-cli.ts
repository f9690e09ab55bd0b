/**
 * `node teardown-cli.ts DIR`: what `stop()` would have done for an in-process environment whose owner
 * died without calling it (run by the supervisor's watchdog): stops the recorded processes and the real
 * node's containers, unmounts, removes its cgroups and restores kernel settings. Leaves the files.
 */
import { stopLocalCluster } from './state.ts';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node teardown-cli.ts DIR');
  process.exit(2);
}
stopLocalCluster(dir).then(
  (stopped) => console.log(`${new Date().toISOString()} stopped ${stopped.join(', ') || 'nothing'}`),
  (err: unknown) => {
    console.error(`${new Date().toISOString()} ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  },
);
