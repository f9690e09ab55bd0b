/**
 * The chart's Pod Security check and what `helm uninstall` leaves, with the real helm binary
 * (scripts/build-helm.sh) against the local control plane and kwok's node: `helm install` refuses a
 * release namespace that does not enforce the restricted Pod Security Standard, with a message naming
 * the label and the value that skips the check; it installs into a labelled namespace, and into any with
 * the override; `helm template` renders without looking. No --wait (kwok runs no container): the
 * controller runs in this process instead, as the release's service account, so it makes the Lease and
 * the poller's RoleBinding that the chart's pods would, with the release's RBAC and admission policies.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoordinationV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { startController } from '../packages/controller/test/controller-harness.ts';
import { HELM_CHART, type Helm, helmFor } from '../scripts/lib/in-cluster.ts';
import {
  clientsFor,
  createNamespace,
  createWatchedImage,
  deleteNamespace,
  installCrds,
  kubectl,
  serviceAccountKubeConfig,
  until,
} from './support/controller-fixtures.ts';

const info = inject('localCluster');
const clients = clientsFor(info);
const rbac = clients.kc.makeApiClient(RbacAuthorizationV1Api);
const LABEL = 'pod-security.kubernetes.io/enforce';
const OVERRIDE = 'podSecurity.requireRestrictedNamespace=false';
/** The CRDs are the suite's (installed with kubectl, which Helm refuses to adopt): the chart leaves them. */
const NO_CRDS = ['--set', 'crds.install=false'];
/** Every kind the chart makes, and what the controller and Kubernetes make in a namespace. */
const KINDS =
  'all,configmaps,secrets,serviceaccounts,roles,rolebindings,networkpolicies,poddisruptionbudgets,leases';
const CLUSTER_KINDS =
  'clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings';

let dir: string;
let helm: Helm;
const namespaces: string[] = [];

beforeAll(async () => {
  await installCrds(info);
  dir = await mkdtemp(join(tmpdir(), 'kubewatcher-helm-psa-'));
  helm = await helmFor(info, dir);
});

