/**
 * Kubewatcher inside a local environment with a real node, installed the way a user installs it: the
 * image scripts/build-image builds, pushed to the environment's open registry, and the local overlay
 * (scripts/lib/local-overlay.ts) applied with `kubectl apply --server-side -k`, so the controller
 * Deployment and the poller CronJob run as pods. Also what a user checks afterwards: which digest each
 * pod of a workload runs and what it prints. The demo and the end-to-end tests share it.
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoordinationV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { loadKubeConfig } from '../../packages/shared/src/kube.ts';
import type { LocalClusterInfo } from './cluster-info.ts';
import { buildImage } from './image-build.ts';
import { type LocalCluster, startLocalCluster } from './local-cluster.ts';
import { BASIC_REGISTRY_CA_KEY, LOCAL_HELM_CA_CONFIGMAP, writeLocalHelmValues } from './local-helm.ts';
import { writeLocalKustomization } from './local-overlay.ts';
import { buildShippedPrograms } from './programs.ts';
import { waitFor } from './wait-for.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export const SYSTEM_NAMESPACE = 'kubewatcher-system';
/** Where the image goes in the environment's open registry. */
export const KUBEWATCHER_REPOSITORY = 'kubewatcher/kubewatcher';
/** The controller's leader Lease (the controller's --leader-election-id default). */
export const LEADER_LEASE = 'kubewatcher-controller';
export const CONTROLLER_SELECTOR =
  'app.kubernetes.io/name=kubewatcher,app.kubernetes.io/component=controller';
export const POLLER_SELECTOR = 'app.kubernetes.io/name=kubewatcher,app.kubernetes.io/component=poller';

export type Kubectl = (args: string[]) => Promise<string>;

