/**
 * The Helm chart on the real node, checked the way a user checks it: the image scripts/build-image
 * builds, pushed to the environment's open registry, and `helm install` of manifests/helm/kubewatcher
 * with values only (scripts/lib/local-helm.ts) into a fresh namespace that enforces the "privileged"
 * Pod Security level. One scenario, about two CronJob minutes: a controller Ready on the pushed digest
 * and leading, the poller CronJob's scheduled Job succeeding, one re-push of a watched tag rolling a
 * Deployment onto the new digest (the pods' imageID), then `helm uninstall` removing everything the
 * release made. Helm keeps the CRDs (crds.keep, the default), so WatchedImages survive an uninstall.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, type V1Job } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadKubeConfig } from '../packages/shared/src/index.ts';
import { pushBusyboxImage } from '../scripts/lib/images.ts';
import {
  CONTROLLER_SELECTOR,
  type Helm,
  installWithHelm,
  type Kubectl,
  kubectlFor,
  LEADER_LEASE,
  POLLER_SELECTOR,
  podImages,
  pushKubewatcherImage,
  startRealNodeCluster,
  waitForPodsOnDigest,
} from '../scripts/lib/in-cluster.ts';
import type { LocalCluster, LocalClusterInfo } from '../scripts/lib/local-cluster.ts';
import { LOCAL_HELM_CA_CONFIGMAP } from '../scripts/lib/local-helm.ts';
import { waitFor } from '../scripts/lib/wait-for.ts';
import { createWatchedImage, getWatchedImage } from './support/controller-fixtures.ts';

const { binDir } = inject('localCluster');
/** Two CronJob periods and the time a run and a rollout take. */
const CHANGE_TIMEOUT_MS = 150_000;
const RELEASE_NAMESPACE = 'kubewatcher-helm';
const APP_NAMESPACE = 'helm-app';

interface ManifestObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}

