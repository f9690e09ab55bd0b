/**
 * `node real-node-owner.ts DIR BIN_DIR`: owns an in-process environment with a real node, prints `READY`
 * and waits to be killed. test/real-node.test.ts kills it with SIGKILL to prove that the watchdog then
 * tears the node down.
 */
import { startLocalCluster } from '../../scripts/lib/local-cluster.ts';

const [dir, binDir] = process.argv.slice(2);
if (!dir || !binDir) throw new Error('usage: node real-node-owner.ts DIR BIN_DIR');
await startLocalCluster({ dir, binDir, realNode: true });
console.log('READY');
setInterval(() => {}, 60_000);
