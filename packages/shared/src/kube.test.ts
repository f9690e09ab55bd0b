import { ApiException, type KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoopbackApi, type SeenRequest, startLoopbackApi } from '../../../test/support/loopback-api.ts';
import { requestJson } from './kube.ts';

/** The ApiException a failed request throws. */
async function failure(promise: Promise<unknown>): Promise<ApiException<unknown>> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiException);
  return err as ApiException<unknown>;
}

describe('requestJson', () => {
  let reply: { status: number; body: string } = { status: 200, body: '{}' };
  let api: LoopbackApi;
  let kc: KubeConfig;
  let seen: SeenRequest[];

  beforeAll(async () => {
    api = await startLoopbackApi((req) =>
      req.url?.startsWith('/hang') ? undefined : { ...reply, headers: { 'audit-id': 'a1' } },
    );
    ({ kc, seen } = api);
  });
  afterAll(() => api.close());

  it("sends the method, path, query, body and content type with kc's credentials; returns the JSON", async () => {
    seen.length = 0;
    reply = { status: 200, body: '{"kind":"WatchedImage","metadata":{"name":"b"}}' };
    const result = await requestJson(kc, {
      method: 'PATCH',
      path: '/apis/kubewatcher.io/v1alpha1/namespaces/a/watchedimages/b/status',
      query: { fieldManager: 'kubewatcher-poller', force: 'true' },
      contentType: 'application/apply-patch+yaml',
      body: { status: { digest: 'sha256:1' } },
    });
    expect(result).toEqual({ kind: 'WatchedImage', metadata: { name: 'b' } });
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({
      method: 'PATCH',
      url: '/apis/kubewatcher.io/v1alpha1/namespaces/a/watchedimages/b/status?fieldManager=kubewatcher-poller&force=true',
      body: '{"status":{"digest":"sha256:1"}}',
    });
    expect(seen[0]!.headers).toMatchObject({
      authorization: 'Bearer secret-token',
      'content-type': 'application/apply-patch+yaml',
      accept: 'application/json',
    });
  });

  it("throws an ApiException with the code, the Status and the response's headers, never the credentials", async () => {
    reply = {
      status: 409,
      body: '{"kind":"Status","status":"Failure","reason":"Conflict","message":"the object has been modified","code":409}',
    };
    const err = await failure(requestJson(kc, { method: 'GET', path: '/api/v1/namespaces/a' }));
    expect(err.code).toBe(409);
    expect(err.body).toMatchObject({ reason: 'Conflict', message: 'the object has been modified' });
    expect(err.headers).toMatchObject({ 'audit-id': 'a1' });
    expect(err.message).toContain('GET /api/v1/namespaces/a: the object has been modified');
    expect(JSON.stringify(err)).not.toContain('secret-token');
    expect(err.message).not.toContain('secret-token');
  });

  it('gives up after timeoutMs on a server that never answers', async () => {
    const err = await requestJson(kc, { method: 'GET', path: '/hang', timeoutMs: 200 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.name).toBe('TimeoutError');
  });

  it('keeps a body that is not JSON as text', async () => {
    reply = { status: 502, body: 'bad gateway' };
    const err = await failure(requestJson(kc, { method: 'GET', path: '/version' }));
    expect(err.code).toBe(502);
    expect(err.body).toBe('bad gateway');
    expect(err.message).toContain('GET /version: bad gateway');
  });
});
