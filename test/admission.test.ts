/**
 * The install's admission policies and RBAC on the real control plane (kube-apiserver with its default
 * admission plugins, ValidatingAdmissionPolicy among them): who may create and change ImageUpdates,
 * what the controller's service account may change of a workload, and the poller's secret access made
 * per watched namespace by the controller, and the poller's check record (one ConfigMap it may only read
 * and replace). Identities are real: service-account tokens from the TokenRequest API for the
 * controller and the poller, impersonation (`kubectl --as`) for a tenant.
 * Everything cluster-wide this file installs (policies, ClusterRoles, bindings), and the ConfigMaps, is
 * removed afterwards, so the other test files, which create ImageUpdates as the admin, are not affected.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments, stringify } from 'yaml';
import { type RunningController, startController } from '../packages/controller/test/controller-harness.ts';
import {
  applyStatus,
  FIELD_MANAGER,
  type ImageUpdate,
  imageUpdateName,
  loadKubeConfig,
  WATCHED_IMAGE,
} from '../packages/shared/src/index.ts';
import { serviceAccountKubeconfig } from '../scripts/lib/local-processes.ts';
import {
  type Clients,
  clientsFor,
  clientsOf,
  createImageUpdate,
  createNamespace,
  createWatchedImage,
  deleteNamespace,
  deployment,
  getImageUpdate,
  getWatchedImage,
  IU,
  installCrds,
  mergePatch,
  testDigest,
  until,
  waitForPhase,
  writeResolved,
} from './support/controller-fixtures.ts';

const run = promisify(execFile);
const info = inject('localCluster');
const SYSTEM_NS = 'kubewatcher-system';
const POLLER = `system:serviceaccount:${SYSTEM_NS}:kubewatcher-poller`;
const CONTROLLER = `system:serviceaccount:${SYSTEM_NS}:kubewatcher-controller`;
/** What of install.yaml this file applies: identities, RBAC, the policies and the ConfigMaps, no workloads. */
const APPLIED_KINDS = [
  'Namespace',
  'ServiceAccount',
  'ConfigMap',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
  'ValidatingAdmissionPolicy',
  'ValidatingAdmissionPolicyBinding',
];
const bundle = parseAllDocuments(readFileSync(join(import.meta.dirname, '../manifests/install.yaml'), 'utf8'))
  .map((d) => d.toJS() as { kind: string })
  .filter((o) => o && APPLIED_KINDS.includes(o.kind))
  .map((o) => stringify(o))
  .join('---\n');

/** kubectl against the local cluster; resolves with stdout+stderr and the exit code, never throws. */
async function kubectl(args: string[], input?: string): Promise<{ code: number; out: string }> {
  const child = run(join(info.binDir, 'kubectl'), ['--kubeconfig', info.kubeconfig, ...args], {
    maxBuffer: 16 << 20,
  });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  try {
    const { stdout, stderr } = await child;
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

async function must(args: string[], input?: string): Promise<string> {
  const r = await kubectl(args, input);
  if (r.code !== 0) throw new Error(`kubectl ${args.join(' ')} failed: ${r.out}`);
  return r.out;
}

/** API clients that authenticate as a service account of kubewatcher-system with a fresh token. */
async function clientsAs(serviceAccount: string): Promise<Clients> {
  const file = await serviceAccountKubeconfig(
    async (args) => (await must(args)).trim(),
    info,
    tokenDir,
    serviceAccount,
  );
  return clientsOf(loadKubeConfig(file));
}

let admin: Clients;
let poller: Clients;
let controllerClients: Clients;
let ns: string;
const TENANT = () => `system:serviceaccount:${ns}:tenant`;
const controllers: RunningController[] = [];
/** The service accounts' kubeconfigs (tokens: mode 0600), removed after the file. */
const tokenDir = mkdtempSync(join(tmpdir(), 'kubewatcher-admission-'));

/** A merge patch of an ImageUpdate's spec, as the tenant. */
const tenantPatchesSpec = (name: string, spec: object) =>
  kubectl([
    '-n',
    ns,
    'patch',
    'imageupdate',
    name,
    '--type=merge',
    '-p',
    JSON.stringify({ spec }),
    `--as=${TENANT()}`,
  ]);

/** A merge patch of an object's status, as the tenant. */
const tenantPatchesStatus = (resource: string, name: string, status: object) =>
  kubectl([
    '-n',
    ns,
    'patch',
    resource,
    name,
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status }),
    `--as=${TENANT()}`,
  ]);