describe('Kubewatcher installed with helm on the real node', { timeout: 420_000 }, () => {
  let dir: string;
  let cluster: LocalCluster;
  let info: LocalClusterInfo;
  let kubectl: Kubectl;
  let helm: Helm;
  let kubewatcherImage: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubewatcher-helm-real-node-'));
    cluster = await startRealNodeCluster(join(dir, 'env'), binDir);
    info = cluster.info;
    kubectl = kubectlFor(info);
    kubewatcherImage = await pushKubewatcherImage(info, { outDir: join(dir, 'image') });
    ({ helm } = await installWithHelm(info, { image: kubewatcherImage, dir, namespace: RELEASE_NAMESPACE }));
  }, 600_000);

  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 180_000);

  it('runs the controller and the poller, rolls a re-pushed tag out, and uninstalls cleanly', async () => {
    const kc = loadKubeConfig(info.kubeconfig);
    const apps = kc.makeApiClient(AppsV1Api);
    const batch = kc.makeApiClient(BatchV1Api);
    const core = kc.makeApiClient(CoreV1Api);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const pushedDigest = kubewatcherImage.split('@')[1];

    // The release's controller: a Ready pod runs the pushed digest, and a controller holds the Lease
    // (its identity is the host's name with hostNetwork, not the pod's).
    const controllers = await podImages(info, RELEASE_NAMESPACE, CONTROLLER_SELECTOR, 'controller');
    expect(controllers.filter((p) => p.ready).map((p) => p.digest)).toContain(pushedDigest);
    const holder = await kubectl([
      '-n',
      RELEASE_NAMESPACE,
      'get',
      'lease',
      LEADER_LEASE,
      '-o',
      'jsonpath={.spec.holderIdentity}',
    ]);
    expect(holder).not.toBe('');

    // A Deployment on a fresh tag, and a WatchedImage for it.
    await core.createNamespace({ body: { metadata: { name: APP_NAMESPACE } } });
    const repository = `e2e/${APP_NAMESPACE}`;
    const image = `${info.registries.open.host}/${repository}:stable`;
    const pushApp = (version: string) =>
      pushBusyboxImage({
        info,
        registry: 'open',
        repository,
        tag: 'stable',
        content: `helm ${version} ${randomBytes(4).toString('hex')}\n`,
      });
    const first = await pushApp('v1');
    await apps.createNamespacedDeployment({
      namespace: APP_NAMESPACE,
      body: {
        metadata: { name: 'app' },
        spec: {
          replicas: 1,
          selector: { matchLabels: { app: 'app' } },
          template: {
            metadata: { labels: { app: 'app' } },
            spec: { terminationGracePeriodSeconds: 5, containers: [{ name: 'app', image }] },
          },
        },
      },
    });
    await waitForPodsOnDigest(info, {
      namespace: APP_NAMESPACE,
      selector: 'app=app',
      digest: first.digest,
      replicas: 1,
      timeoutMs: 90_000,
    });
    await createWatchedImage({ custom }, APP_NAMESPACE, 'app', { image, interval: '1m' });

    // The CronJob's scheduled run sees the tag: a poller Job succeeds and records the digest.
    const watchedDigest = async () =>
      (await getWatchedImage({ custom }, APP_NAMESPACE, 'app')).status?.digest;
    await waitFor(
      async () => (await watchedDigest()) === first.digest,
      CHANGE_TIMEOUT_MS,
      () => `the poller did not record ${first.digest} for ${APP_NAMESPACE}/app`,
      500,
    );
    // The Job turns Complete a moment after its pod ends (the run's patch can come first).
    let succeeded: V1Job[] = [];
    await waitFor(
      async () => {
        const jobs = await batch.listNamespacedJob({
          namespace: RELEASE_NAMESPACE,
          labelSelector: POLLER_SELECTOR,
        });
        succeeded = jobs.items.filter((j) => (j.status?.succeeded ?? 0) > 0);
        return succeeded.length > 0;
      },
      60_000,
      () => `no Job of the poller CronJob succeeded in ${RELEASE_NAMESPACE}`,
      500,
    );
    expect(succeeded[0]?.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'CronJob',
      name: 'kubewatcher-poller',
    });

    // One re-push of the tag: the Deployment's pod runs the new digest.
    const second = await pushApp('v2');
    const pushed = performance.now();
    const [pod] = await waitForPodsOnDigest(info, {
      namespace: APP_NAMESPACE,
      selector: 'app=app',
      digest: second.digest,
      replicas: 1,
      timeoutMs: CHANGE_TIMEOUT_MS,
    });
    console.log(`push → pod on the new digest: ${Math.round(performance.now() - pushed) / 1000}s`);
    expect(pod?.imageID).toMatch(new RegExp(`@${second.digest}$`));
    expect(second.digest).not.toBe(first.digest);

    // The release goes while the app and its WatchedImage stay, as on a user's cluster.
    const made = parseAllDocuments(await helm(['get', 'manifest', 'kubewatcher', '-n', RELEASE_NAMESPACE]))
      .map((d) => d.toJS() as ManifestObject | null)
      .filter((o): o is ManifestObject => o !== null);
    expect(made.map((o) => o.kind)).toEqual(expect.arrayContaining(['Deployment', 'CronJob', 'ClusterRole']));
    await helm(['uninstall', 'kubewatcher', '-n', RELEASE_NAMESPACE, '--wait', '--timeout', '120s']);

    // `Kind.group` names the resource for kubectl unambiguously (core kinds: the kind alone).
    const left = async (o: ManifestObject) => {
      const group = o.apiVersion.includes('/') ? o.apiVersion.split('/')[0] : '';
      return kubectl([
        'get',
        group ? `${o.kind}.${group}` : o.kind,
        o.metadata.name,
        ...(o.metadata.namespace ? ['-n', o.metadata.namespace] : []),
        '--ignore-not-found',
        '-o',
        'name',
      ]);
    };
    const crds = made.filter((o) => o.kind === 'CustomResourceDefinition');
    expect(crds.map((o) => o.metadata.name).sort()).toEqual([
      'imageupdates.kubewatcher.io',
      'watchedimages.kubewatcher.io',
    ]);
    for (const crd of crds) expect(await left(crd)).not.toBe('');
    const remaining: string[] = [];
    for (const o of made.filter((m) => m.kind !== 'CustomResourceDefinition')) {
      const name = await left(o);
      if (name) remaining.push(name);
    }
    expect(remaining).toEqual([]);
    // The pods and Jobs go with their owners (garbage collection, after Helm returns).
    await waitFor(
      async () => (await kubectl(['-n', RELEASE_NAMESPACE, 'get', 'pods,jobs', '-o', 'name'])) === '',
      60_000,
      () => `pods or Jobs left in ${RELEASE_NAMESPACE}`,
      500,
    );
    // Nothing labelled as the chart's anywhere. Left are what the controller made at run time, which
    // Helm does not know: its leader Lease in the release namespace (the poller's secrets RoleBinding in
    // the app's namespace goes with its owner, the release's ClusterRole); and in the namespace, the CA
    // ConfigMap made before install and what Kubernetes puts in every one.
    const labelled = await kubectl([
      'get',
      'all,configmaps,secrets,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,networkpolicies,poddisruptionbudgets,validatingadmissionpolicies,validatingadmissionpolicybindings',
      '-A',
      '-l',
      'app.kubernetes.io/name=kubewatcher',
      '-o',
      'name',
    ]);
    expect(labelled).toBe('');
    await waitFor(
      async () =>
        (await kubectl([
          'get',
          'rolebindings',
          '-A',
          '-l',
          'app.kubernetes.io/managed-by=kubewatcher',
          '-o',
          'name',
        ])) === '',
      60_000,
      () => `the poller's secrets RoleBinding in ${APP_NAMESPACE} to go with its ClusterRole`,
      500,
    );
    const inNamespace = await kubectl([
      '-n',
      RELEASE_NAMESPACE,
      'get',
      'all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets,leases',
      '-o',
      'name',
    ]);
    expect(inNamespace.split('\n').sort()).toEqual(
      [
        ...(info.registries.basic.caFile ? [`configmap/${LOCAL_HELM_CA_CONFIGMAP}`] : []),
        'configmap/kube-root-ca.crt',
        `lease.coordination.k8s.io/${LEADER_LEASE}`,
        'serviceaccount/default',
      ].sort(),
    );
    // The user's WatchedImage stays with the kept CRD, and the Deployment keeps its pinned digest.
    expect(await watchedDigest()).toBe(second.digest);
  });
});
