import { type KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoopbackApi, type SeenRequest, startLoopbackApi } from '../../../test/support/loopback-api.ts';
import { apiStatusCode } from './kube-errors.ts';
import {
  createObject,
  deleteObject,
  getObject,
  listObjects,
  patchObject,
  RESOURCE,
  replaceObject,
  resourcePath,
  workloadResource,
} from './kube-resources.ts';

describe('resourcePath', () => {
  it.each([
    [RESOURCE.secret, undefined, undefined, undefined, '/api/v1/secrets'],
    [RESOURCE.secret, 'team-a', undefined, undefined, '/api/v1/namespaces/team-a/secrets'],
    [
      workloadResource('Deployment'),
      'team-a',
      'web',
      undefined,
      '/apis/apps/v1/namespaces/team-a/deployments/web',
    ],
    [
      RESOURCE.watchedImage,
      'team-a',
      'web',
      'status',
      '/apis/kubewatcher.io/v1alpha1/namespaces/team-a/watchedimages/web/status',
    ],
    [
      workloadResource('CronJob'),
      'team-a',
      'nightly',
      undefined,
      '/apis/batch/v1/namespaces/team-a/cronjobs/nightly',
    ],
    [RESOURCE.lease, 'a b', 'x/y', undefined, '/apis/coordination.k8s.io/v1/namespaces/a%20b/leases/x%2Fy'],
  ])('%o in %s, %s, %s → %s', (resource, namespace, name, subresource, path) => {
    expect(resourcePath(resource, namespace, name, subresource)).toBe(path);
  });

  it('refuses a subresource without an object name', () => {
    expect(() => resourcePath(RESOURCE.watchedImage, 'a', undefined, 'status')).toThrow(
      /subresource status needs an object name/,
    );
  });
});

/** The typed calls' requests, against a loopback HTTP server that answers from `routes`. */
describe('the typed calls', () => {
  let routes: Record<string, { status: number; body: unknown }> = {};
  let api: LoopbackApi;
  let kc: KubeConfig;
  let seen: SeenRequest[];

  beforeAll(async () => {
    api = await startLoopbackApi((req) => {
      const route = routes[`${req.method} ${req.url}`] ?? {
        status: 404,
        body: { kind: 'Status', code: 404 },
      };
      return { status: route.status, body: JSON.stringify(route.body) };
    });
    ({ kc, seen } = api);
  });
  afterAll(() => api.close());

  it('lists every page, without managedFields, with apiVersion and kind on each item', async () => {
    seen.length = 0;
    const item = (name: string) => ({ metadata: { name, managedFields: [{ manager: 'm' }] } });
    routes = {
      'GET /apis/apps/v1/namespaces/a/deployments?limit=2&labelSelector=app%3Dweb': {
        status: 200,
        body: { items: [item('d1'), item('d2')], metadata: { continue: 'c1' } },
      },
      'GET /apis/apps/v1/namespaces/a/deployments?limit=2&labelSelector=app%3Dweb&continue=c1': {
        status: 200,
        body: { items: [item('d3')], metadata: {} },
      },
    };
    const items = await listObjects<{ metadata: object }>(kc, workloadResource('Deployment'), {
      namespace: 'a',
      labelSelector: 'app=web',
      pageSize: 2,
    });
    expect(items).toEqual(
      ['d1', 'd2', 'd3'].map((name) => ({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name } })),
    );
    expect(seen).toHaveLength(2);
  });

  it('gets an object; a missing one is undefined, other failures throw with their status', async () => {
    routes = {
      'GET /api/v1/namespaces/a/secrets/pull': {
        status: 200,
        body: { type: 'kubernetes.io/dockerconfigjson' },
      },
      'GET /api/v1/namespaces/a/secrets/forbidden': { status: 403, body: { kind: 'Status', code: 403 } },
    };
    expect(await getObject(kc, RESOURCE.secret, 'a', 'pull')).toEqual({
      type: 'kubernetes.io/dockerconfigjson',
    });
    expect(await getObject(kc, RESOURCE.secret, 'a', 'gone')).toBeUndefined();
    const err = await getObject(kc, RESOURCE.secret, 'a', 'forbidden').catch((e: unknown) => e);
    expect(apiStatusCode(err)).toBe(403);
  });

  it('creates and replaces with apiVersion, kind and the field manager; a conflict keeps its 409', async () => {
    seen.length = 0;
    routes = {
      'POST /api/v1/namespaces/a/events?fieldManager=kw': { status: 201, body: { metadata: { name: 'e1' } } },
      'PUT /apis/coordination.k8s.io/v1/namespaces/a/leases/l': { status: 409, body: { code: 409 } },
    };
    const created = await createObject(
      kc,
      RESOURCE.event,
      'a',
      { reason: 'Applied' },
      { fieldManager: 'kw' },
    );
    expect(created).toEqual({ metadata: { name: 'e1' } });
    expect(JSON.parse(seen[0]!.body)).toEqual({ apiVersion: 'v1', kind: 'Event', reason: 'Applied' });
    expect(seen[0]!.headers['content-type']).toBe('application/json');
    const err = await replaceObject(kc, RESOURCE.lease, 'a', 'l', { metadata: { name: 'l' } }).catch(
      (e: unknown) => e,
    );
    expect(apiStatusCode(err)).toBe(409);
    expect(JSON.parse(seen[1]!.body)).toMatchObject({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease' });
  });

  it("patches with the strategy's content type, the field manager and force", async () => {
    seen.length = 0;
    routes = {
      'PATCH /apis/apps/v1/namespaces/a/statefulsets/db?fieldManager=kw': { status: 200, body: {} },
      'PATCH /apis/kubewatcher.io/v1alpha1/namespaces/a/imageupdates/u/status?fieldManager=kw&force=true': {
        status: 200,
        body: {},
      },
    };
    const patch = { spec: { template: { spec: { containers: [{ name: 'db', image: 'db:2' }] } } } };
    await patchObject(kc, workloadResource('StatefulSet'), 'a', 'db', patch, {
      strategy: PatchStrategy.StrategicMergePatch,
      fieldManager: 'kw',
    });
    await patchObject(
      kc,
      RESOURCE.imageUpdate,
      'a',
      'u',
      { status: {} },
      {
        strategy: PatchStrategy.ServerSideApply,
        fieldManager: 'kw',
        force: true,
        subresource: 'status',
      },
    );
    expect(seen.map((s) => [s.method, s.headers['content-type']])).toEqual([
      ['PATCH', 'application/strategic-merge-patch+json'],
      ['PATCH', 'application/apply-patch+yaml'],
    ]);
    expect(JSON.parse(seen[0]!.body)).toEqual(patch);
  });

  it('deletes; an object already gone is false', async () => {
    routes = {
      'DELETE /apis/kubewatcher.io/v1alpha1/namespaces/a/imageupdates/old': { status: 200, body: {} },
    };
    expect(await deleteObject(kc, RESOURCE.imageUpdate, 'a', 'old')).toBe(true);
    expect(await deleteObject(kc, RESOURCE.imageUpdate, 'a', 'gone')).toBe(false);
  });
});