function imageUpdateYaml(name: string, ownerUid: string, toDigest: string, approved?: boolean): string {
  return stringify({
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'ImageUpdate',
    metadata: {
      name,
      namespace: ns,
      ownerReferences: [
        {
          apiVersion: 'kubewatcher.io/v1alpha1',
          kind: 'WatchedImage',
          name: 'web',
          uid: ownerUid,
          controller: true,
        },
      ],
    },
    spec: {
      watchedImage: 'web',
      image: 'ghcr.io/acme/web:1.0',
      toDigest,
      ...(approved !== undefined ? { approved } : {}),
    },
  });
}

beforeAll(async () => {
  admin = clientsFor(info);
  await installCrds(info);
  // A check record a reused environment kept would not be reset by the apply (it ships without data).
  await kubectl(['-n', SYSTEM_NS, 'delete', 'configmap', 'kubewatcher-poller-checks', '--ignore-not-found']);
  await must(
    ['apply', '--server-side', '--force-conflicts', '--field-manager=admission-test', '-f', '-'],
    bundle,
  );
  poller = await clientsAs('kubewatcher-poller');
  controllerClients = await clientsAs('kubewatcher-controller');
  ns = await createNamespace(admin, 'admission');
  // A tenant who may do everything with ImageUpdates and Deployments in its namespace, through RBAC.
  await must(['-n', ns, 'create', 'serviceaccount', 'tenant']);
  await must([
    '-n',
    ns,
    'create',
    'role',
    'tenant',
    '--verb=get,list,create,update,patch,delete',
    '--resource=imageupdates.kubewatcher.io,imageupdates.kubewatcher.io/status,watchedimages.kubewatcher.io,watchedimages.kubewatcher.io/status,deployments.apps',
  ]);
  await must(['-n', ns, 'create', 'rolebinding', 'tenant', '--role=tenant', `--serviceaccount=${ns}:tenant`]);
  // A policy takes effect a moment after it is created: wait until the tenant is refused.
  const wi = await createWatchedImage(admin, ns, 'probe', { image: 'ghcr.io/acme/web:1.0' });
  await until(
    () =>
      kubectl(
        ['create', '-f', '-', `--as=${TENANT()}`],
        imageUpdateYaml('probe-x', wi.metadata.uid!, testDigest(9)),
      ),
    (r) => r.code !== 0 && r.out.includes('ValidatingAdmissionPolicy'),
    { what: 'the ImageUpdate policy to take effect', timeoutMs: 30_000 },
  );
}, 180_000);

afterAll(async () => {
  for (const c of controllers.splice(0)) await c.stop();
  rmSync(tokenDir, { recursive: true, force: true });
  if (ns) await deleteNamespace(admin, ns);
  // Cluster-wide objects go; the namespace kubewatcher-system and its service accounts may stay.
  const clusterWide = parseAllDocuments(bundle)
    .map((d) => d.toJS() as { kind: string })
    .filter((o) => o && !['Namespace', 'ServiceAccount', 'Role', 'RoleBinding'].includes(o.kind))
    .map((o) => stringify(o))
    .join('---\n');
  await kubectl(['delete', '--ignore-not-found', '-f', '-'], clusterWide);
});

