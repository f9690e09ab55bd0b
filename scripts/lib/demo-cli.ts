/** `scripts/demo`: the demo (scripts/lib/demo.ts) on the long-lived local environment in `.local/`. */
import { readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LocalClusterInfo } from './cluster-info.ts';
import { DEMO_NAMESPACE, runDemo } from './demo.ts';
import { SYSTEM_NAMESPACE } from './in-cluster.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const stateDir = join(repoRoot, '.local');
const workDir = join(stateDir, 'demo');

const info = JSON.parse(await readFile(join(stateDir, 'cluster.json'), 'utf8')) as LocalClusterInfo;
const started = Date.now();
const elapsed = () => `${Math.round((Date.now() - started) / 1000)}s`.padStart(4);
try {
  const result = await runDemo({
    info,
    workDir,
    say: (text) => console.log(text.startsWith(' ') ? text : `\n${text}`),
    show: (text) => console.log(text.replace(/^/gm, '    ')),
    progress: (text) => console.log(`   ${text}`),
  });
  const ok = result.phase === 'Succeeded' && result.deploymentImage.endsWith(`@${result.secondDigest}`);
  const rel = (p: string) => relative(process.cwd(), p);
  console.log(`
${ok ? 'Done' : 'Finished with a problem'} in ${elapsed().trim()}: ImageUpdate ${result.imageUpdate} is ${result.phase}; every pod of deployment/web runs
    ${result.image.replace(/:[^:/]+$/, '')}@${result.secondDigest}
(image build ${result.buildSeconds}s, install ${result.installSeconds}s, push → pods on the new digest ${Math.round(result.pushToRolledOutMs / 1000)}s,
 of which ${Math.round(result.updateToRolledOutMs / 1000)}s from the poller's ImageUpdate to the pods; the rest is the CronJob's minute)

Look around (Kubewatcher keeps running in the cluster):
    export KUBECONFIG=${rel(info.kubeconfig)} PATH=${info.binDir}:$PATH
    kubectl get wi,iu -A                              # what is watched, what changed
    kubectl -n ${DEMO_NAMESPACE} logs -l app=web --prefix          # what the pods print
    kubectl -n ${SYSTEM_NAMESPACE} get pods,jobs       # the controller and the poller's runs
    scripts/push-image --runnable 'Hello from v3' demo/web:stable   # re-push: rolled out within a minute or two

Stop (leaves nothing behind):
    scripts/demo stop`);
  process.exit(ok ? 0 : 1);
} catch (err) {
  console.error(`\ndemo failed: ${(err as Error).message}`);
  process.exit(1);
}