/** kubectl with the environment's admin kubeconfig; a failure's message carries kubectl's stderr. */
export function kubectlFor(info: Pick<LocalClusterInfo, 'binDir' | 'kubeconfig'>): Kubectl {
  return async (args) => {
    try {
      const { stdout } = await run(join(info.binDir, 'kubectl'), ['--kubeconfig', info.kubeconfig, ...args], {
        maxBuffer: 16 << 20,
      });
      return stdout.trimEnd();
    } catch (err) {
      const e = err as Error & { stderr?: string };
      throw new Error(`kubectl ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  };
}

/**
 * A local environment with the real node in `dir`. One real node per machine: when another test run
 * holds it, waits (bounded: five minutes unless `waitMs` says otherwise) for it to go. `binDir`
 * defaults to what scripts/build-binaries.sh prints; `log` also receives the environment's progress.
 */
export async function startRealNodeCluster(
  dir: string,
  binDir?: string,
  options: { waitMs?: number; log?: (line: string) => void } = {},
): Promise<LocalCluster> {
  const log = options.log ?? ((line: string) => console.log(line));
  const deadline = Date.now() + (options.waitMs ?? 5 * 60_000);
  for (;;) {
    try {
      return await startLocalCluster({
        dir,
        realNode: true,
        ...(binDir ? { binDir } : {}),
        ...(options.log ? { log } : {}),
      });
    } catch (err) {
      if (!/another kubelet runs on this machine/.test(String(err)) || Date.now() > deadline) throw err;
      log(`waiting for the other real node to stop: ${(err as Error).message.split('\n')[0]}`);
      await delay(15_000);
    }
  }
}

function requireRealNode(info: LocalClusterInfo): NonNullable<LocalClusterInfo['realNode']> {
  if (!info.realNode) {
    throw new Error(
      `the environment in ${info.dir} has kwok's node, where no container runs: Kubewatcher's pods need the real node (scripts/local-cluster up --real-node)`,
    );
  }
  return info.realNode;
}

/**
 * Builds the bundles and the image from this checkout (what `scripts/build-image --push` does) and
 * pushes it to the environment's open registry; returns `REF@sha256:…`.
 */
export async function pushKubewatcherImage(
  info: LocalClusterInfo,
  options: { outDir: string; log?: (line: string) => void },
): Promise<string> {
  requireRealNode(info);
  const log = options.log ?? (() => {});
  log('building the bundles (pnpm -r run build)');
  await buildShippedPrograms(repoRoot);
  log("staging the image's files: Debian packages, Node.js, the bundles");
  const built = await buildImage({
    outDir: options.outDir,
    push: `${info.registries.open.host}/${KUBEWATCHER_REPOSITORY}:dev`,
    binDir: info.binDir,
    endpoint: info.registries.open,
    log,
  });
  if (!built.pushed) throw new Error('buildImage pushed nothing');
  return built.pushed;
}

/**
 * Writes the local overlay for `image` (`REF@sha256:…`) into `dir`, applies it and waits until a
 * controller pod runs that digest, is Ready, and a controller holds the leader Lease (a new one when
 * the install replaced another image). `customize` may write a kustomization on top of the overlay's
 * folder and return that folder instead (e.g. a benchmark's extra flags). Returns the folder applied
 * (`kubectl delete -k` removes it all).
 */
export async function installKubewatcher(
  info: LocalClusterInfo,
  options: {
    image: string;
    dir: string;
    timeoutMs?: number;
    customize?: (overlay: string) => Promise<string>;
  },
): Promise<string> {
  requireRealNode(info);
  const kubectl = kubectlFor(info);
  const local = await writeLocalKustomization(join(options.dir, 'kubewatcher-overlay'), info, options.image);
  const overlay = options.customize ? await options.customize(local) : local;
  const installed = await kubectl([
    '-n',
    SYSTEM_NAMESPACE,
    'get',
    'deployment',
    'kubewatcher-controller',
    '--ignore-not-found',
    '-o',
    'jsonpath={.spec.template.spec.containers[0].image}',
  ]);
  // kustomize names a pinned image by digest alone (`name@sha256:…`): compare the digests.
  const digest = options.image.split('@')[1] ?? '';
  const replaced = installed !== '' && installed.split('@')[1] !== digest;
  const previous = replaced ? await leaseHolder(info) : '';
  await kubectl(['apply', '--server-side', '--force-conflicts', '-k', overlay]);
  await waitForLeader(info, {
    timeoutMs: options.timeoutMs ?? 120_000,
    digest,
    ...(previous ? { previous } : {}),
  });
  return overlay;
}

export type Helm = (args: string[]) => Promise<string>;

/** The chart, as shipped. */
export const HELM_CHART = join(repoRoot, 'manifests/helm/kubewatcher');
/**
 * The release name: with "kubewatcher" the chart names every object (and the leader Lease) as the
 * kustomize base does, so LEADER_LEASE and the selectors above hold for both installs.
 */
export const HELM_RELEASE = 'kubewatcher';

/**
 * helm (scripts/build-helm.sh builds it) with the environment's admin kubeconfig and its own config,
 * cache and data folders under `dir` (nothing of the user's ~/.config/helm is read or written); a
 * failure's message carries helm's stderr.
 */
export async function helmFor(info: Pick<LocalClusterInfo, 'kubeconfig'>, dir: string): Promise<Helm> {
  const { stdout } = await run('bash', [join(repoRoot, 'scripts/build-helm.sh'), '--print-path']);
  const helm = stdout.trim();
  const env = {
    ...process.env,
    HELM_CONFIG_HOME: join(dir, 'helm/config'),
    HELM_CACHE_HOME: join(dir, 'helm/cache'),
    HELM_DATA_HOME: join(dir, 'helm/data'),
  };
  return async (args) => {
    try {
      const out = await run(helm, ['--kubeconfig', info.kubeconfig, ...args], { env, maxBuffer: 16 << 20 });
      return out.stdout.trimEnd();
    } catch (err) {
      const e = err as Error & { stderr?: string; code?: string };
      if (e.code === 'ENOENT') throw new Error(`${helm} is missing: build it with scripts/build-helm.sh`);
      throw new Error(`helm ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
    }
  };
}

/**
 * `helm install` of the chart into `namespace` of the environment, by values only (scripts/lib/local-helm.ts),
 * and waits until a controller pod runs `image`'s digest, is Ready, and a controller holds the leader
 * Lease. First, what Helm cannot make: the namespace, labelled to enforce the "privileged" Pod Security
 * level (hostNetwork needs it) and audit "restricted", and the ConfigMap with the basic-auth registry's CA.
 */
export async function installWithHelm(
  info: LocalClusterInfo,
  options: { image: string; dir: string; namespace: string; timeoutMs?: number },
): Promise<{ helm: Helm; release: string; namespace: string }> {
  requireRealNode(info);
  const { namespace } = options;
  const kubectl = kubectlFor(info);
  const dir = join(options.dir, 'kubewatcher-helm');
  await mkdir(dir, { recursive: true });
  const namespaceFile = join(dir, 'namespace.yaml');
  await writeFile(
    namespaceFile,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: namespace,
        labels: {
          'pod-security.kubernetes.io/enforce': 'privileged',
          'pod-security.kubernetes.io/audit': 'restricted',
          'pod-security.kubernetes.io/audit-version': 'latest',
        },
      },
    }),
  );
  await kubectl(['apply', '--server-side', '-f', namespaceFile]);
  if (info.registries.basic.caFile) {
    await kubectl([
      '-n',
      namespace,
      'create',
      'configmap',
      LOCAL_HELM_CA_CONFIGMAP,
      `--from-file=${BASIC_REGISTRY_CA_KEY}=${info.registries.basic.caFile}`,
    ]);
  }
  const values = await writeLocalHelmValues(dir, info, options.image);
  const helm = await helmFor(info, dir);
  // No --wait: Helm would wait for both replicas, and on one node the second stays Pending (the first
  // holds the node's port 8080); a Ready leader is what counts.
  await helm(['install', HELM_RELEASE, HELM_CHART, '--namespace', namespace, '--values', values]);
  await waitForLeader(info, {
    namespace,
    timeoutMs: options.timeoutMs ?? 120_000,
    digest: options.image.split('@')[1] ?? '',
  });
  return { helm, release: HELM_RELEASE, namespace };
}