describe('ImageUpdates', () => {
  it('a tenant creating one is refused with a message that says who may', async () => {
    const wi = await admin.custom.getNamespacedCustomObject({
      ...IU,
      plural: 'watchedimages',
      namespace: ns,
      name: 'probe',
    });
    const r = await kubectl(
      ['create', '-f', '-', `--as=${TENANT()}`],
      imageUpdateYaml(
        'probe-forged',
        (wi as { metadata: { uid: string } }).metadata.uid,
        testDigest(1),
        true,
      ),
    );
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("ImageUpdates are created only by Kubewatcher's poller, not by");
    expect(r.out).toContain(TENANT());
  });

  it.each([
    ['explicitly unapproved', false],
    ['with approved left out', undefined],
  ])('a tenant creating one %s is refused too', async (_what, approved) => {
    const wi = await getWatchedImage(admin, ns, 'probe');
    const r = await kubectl(
      ['create', '-f', '-', `--as=${TENANT()}`],
      imageUpdateYaml(`probe-unapproved-${String(approved)}`, wi.metadata.uid!, testDigest(5), approved),
    );
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("ImageUpdates are created only by Kubewatcher's poller, not by");
  });

  it('the poller creates one, never approved; the tenant approves it and may change nothing else', async () => {
    const wi = await createWatchedImage(admin, ns, 'web', {
      image: 'ghcr.io/acme/web:1.0',
      updatePolicy: 'Manual',
    });
    const uid = wi.metadata.uid!;
    const approvedAtBirth = await kubectl(
      ['create', '-f', '-', `--as=${POLLER}`],
      imageUpdateYaml('web-approved', uid, testDigest(2), true),
    );
    expect(approvedAtBirth.code).not.toBe(0);
    expect(approvedAtBirth.out).toContain('an ImageUpdate is created unapproved');

    await must(['create', '-f', '-', `--as=${POLLER}`], imageUpdateYaml('web-ok', uid, testDigest(3)));
    const approve = await tenantPatchesSpec('web-ok', { approved: true });
    expect(approve).toMatchObject({ code: 0 });
    expect(((await getImageUpdate(admin, ns, 'web-ok')) as ImageUpdate).spec.approved).toBe(true);

    // Approving while moving the update to another digest or image: refused whole, nothing changes.
    for (const spec of [
      { approved: true, toDigest: testDigest(6) },
      { approved: true, image: 'ghcr.io/evil/web:1.0' },
      { watchedImage: 'probe' },
    ]) {
      const forged = await tenantPatchesSpec('web-ok', spec);
      expect(forged.code, JSON.stringify(spec)).not.toBe(0);
    }
    expect(((await getImageUpdate(admin, ns, 'web-ok')) as ImageUpdate).spec).toMatchObject({
      watchedImage: 'web',
      image: 'ghcr.io/acme/web:1.0',
    });

    const status = await tenantPatchesStatus('imageupdate', 'web-ok', { phase: 'Succeeded' });
    expect(status.code).not.toBe(0);
    expect(status.out).toContain("ImageUpdate status is written only by Kubewatcher's controller");

    const digest = await tenantPatchesStatus('watchedimage', 'web', { digest: testDigest(4) });
    expect(digest.code).not.toBe(0);
    expect(digest.out).toContain(
      "WatchedImage status is written only by Kubewatcher's poller and controller",
    );

    // The poller and the controller write it, with their server-side applies (the policy's
    // matchCondition passes these writes by without evaluating its rules).
    for (const [clients, fieldManager, seq] of [
      [poller, FIELD_MANAGER.poller, 5],
      [controllerClients, FIELD_MANAGER.controller, 7],
    ] as const) {
      const status = { digest: testDigest(seq) };
      await applyStatus(clients.kc, {
        resource: WATCHED_IMAGE,
        namespace: ns,
        name: 'web',
        fieldManager,
        status,
      });
      expect((await getWatchedImage(admin, ns, 'web')).status?.digest, fieldManager).toBe(status.digest);
    }

    // Asking for a check (`kubectl kubewatcher check`) is the one status change anyone may make.
    const check = await tenantPatchesStatus('watchedimage', 'web', {
      checkRequestedTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    });
    expect(check).toMatchObject({ code: 0 });
  });
});

describe("the controller's service account", () => {
  const image = 'ghcr.io/acme/app:1.0';
  beforeAll(async () => {
    await admin.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('front', { containers: { app: image }, replicas: 1 }),
    });
  });
  const patch = (body: object) =>
    kubectl(['-n', ns, 'patch', 'deployment', 'front', '-p', JSON.stringify(body), `--as=${CONTROLLER}`]);

  it('may pin a container to a digest and annotate the workload', async () => {
    const r = await patch({
      metadata: { annotations: { 'kubewatcher.io/image-update': 'front-x' } },
      spec: { template: { spec: { containers: [{ name: 'app', image: `${image}@${testDigest(5)}` }] } } },
    });
    expect(r).toMatchObject({ code: 0 });
  });

  it.each([
    ['replicas', { spec: { replicas: 5 } }, 'it changed the spec outside the pod template'],
    [
      'an environment variable',
      { spec: { template: { spec: { containers: [{ name: 'app', env: [{ name: 'A', value: 'b' }] }] } } } },
      'it changed a container in another way than its image',
    ],
    [
      'an added container',
      { spec: { template: { spec: { containers: [{ name: 'miner', image: 'busybox' }] } } } },
      'it changed a container in another way than its image',
    ],
    [
      'the service account',
      { spec: { template: { spec: { serviceAccountName: 'tenant' } } } },
      'it changed the pod spec outside its containers',
    ],
    [
      'an image to another repository',
      {
        spec: {
          template: { spec: { containers: [{ name: 'app', image: `ghcr.io/evil/miner@${testDigest(7)}` }] } },
        },
      },
      "it changed an image's repository or tag",
    ],
    [
      'an image to another tag',
      { spec: { template: { spec: { containers: [{ name: 'app', image: 'ghcr.io/acme/app:2.0' }] } } } },
      "it changed an image's repository or tag",
    ],
    [
      'a pod label',
      { spec: { template: { metadata: { labels: { extra: 'x' } } } } },
      'it changed labels, owners or finalizers',
    ],
  ])('may not change %s', async (_, body, message) => {
    const r = await patch(body);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain(message);
    const d = await admin.apps.readNamespacedDeployment({ namespace: ns, name: 'front' });
    expect(d.spec?.replicas).toBe(1);
  });

  it('may bind only the poller secrets role, only to the poller, never in kube-system', async () => {
    const bind = (namespace: string, subject: string) =>
      kubectl([
        '-n',
        namespace,
        'create',
        'rolebinding',
        'kubewatcher-poller-secrets',
        '--clusterrole=kubewatcher-poller-secrets',
        `--serviceaccount=${subject}`,
        `--as=${CONTROLLER}`,
        '--dry-run=server',
      ]);
    expect(await bind(ns, `${SYSTEM_NS}:kubewatcher-poller`)).toMatchObject({ code: 0 });
    for (const [where, subject] of [
      [ns, `${ns}:tenant`],
      ['kube-system', `${SYSTEM_NS}:kubewatcher-poller`],
    ] as const) {
      const r = await bind(where, subject);
      expect(r.code, `${where} ${subject}`).not.toBe(0);
      expect(r.out).toContain("binds only the poller's secrets ClusterRole to the poller's service account");
    }
    const other = await kubectl([
      '-n',
      ns,
      'create',
      'rolebinding',
      'grab',
      '--clusterrole=admin',
      `--serviceaccount=${SYSTEM_NS}:kubewatcher-controller`,
      `--as=${CONTROLLER}`,
      '--dry-run=server',
    ]);
    expect(other.code).not.toBe(0);
  });
});

