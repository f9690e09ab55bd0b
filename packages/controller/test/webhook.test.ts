/**
 * The webhook receiver in a running controller, against the real local control plane and under the
 * controller's own RBAC from manifests/base/rbac/controller.yaml (a ServiceAccount token, not the
 * admin): refusals, the WatchedImages a push makes due, and one poller Job from the CronJob for a burst.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthorizationV1Api,
  BatchV1Api,
  RbacAuthorizationV1Api,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1Role,
  type V1RoleBinding,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import {
  clientsFor,
  createNamespace,
  createSuspendedPollerCronJob,
  createWatchedImage,
  deleteNamespace,
  getWatchedImage,
  installCrds,
  serviceAccountKubeConfig,
  until,
} from '../../../test/support/controller-fixtures.ts';
import { signBody } from '../src/webhook/receivers.ts';
import { MAX_BODY_BYTES } from '../src/webhook/server.ts';
import { type RunningController, startController } from './controller-harness.ts';

const cluster = inject('localCluster');
const clients = clientsFor(cluster);
const rbac = clients.kc.makeApiClient(RbacAuthorizationV1Api);
const batch = clients.kc.makeApiClient(BatchV1Api);
const root = new URL('../../../', import.meta.url);

const TOKEN = 'hub-token-0123456789abcdef0123456789abcdef';
const SECRET = 'gh-secret-0123456789abcdef0123456789abcdef';
const IMAGE = 'registry.example.com/acme/web';

let systemNs: string;
let appsNs: string;
let suffix: string;
let dir: string;
let running: RunningController;
let url: string;

/** The base manifests' objects of the controller, moved to the test's namespace and names. */
interface RbacObject {
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  roleRef?: { apiGroup: string; kind: string; name: string };
}
function controllerRbac(): RbacObject[] {
  const text = readFileSync(new URL('manifests/base/rbac/controller.yaml', root), 'utf8');
  return parseAllDocuments(text).map((d) => d.toJS());
}

beforeAll(async () => {
  await installCrds(cluster);
  systemNs = await createNamespace(clients, 'kw-system');
  appsNs = await createNamespace(clients, 'kw-apps');
  suffix = systemNs.slice('kw-system-'.length);
  await clients.core.createNamespacedServiceAccount({
    namespace: systemNs,
    body: { metadata: { name: 'kubewatcher-controller' } },
  });
  const subject = [{ kind: 'ServiceAccount', name: 'kubewatcher-controller', namespace: systemNs }];
  // ClusterRoles are cluster-wide: suffixed, so test runs never share one.
  const renamed = (name: string) => `${name}-${suffix}`;
  for (const o of controllerRbac()) {
    const inSystem = { ...o.metadata, namespace: systemNs };
    if (o.kind === 'ClusterRole') {
      await rbac.createClusterRole({
        body: { ...o, metadata: { name: renamed(o.metadata.name) } } as V1ClusterRole,
      });
    } else if (o.kind === 'ClusterRoleBinding') {
      const roleRef = { ...o.roleRef!, name: renamed(o.roleRef!.name) };
      await rbac.createClusterRoleBinding({
        body: {
          ...o,
          metadata: { name: renamed(o.metadata.name) },
          roleRef,
          subjects: subject,
        } as V1ClusterRoleBinding,
      });
    } else if (o.kind === 'Role') {
      await rbac.createNamespacedRole({ namespace: systemNs, body: { ...o, metadata: inSystem } as V1Role });
    } else if (o.kind === 'RoleBinding') {
      await rbac.createNamespacedRoleBinding({
        namespace: systemNs,
        body: { ...o, metadata: inSystem, subjects: subject } as V1RoleBinding,
      });
    }
  }
  await createSuspendedPollerCronJob(clients, systemNs);

  dir = mkdtempSync(join(tmpdir(), 'kubewatcher-webhook-'));
  writeFileSync(
    join(dir, 'receivers.yaml'),
    `receivers:\n  - { name: hub, format: dockerhub, token: ${TOKEN} }\n  - { name: gh, format: github, hmacSecret: ${SECRET} }\n  - { name: ci, format: generic, token: ${TOKEN} }\n`,
  );

  await createWatchedImage(clients, appsNs, 'web', { image: `${IMAGE}:stable` });
  await createWatchedImage(clients, appsNs, 'web-canary', { image: `${IMAGE}:canary` });
  await createWatchedImage(clients, appsNs, 'hub', { image: 'acme/web:stable' });

  const kubeConfig = await serviceAccountKubeConfig(cluster, clients, systemNs, 'kubewatcher-controller');
  running = await startController(kubeConfig, {
    namespaces: [appsNs],
    webhook: {
      address: '127.0.0.1:0',
      receiversFile: join(dir, 'receivers.yaml'),
      namespace: systemNs,
      cronJobName: 'kubewatcher-poller',
      debounceMs: 500,
    },
  });
  await until(() => running.controller.webhook?.url, Boolean, { what: 'the webhook receiver to listen' });
  url = running.controller.webhook!.url!;
  await until(
    () => running.controller.caches.watchedImages.keys().length,
    (n) => n === 3,
    {
      what: 'the WatchedImages in the cache',
    },
  );
});