afterAll(async () => {
  for (const ns of namespaces) await deleteNamespace(clients, ns);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function namespace(prefix: string, labels: Record<string, string> = {}): Promise<string> {
  const ns = await createNamespace(clients, prefix, labels);
  namespaces.push(ns);
  return ns;
}

/** helm's error message, or undefined when the command succeeded. */
const failure = (args: string[]) =>
  helm(args).then(
    () => undefined,
    (err: Error) => err.message,
  );

const releases = async (ns: string) => helm(['list', '-n', ns, '-a', '-q']);
const namesIn = async (ns: string) =>
  (await kubectl(info, '-n', ns, 'get', KINDS, '-o', 'name')).trim().split('\n').sort();
const ofRelease = async (release: string) =>
  (
    await kubectl(
      info,
      'get',
      `${KINDS},${CLUSTER_KINDS}`,
      '-A',
      '-l',
      `app.kubernetes.io/instance=${release}`,
      '-o',
      'name',
    )
  ).trim();

/** What Kubernetes itself puts in every namespace. */
const EMPTY_NAMESPACE = ['configmap/kube-root-ca.crt', 'serviceaccount/default'];

describe('the chart in a namespace without the restricted Pod Security label', () => {
  it('refuses to install, naming the label and the value that skips the check', async () => {
    for (const labels of [{}, { [LABEL]: 'baseline' }] as Record<string, string>[]) {
      const ns = await namespace('helm-psa-none', labels);
      const message = await failure(['install', 'kubewatcher-psa', HELM_CHART, '-n', ns, ...NO_CRDS]);
      expect(message).toContain(`namespace ${ns} must exist with the label ${LABEL}=restricted`);
      expect(message).toContain(`kubectl label namespace ${ns} ${LABEL}=restricted`);
      expect(message).toContain(OVERRIDE);
      // Refused while rendering: no release recorded, nothing made.
      expect(await releases(ns)).toBe('');
      expect(await namesIn(ns)).toEqual(EMPTY_NAMESPACE);
      expect(await ofRelease('kubewatcher-psa')).toBe('');
    }
  });

  it('refuses --create-namespace, before the namespace is made', async () => {
    const ns = `helm-psa-create-${Date.now().toString(36)}`;
    namespaces.push(ns);
    const message = await failure([
      'install',
      'kubewatcher-psa',
      HELM_CHART,
      '-n',
      ns,
      '--create-namespace',
      ...NO_CRDS,
    ]);
    expect(message).toContain(`namespace ${ns} must exist with the label ${LABEL}=restricted`);
    expect(await kubectl(info, 'get', 'namespace', ns, '--ignore-not-found', '-o', 'name')).toBe('');
  });

  it('is checked by a server dry run, not by helm template or a client dry run', async () => {
    const ns = await namespace('helm-psa-dry');
    expect(
      await failure(['install', 'kubewatcher-psa', HELM_CHART, '-n', ns, '--dry-run=server', ...NO_CRDS]),
    ).toContain(OVERRIDE);
    for (const args of [
      ['template', 'kubewatcher-psa', HELM_CHART, '-n', ns],
      ['install', 'kubewatcher-psa', HELM_CHART, '-n', ns, '--dry-run=client', ...NO_CRDS],
    ]) {
      const kinds = parseAllDocuments(await helm(args))
        .map((d) => (d.toJS() as { kind?: string } | null)?.kind)
        .filter(Boolean);
      expect(kinds).toEqual(expect.arrayContaining(['Deployment', 'CronJob', 'ValidatingAdmissionPolicy']));
    }
    expect(await releases(ns)).toBe('');
  });

  it('installs with the override, and uninstalls to nothing', async () => {
    const ns = await namespace('helm-psa-override');
    await helm(['install', 'kubewatcher-psa-override', HELM_CHART, '-n', ns, '--set', OVERRIDE, ...NO_CRDS]);
    expect(await ofRelease('kubewatcher-psa-override')).toContain(
      'deployment.apps/kubewatcher-psa-override-controller',
    );
    await helm(['uninstall', 'kubewatcher-psa-override', '-n', ns]);
    expect(await ofRelease('kubewatcher-psa-override')).toBe('');
    await until(
      () => namesIn(ns),
      (names) => names.join() === EMPTY_NAMESPACE.join(),
      { what: `${ns} to hold only what Kubernetes puts in every namespace` },
    );
  });
});

describe('the chart in a namespace that enforces restricted', () => {
  it('installs, and an uninstall leaves only what the controller made at run time and what the user made', async () => {
    const release = 'kubewatcher-psa';
    const ns = await namespace('helm-psa-restricted', { [LABEL]: 'restricted' });
    const app = await namespace('helm-psa-app');
    // Made by the user before install, as docs/install.md says: the poller's CA bundle.
    await kubectl(
      info,
      '-n',
      ns,
      'create',
      'configmap',
      `${release}-registry-cas`,
      '--from-literal=ca.crt=none',
    );
    await helm(['install', release, HELM_CHART, '-n', ns, ...NO_CRDS]);
    expect(await releases(ns)).toBe(release);
    // The chart's pods pass the restricted standard: the namespace admits them (kwok's node runs them).
    await until(
      () =>
        clients.core.listNamespacedPod({
          namespace: ns,
          labelSelector: `app.kubernetes.io/instance=${release}`,
        }),
      (pods) =>
        pods.items.filter((p) => p.metadata?.labels?.['app.kubernetes.io/component'] === 'controller')
          .length === 2,
      { what: `both controller pods admitted in ${ns}` },
    );
    const warnings = await kubectl(
      info,
      '-n',
      ns,
      'get',
      'events',
      '--field-selector',
      'reason=FailedCreate',
      '-o',
      'name',
    );
    expect(warnings.trim()).toBe('');
    // ...which does enforce it: a pod that is not restricted is refused there.
    const refused = await clients.core
      .createNamespacedPod({
        namespace: ns,
        dryRun: 'All',
        body: {
          metadata: { name: 'not-restricted' },
          spec: { containers: [{ name: 'c', image: 'busybox' }] },
        },
      })
      .then(
        () => '',
        (err: Error) => err.message,
      );
    expect(refused).toContain('violates PodSecurity');

    // The release's controller, run here as its service account: it leads (the Lease) and binds the
    // poller's secrets role where a WatchedImage is.
    const kubeConfig = await serviceAccountKubeConfig(info, clients, ns, `${release}-controller`);
    const controller = await startController(kubeConfig, {
      leaderElection: { namespace: ns, name: `${release}-controller`, identity: 'helm-test' },
      pollerAccess: {
        role: `${release}-poller-secrets`,
        serviceAccount: { namespace: ns, name: `${release}-poller` },
      },
      autoWatch: 'off',
    });
    try {
      await createWatchedImage(clients, app, 'shop', { image: 'ghcr.io/acme/shop:2.0' });
      const list = await until(
        () => rbac.listNamespacedRoleBinding({ namespace: app }),
        (l) => l.items.some((b) => b.metadata?.name === `${release}-poller-secrets`),
        { what: `the poller's RoleBinding in ${app}` },
      );
      const role = await rbac.readClusterRole({ name: `${release}-poller-secrets` });
      const binding = list.items.find((b) => b.metadata?.name === `${release}-poller-secrets`);
      expect(binding?.metadata?.ownerReferences).toEqual([
        {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'ClusterRole',
          name: role.metadata?.name,
          uid: role.metadata?.uid,
        },
      ]);
    } finally {
      await controller.stop();
    }
    const lease = await clients.kc
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ namespace: ns, name: `${release}-controller` });
    expect(lease.metadata?.name).toBe(`${release}-controller`);

    await helm(['uninstall', release, '-n', ns]);
    expect(await releases(ns)).toBe('');
    expect(await ofRelease(release)).toBe('');
    await until(
      () => namesIn(ns),
      (names) => !names.some((n) => n.startsWith('pod/') || n.startsWith('job.batch/')),
      { what: `the release's pods in ${ns} to go` },
    );
    // Exactly what docs/install.md lists: the Lease and the user's CA ConfigMap. The poller's RoleBinding
    // in the app's namespace is owned by the release's ClusterRole, so the garbage collector takes it.
    expect(await namesIn(ns)).toEqual(
      [
        ...EMPTY_NAMESPACE,
        `configmap/${release}-registry-cas`,
        `lease.coordination.k8s.io/${release}-controller`,
      ].sort(),
    );
    await until(
      () =>
        kubectl(
          info,
          'get',
          'rolebindings',
          '-A',
          '-l',
          'app.kubernetes.io/managed-by=kubewatcher',
          '-o',
          'name',
        ),
      (names) => !names.includes(`/${release}-poller-secrets`),
      { what: `the poller's RoleBinding in ${app} to go with its ClusterRole` },
    );
  });
});