describe('the controller running as its service account', () => {
  it('grants the poller secrets where WatchedImages are, applies a real update, fails a forged one, and revokes', async () => {
    const canGetSecrets = async (namespace: string) =>
      (await kubectl(['auth', 'can-i', 'get', 'secrets', '-n', namespace, `--as=${POLLER}`])).out.trim();
    expect(await canGetSecrets(ns)).toBe('no');
    expect(await canGetSecrets('kube-system')).toBe('no');

    const apps = await createNamespace(admin, 'admission-apps');
    try {
      const image = 'ghcr.io/acme/shop:2.0';
      await admin.apps.createNamespacedDeployment({
        namespace: apps,
        body: deployment('shop', { containers: { app: image }, replicas: 1 }),
      });
      const wi = await createWatchedImage(admin, apps, 'shop', { image });
      const c = await startController(controllerClients.kc, {
        namespaces: [apps],
        pollerAccess: {
          role: 'kubewatcher-poller-secrets',
          serviceAccount: { namespace: SYSTEM_NS, name: 'kubewatcher-poller' },
        },
      });
      controllers.push(c);
      await until(
        () => canGetSecrets(apps),
        (a) => a === 'yes',
        { what: 'the poller to be granted secrets in the namespace' },
      );
      expect(await canGetSecrets('kube-system')).toBe('no');

      // The poller's update is applied through the policy: only the image changes.
      const baseline = testDigest(1);
      await writeResolved(poller, wi, baseline);
      const toDigest = testDigest(2);
      const iu = await createImageUpdate(poller, wi, toDigest, { fromDigest: baseline });
      await waitForPhase(admin, apps, iu.metadata.name, ['Succeeded', 'RollingOut']);
      const d = await admin.apps.readNamespacedDeployment({ namespace: apps, name: 'shop' });
      expect(d.spec?.template.spec?.containers[0]?.image).toBe(`${image}@${toDigest}`);

      // An update made with the poller's identity, owned by this WatchedImage, for another tag.
      const forged = imageUpdateName('shop', testDigest(3));
      await poller.custom.createNamespacedCustomObject({
        ...IU,
        namespace: apps,
        body: {
          apiVersion: 'kubewatcher.io/v1alpha1',
          kind: 'ImageUpdate',
          metadata: {
            name: forged,
            namespace: apps,
            ownerReferences: [
              {
                apiVersion: 'kubewatcher.io/v1alpha1',
                kind: 'WatchedImage',
                name: 'shop',
                uid: wi.metadata.uid!,
                controller: true,
              },
            ],
          },
          spec: { watchedImage: 'shop', image: 'ghcr.io/acme/shop:3.0', toDigest: testDigest(3) },
        },
      });
      const failed = await waitForPhase(admin, apps, forged, ['Failed']);
      expect(failed.status?.conditions?.find((x) => x.type === 'Ready')?.reason).toBe('ImageChanged');
      const after = await admin.apps.readNamespacedDeployment({ namespace: apps, name: 'shop' });
      expect(after.spec?.template.spec?.containers[0]?.image).toBe(`${image}@${toDigest}`);

      // The last WatchedImage of the namespace goes: so does the poller's access.
      await admin.custom.deleteNamespacedCustomObject({
        ...IU,
        plural: 'watchedimages',
        namespace: apps,
        name: 'shop',
      });
      await until(
        () => canGetSecrets(apps),
        (a) => a === 'no',
        { what: 'the poller access to be removed' },
      );
      const rbac = admin.kc.makeApiClient(RbacAuthorizationV1Api);
      const left = await rbac.listNamespacedRoleBinding({ namespace: apps });
      expect(left.items.map((b) => b.metadata?.name)).not.toContain('kubewatcher-poller-secrets');
    } finally {
      await deleteNamespace(admin, apps);
    }
  });
});

