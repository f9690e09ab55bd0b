/** `scripts/demo [run|stop]`: the demo on the long-lived local environment in `.local/`. */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LocalClusterInfo } from './cluster-info.ts';
import { runDemo, stopDemoController } from './demo.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const stateDir = join(repoRoot, '.local');
const workDir = join(stateDir, 'demo');
const command = process.argv[2] ?? 'run';

if (command === 'stop') {
  const stopped = await stopDemoController(workDir);
  console.log(stopped ? 'demo controller stopped' : 'no demo controller running');
  process.exit(0);
}
if (command !== 'run') {
  console.error('usage: scripts/demo [run|stop]');
  process.exit(2);
}

const info = JSON.parse(await readFile(join(stateDir, 'cluster.json'), 'utf8')) as LocalClusterInfo;
await stopDemoController(workDir);
const started = Date.now();
try {
  const result = await runDemo({
    info,
    repoRoot,
    workDir,
    say: (text) => console.log(text.startsWith(' ') ? text : `\n${text}`),
    show: (text) => console.log(text.replace(/^/gm, '    ')),
  });
  const ok = result.phase === 'Succeeded' && result.deploymentImage.endsWith(`@${result.secondDigest}`);
  console.log(`
${ok ? 'Done' : 'Finished with a problem'} in ${Math.round((Date.now() - started) / 1000)}s: ImageUpdate ${result.imageUpdate} is ${result.phase}, and deployment/web runs
    ${result.deploymentImage}

Look around (the controller keeps running):
    export KUBECONFIG=${info.kubeconfig}
    export PATH=${info.binDir}:$PATH
    kubectl get wi,iu -A                       # what is watched, what changed
    kubectl -n demo describe iu ${result.imageUpdate}
    scripts/push-image demo/web:stable         # re-push the tag, then run the poller again:
    node --conditions=@kubewatcher/source packages/poller/src/main.ts --kubeconfig .local/demo/kubewatcher-poller.kubeconfig --plain-http ${info.registries.open.host} --ignore-interval
    tail -f ${result.controllerLog}

Stop:
    scripts/demo stop && scripts/local-cluster down`);
  process.exit(ok ? 0 : 1);
} catch (err) {
  console.error(`\ndemo failed: ${(err as Error).message}`);
  await stopDemoController(workDir);
  process.exit(1);
}