export interface Leader {
  /** The Lease's holder: the leading controller process's identity. */
  identity: string;
  /** The controller pods that are Running and Ready (with hostNetwork on one node: one). */
  readyPods: string[];
}

/**
 * Waits for a leader in `namespace` (default SYSTEM_NAMESPACE): a Lease holder other than `previous`,
 * and a Ready controller pod (running `digest`, when given). A Lease whose holder released it
 * (holderIdentity empty) has no leader.
 */
export async function waitForLeader(
  info: LocalClusterInfo,
  options: { timeoutMs: number; previous?: string; digest?: string; namespace?: string },
): Promise<Leader> {
  const namespace = options.namespace ?? SYSTEM_NAMESPACE;
  let leader: Leader = { identity: '', readyPods: [] };
  let pods: PodImage[] = [];
  await waitFor(
    async () => {
      pods = await podImages(info, namespace, CONTROLLER_SELECTOR);
      leader = {
        identity: await leaseHolder(info, namespace),
        readyPods: pods
          .filter((p) => p.ready && !p.terminating && (!options.digest || p.digest === options.digest))
          .map((p) => p.name),
      };
      return leader.identity !== '' && leader.identity !== options.previous && leader.readyPods.length > 0;
    },
    options.timeoutMs,
    () =>
      `no controller${options.digest ? ` on ${options.digest}` : ''} became leader within ${options.timeoutMs / 1000}s (Lease holder "${leader.identity}", Ready pods: ${leader.readyPods.join(', ') || 'none'}; pods: ${pods.map((p) => `${p.name} ${p.digest.slice(7, 19) || 'not started'} ${p.restarts} restarts`).join(', ') || 'none'}); kubectl -n ${namespace} describe pods -l ${CONTROLLER_SELECTOR}`,
  );
  return leader;
}

/** The leader Lease's holder, '' when there is none (or no Lease yet). */
async function leaseHolder(info: LocalClusterInfo, namespace: string = SYSTEM_NAMESPACE): Promise<string> {
  const lease = await loadKubeConfig(info.kubeconfig)
    .makeApiClient(CoordinationV1Api)
    .readNamespacedLease({ name: LEADER_LEASE, namespace })
    .catch(() => undefined);
  return lease?.spec?.holderIdentity ?? '';
}

const podName = (p: V1Pod) => p.metadata?.name ?? '';
const isReady = (p: V1Pod) =>
  p.status?.phase === 'Running' &&
  p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

/** What `kubectl get pods` and the pod's status say about one pod of a workload. */
export interface PodImage {
  name: string;
  /** The digest its container runs (from `status.containerStatuses[].imageID`), or '' before it started. */
  digest: string;
  imageID: string;
  ready: boolean;
  restarts: number;
  terminating: boolean;
}

/** The pods matching `selector` in `namespace`, each with the digest its container `container` runs. */
export async function podImages(
  info: LocalClusterInfo,
  namespace: string,
  selector: string,
  container?: string,
): Promise<PodImage[]> {
  const core = loadKubeConfig(info.kubeconfig).makeApiClient(CoreV1Api);
  const { items } = await core.listNamespacedPod({ namespace, labelSelector: selector });
  return items.map((p) => {
    const status = p.status?.containerStatuses?.find((c) => !container || c.name === container);
    const imageID = status?.imageID ?? '';
    return {
      name: podName(p),
      imageID,
      digest: /@(sha256:[0-9a-f]{64})$/.exec(imageID)?.[1] ?? '',
      ready: isReady(p) ?? false,
      restarts: status?.restartCount ?? 0,
      terminating: p.metadata?.deletionTimestamp !== undefined,
    };
  });
}

/**
 * Waits until exactly `replicas` pods match `selector`, all Ready and all running `digest` (old pods
 * gone); returns them. `onChange` hears a line each time the count on the new digest changes.
 */
export async function waitForPodsOnDigest(
  info: LocalClusterInfo,
  o: {
    namespace: string;
    selector: string;
    digest: string;
    replicas: number;
    timeoutMs: number;
    onChange?: (line: string) => void;
  },
): Promise<PodImage[]> {
  let pods: PodImage[] = [];
  let said = '';
  await waitFor(
    async () => {
      pods = await podImages(info, o.namespace, o.selector);
      const onNew = pods.filter((p) => p.digest === o.digest && p.ready && !p.terminating).length;
      const line = `${onNew}/${o.replicas} pods Ready on ${o.digest.slice(7, 19)}, ${pods.length - onNew} other(s)`;
      if (line !== said) o.onChange?.(line);
      said = line;
      return onNew === o.replicas && pods.length === o.replicas;
    },
    o.timeoutMs,
    () =>
      `pods ${o.selector} in ${o.namespace} not all on ${o.digest} after ${o.timeoutMs / 1000}s: ${JSON.stringify(pods)}`,
    200,
  );
  return pods;
}

/** When the every-minute poller CronJob fires next (the start of the next minute), in ms from now. */
export function msUntilNextMinute(now: Date = new Date()): number {
  return 60_000 - (now.getTime() % 60_000);
}