describe("the poller's check record", () => {
  const CHECKS = 'kubewatcher-poller-checks';
  const canI = async (...args: string[]) =>
    (await kubectl(['auth', 'can-i', ...args, `--as=${POLLER}`])).out.trim();

  it('the poller reads and replaces it at its version, touches no other ConfigMap, and an apply keeps it', async () => {
    const shipped = await poller.core.readNamespacedConfigMap({ namespace: SYSTEM_NS, name: CHECKS });
    expect(shipped.data).toBeUndefined();
    const written = await poller.core.replaceNamespacedConfigMap({
      namespace: SYSTEM_NS,
      name: CHECKS,
      body: {
        metadata: { name: CHECKS, namespace: SYSTEM_NS, resourceVersion: shipped.metadata!.resourceVersion },
        data: { probe: '2026-01-01T00:00:00Z' },
      },
    });
    expect(written.data).toEqual({ probe: '2026-01-01T00:00:00Z' });
    // A replace at an old version is refused: a run never overwrites a record it did not read.
    await expect(
      poller.core.replaceNamespacedConfigMap({
        namespace: SYSTEM_NS,
        name: CHECKS,
        body: { metadata: { name: CHECKS, resourceVersion: shipped.metadata!.resourceVersion }, data: {} },
      }),
    ).rejects.toMatchObject({ code: 409 });

    const registries = await admin.core.readNamespacedConfigMap({
      namespace: SYSTEM_NS,
      name: 'kubewatcher-poller-registries',
    });
    await expect(
      poller.core.replaceNamespacedConfigMap({
        namespace: SYSTEM_NS,
        name: 'kubewatcher-poller-registries',
        body: { ...registries, data: { 'registries.yaml': '{"evil.io": {"plainHttp": true}}\n' } },
      }),
    ).rejects.toMatchObject({ code: 403 });
    await expect(
      poller.core.readNamespacedConfigMap({ namespace: SYSTEM_NS, name: 'kubewatcher-poller-registries' }),
    ).rejects.toMatchObject({ code: 403 });
    await expect(
      poller.core.createNamespacedConfigMap({
        namespace: SYSTEM_NS,
        body: { metadata: { name: 'kubewatcher-poller-checks-2' }, data: {} },
      }),
    ).rejects.toMatchObject({ code: 403 });
    await expect(poller.core.listNamespacedConfigMap({ namespace: SYSTEM_NS })).rejects.toMatchObject({
      code: 403,
    });
    await expect(
      poller.core.patchNamespacedConfigMap(
        { namespace: SYSTEM_NS, name: CHECKS, body: { data: { other: 'x' } } },
        mergePatch,
      ),
    ).rejects.toMatchObject({ code: 403 });
    await expect(
      poller.core.deleteNamespacedConfigMap({ namespace: SYSTEM_NS, name: CHECKS }),
    ).rejects.toMatchObject({ code: 403 });
    expect(await canI('watch', 'configmaps', '-n', SYSTEM_NS)).toBe('no');
    // The same name in another namespace is not the record.
    expect(await canI('get', `configmaps/${CHECKS}`, '-n', ns)).toBe('no');
    expect(await canI('update', `configmaps/${CHECKS}`, '-n', ns)).toBe('no');
    expect(await canI('update', `configmaps/${CHECKS}`, '-n', SYSTEM_NS)).toBe('yes');

    // Applying the bundle again (an upgrade) keeps what the poller wrote: the shipped ConfigMap has no data.
    await must(
      ['apply', '--server-side', '--force-conflicts', '--field-manager=admission-test', '-f', '-'],
      bundle,
    );
    const after = await admin.core.readNamespacedConfigMap({ namespace: SYSTEM_NS, name: CHECKS });
    expect(after.data).toEqual({ probe: '2026-01-01T00:00:00Z' });
  });
});