afterAll(async () => {
  await running?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  await rbac.deleteClusterRole({ name: `kubewatcher-controller-${suffix}` }).catch(() => undefined);
  await rbac.deleteClusterRoleBinding({ name: `kubewatcher-controller-${suffix}` }).catch(() => undefined);
  await deleteNamespace(clients, appsNs);
  await deleteNamespace(clients, systemNs);
});

async function post(path: string, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    body,
    headers: { 'content-type': 'application/json', ...headers },
  });
  return { status: res.status, text: await res.text() };
}

const requested = async (name: string) =>
  (await getWatchedImage(clients, appsNs, name)).status?.checkRequestedTime;

describe('webhook receiver', () => {
  const generic = JSON.stringify({ image: IMAGE, tag: 'stable' });

  it('refuses anything unauthenticated with a bare 401, before making anything due', async () => {
    const cases = [
      await post(`/hook/ci/${TOKEN}x`, generic),
      await post('/hook/ci', generic),
      await post(`/hook/nobody/${TOKEN}`, generic),
      await post('/hook/gh', generic, { 'x-github-event': 'package' }),
      await post('/hook/gh', generic, {
        'x-github-event': 'package',
        'x-hub-signature-256': signBody(`${SECRET}x`, generic),
      }),
    ];
    expect(cases).toEqual(cases.map(() => ({ status: 401, text: 'unauthorized\n' })));
    expect(await requested('web')).toBeUndefined();
    expect(await running.metric('kubewatcher_webhook_requests_total', { code: '401' })).toBe(5);
  });

  it('refuses a body over the cap (413) and a malformed one with its reason (400)', async () => {
    const big = await post(
      `/hook/ci/${TOKEN}`,
      JSON.stringify({ image: IMAGE, tag: 'x'.repeat(MAX_BODY_BYTES) }),
    );
    expect(big.status).toBe(413);
    const bad = await post(`/hook/ci/${TOKEN}`, JSON.stringify({ image: IMAGE, tag: 'stable', extra: 1 }));
    expect(bad).toEqual({
      status: 400,
      text: 'body.extra is not a field of the generic form (image, tag, digest)\n',
    });
    expect(await requested('web')).toBeUndefined();
  });

  it('a push for an image nobody watches makes nothing due and starts no run', async () => {
    const res = await post(
      `/hook/ci/${TOKEN}`,
      JSON.stringify({ image: 'evil.example/acme/web', tag: 'stable' }),
    );
    expect(res.status).toBe(202);
    expect(await requested('web')).toBeUndefined();
    expect(await running.metric('kubewatcher_webhook_poller_runs_total')).toBe(0);
  });

  it('a burst of pushes makes the matching WatchedImages due and starts one poller Job from the CronJob', async () => {
    const before = Date.now();
    const burst = await Promise.all([
      ...Array.from({ length: 4 }, () => post(`/hook/ci/${TOKEN}`, generic)),
      post(
        `/hook/hub/${TOKEN}`,
        JSON.stringify({ push_data: { tag: 'stable' }, repository: { repo_name: 'acme/web' } }),
      ),
    ]);
    expect(burst.map((r) => r.status)).toEqual([202, 202, 202, 202, 202]);

    expect(Date.parse((await requested('web'))!)).toBeGreaterThanOrEqual(before - 1000);
    expect(Date.parse((await requested('hub'))!)).toBeGreaterThanOrEqual(before - 1000);
    expect(await requested('web-canary')).toBeUndefined();

    await until(
      () => running.metric('kubewatcher_webhook_poller_runs_total', { result: 'created' }),
      (n) => n >= 1,
      {
        what: 'a poller run to be created',
      },
    );
    const jobs = (await batch.listNamespacedJob({ namespace: systemNs })).items;
    expect(jobs.map((j) => j.metadata?.name)).toEqual(['kubewatcher-poller-webhook']);
    const cronJob = await batch.readNamespacedCronJob({ namespace: systemNs, name: 'kubewatcher-poller' });
    const job = jobs[0]!;
    expect(job.spec?.template.spec?.containers).toEqual(
      cronJob.spec?.jobTemplate.spec?.template.spec?.containers,
    );
    expect(job.spec?.template.spec?.serviceAccountName).toBe('kubewatcher-poller');
    expect(job.spec?.ttlSecondsAfterFinished).toBe(10);
    expect(job.metadata?.annotations?.['kubewatcher.io/started-by']).toBe('webhook');

    // A push while that Job exists waits for it instead of starting a second one.
    expect((await post(`/hook/ci/${TOKEN}`, generic)).status).toBe(202);
    await until(
      () => running.metric('kubewatcher_webhook_poller_runs_total', { result: 'busy' }),
      (n) => n >= 1,
      {
        what: 'the next attempt to find the run still there',
      },
    );
    expect(await running.metric('kubewatcher_webhook_poller_runs_total', { result: 'created' })).toBe(1);
    expect((await batch.listNamespacedJob({ namespace: systemNs })).items).toHaveLength(1);
  });

  it('a signed GitHub package event is accepted', async () => {
    const event = JSON.stringify({
      action: 'published',
      package: {
        name: 'web',
        namespace: 'acme',
        package_type: 'CONTAINER',
        package_version: {
          container_metadata: { tag: { name: 'canary', digest: `sha256:${'c'.repeat(64)}` } },
        },
      },
    });
    const res = await post('/hook/gh', event, {
      'x-github-event': 'package',
      'x-hub-signature-256': signBody(SECRET, event),
    });
    expect(res.status).toBe(202);
    // ghcr.io/acme/web:canary is not watched here: accepted, nothing made due.
    expect(await requested('web-canary')).toBeUndefined();
  });

  it("the controller's account may create Jobs only in its own namespace, and never create or delete a CronJob", async () => {
    const kc = await serviceAccountKubeConfig(cluster, clients, systemNs, 'kubewatcher-controller');
    const authz = kc.makeApiClient(AuthorizationV1Api);
    const can = async (verb: string, resource: string, namespace: string, name?: string) =>
      (
        await authz.createSelfSubjectAccessReview({
          body: {
            spec: {
              resourceAttributes: { group: 'batch', verb, resource, namespace, ...(name ? { name } : {}) },
            },
          },
        })
      ).status?.allowed === true;
    expect(await can('create', 'jobs', systemNs)).toBe(true);
    expect(await can('get', 'cronjobs', systemNs, 'kubewatcher-poller')).toBe(true);
    expect(await can('create', 'jobs', appsNs)).toBe(false);
    expect(await can('list', 'jobs', systemNs)).toBe(false);
    expect(await can('delete', 'jobs', systemNs)).toBe(false);
    // CronJobs are a workload kind: the controller reads and patches any of them (see the kinds
    // table), but it never creates or deletes one.
    expect(await can('create', 'cronjobs', systemNs)).toBe(false);
    expect(await can('delete', 'cronjobs', systemNs, 'kubewatcher-poller')).toBe(false);
  });
});
