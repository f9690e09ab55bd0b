/**
 * RegistryClient decisions that a real registry cannot be made to show on demand (identity-token
 * grants, a revoked cached token, Docker Hub's host, a challenge remembered from an earlier run),
 * driven by a scripted fetch. The protocol against real registries is covered by
 * packages/poller/test/registry-client.test.ts.
 */
import { Readable } from 'node:stream';
import { normalizeReference, type RegistryChallenge } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { MANIFEST_ACCEPT, RegistryClient, type RegistryClientOptions } from './client.ts';
import { isLinkLocal, type RegistryFetchInit, type RegistryFetchResponse } from './transport.ts';
import type { RegistryHostOptions } from './types.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

interface Call {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

type Reply = { status: number; headers?: Record<string, string | undefined>; body?: string };

function response(reply: Reply): RegistryFetchResponse {
  const headers = Object.fromEntries(
    Object.entries(reply.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
  );
  return {
    status: reply.status,
    headers: { get: (name: string) => headers[name.toLowerCase()] ?? null },
    body: reply.body === undefined ? null : Readable.from([Buffer.from(reply.body)]),
  };
}

/** A fetch that answers each request with the first handler that claims it. */
function scripted(handler: (call: Call, n: number) => Reply) {
  const calls: Call[] = [];
  const fetch = async (url: string, init: RegistryFetchInit) => {
    const call: Call = {
      method: init.method,
      url,
      headers: init.headers,
      ...(init.body ? { body: init.body } : {}),
    };
    calls.push(call);
    return response(handler(call, calls.length));
  };
  return { calls, fetch };
}

function client(fetch: RegistryClientOptions['fetch'], opts: RegistryClientOptions = {}) {
  return new RegistryClient({ fetch, sleep: async () => {}, random: () => 0, ...opts });
}

const bearer = (realm: string) =>
  `Bearer realm="${realm}",service="reg.example",scope="repository:acme/web:pull"`;

describe('RegistryClient (scripted fetch)', () => {
  it('sends one Accept header with the four manifest types, over HTTPS by default', async () => {
    const { calls, fetch } = scripted(() => ({ status: 200, headers: { 'Docker-Content-Digest': DIGEST } }));
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'));
    expect(result).toMatchObject({ ok: true, digest: DIGEST, method: 'HEAD' });
    expect(calls).toEqual([
      {
        method: 'HEAD',
        url: 'https://reg.example/v2/acme/web/manifests/1',
        headers: expect.objectContaining({ Accept: MANIFEST_ACCEPT }),
      },
    ]);
    expect(MANIFEST_ACCEPT.split(', ')).toHaveLength(4);
  });

  it("talks to Docker Hub's API host and reports its rate limit", async () => {
    const { calls, fetch } = scripted(() => ({
      status: 200,
      headers: {
        'Docker-Content-Digest': DIGEST,
        'RateLimit-Limit': '100;w=21600',
        'RateLimit-Remaining': '99;w=21600',
      },
    }));
    const result = await client(fetch).resolveDigest(normalizeReference('nginx'));
    expect(calls[0]!.url).toBe('https://registry-1.docker.io/v2/library/nginx/manifests/latest');
    expect(result).toMatchObject({
      ok: true,
      rateLimit: { limit: 100, remaining: 99, windowSeconds: 21600 },
    });
  });

  it('exchanges an identity token with a refresh_token POST, falling back to GET on 404', async () => {
    const { calls, fetch } = scripted((call) => {
      if (call.url.startsWith('https://auth.example/token')) {
        if (call.method === 'POST') return { status: 404 };
        return { status: 200, body: JSON.stringify({ access_token: 'tok-1', expires_in: 300 }) };
      }
      if (call.headers.Authorization === 'Bearer tok-1')
        return { status: 200, headers: { 'Docker-Content-Digest': DIGEST } };
      return { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } };
    });
    const c = client(fetch);
    const result = await c.resolveDigest(normalizeReference('reg.example/acme/web:1'), {
      username: '<token>',
      identityToken: 'refresh-me',
    });
    expect(result).toMatchObject({ ok: true, digest: DIGEST });
    const post = calls.find((call) => call.method === 'POST')!;
    expect(new URLSearchParams(post.body)).toEqual(
      new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: 'refresh-me',
        client_id: 'kubewatcher',
        scope: 'repository:acme/web:pull',
        service: 'reg.example',
      }),
    );
    expect(post.headers['Content-Type']).toBe('application/x-www-form-urlencoded');
    const get = calls.find((call) => call.method === 'GET')!;
    expect(get.url).toBe(
      'https://auth.example/token?service=reg.example&scope=repository%3Aacme%2Fweb%3Apull',
    );
    expect(get.headers.Authorization).toBe(`Basic ${Buffer.from('<token>:refresh-me').toString('base64')}`);
    expect(c.stats()).toMatchObject({ head: 2, token: 2 });
  });

  it('uses a registry token directly as the bearer, without a token request', async () => {
    const { calls, fetch } = scripted((call) =>
      call.headers.Authorization === 'Bearer given'
        ? { status: 200, headers: { 'Docker-Content-Digest': DIGEST } }
        : { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } },
    );
    const c = client(fetch);
    expect(
      await c.resolveDigest(normalizeReference('reg.example/acme/web:1'), { registryToken: 'given' }),
    ).toMatchObject({
      ok: true,
    });
    expect(calls.map((call) => call.method)).toEqual(['HEAD', 'HEAD']);
    expect(c.stats().token).toBe(0);
  });

  it('drops a cached token the registry refuses, fetches one more and retries once', async () => {
    let issued = 0;
    let revoked = false;
    const { calls, fetch } = scripted((call) => {
      if (call.url.startsWith('https://auth.example/')) {
        issued++;
        return { status: 200, body: JSON.stringify({ token: `tok-${issued}`, expires_in: 300 }) };
      }
      const ok = call.headers.Authorization === `Bearer tok-${issued}` && !(revoked && issued === 1);
      return ok
        ? { status: 200, headers: { 'Docker-Content-Digest': DIGEST } }
        : { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } };
    });
    const c = client(fetch);
    const ref = normalizeReference('reg.example/acme/web:1');
    expect(await c.resolveDigest(ref)).toMatchObject({ ok: true });
    revoked = true;
    expect(await c.resolveDigest(ref)).toMatchObject({ ok: true });
    expect(c.stats()).toMatchObject({ token: 2 });
    // Second resolve: the cached token up front (refused), a new token, the retry.
    expect(calls.slice(3).map((call) => `${call.method} ${call.headers.Authorization ?? '-'}`)).toEqual([
      'HEAD Bearer tok-1',
      'GET -',
      'HEAD Bearer tok-2',
    ]);
  });

  it('gives up when a freshly issued token is refused (no access to the repository)', async () => {
    const { fetch } = scripted((call) =>
      call.url.startsWith('https://auth.example/')
        ? { status: 200, body: JSON.stringify({ token: 'no-access' }) }
        : { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } },
    );
    const c = client(fetch);
    const result = await c.resolveDigest(normalizeReference('reg.example/acme/web:1'), {
      username: 'u',
      password: 'p',
    });
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(!result.ok && result.message).toContain('credentials for reg.example were rejected for acme/web');
    expect(c.stats()).toMatchObject({ head: 2, token: 1 });
  });

  it('never sends credentials to a plain-HTTP token realm of an HTTPS registry', async () => {
    const { calls, fetch } = scripted(() => ({
      status: 401,
      headers: { 'WWW-Authenticate': bearer('http://auth.example/token') },
    }));
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'), {
      username: 'u',
      password: 'p',
    });
    expect(result).toMatchObject({ ok: false, reason: 'RegistryError' });
    expect(calls).toHaveLength(1);
  });

  it('never follows a token request from https to http, even on the same host', async () => {
    const { calls, fetch } = scripted((call) => {
      if (call.url.startsWith('https://auth.example/token'))
        return { status: 302, headers: { Location: 'http://auth.example/token' } };
      return { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } };
    });
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'), {
      username: 'u',
      password: 'p',
    });
    expect(result).toMatchObject({ ok: false, reason: 'RegistryError' });
    expect(!result.ok && result.message).toContain('to another origin (http://auth.example)');
    expect(calls.filter((c) => c.url.startsWith('http:'))).toEqual([]);
  });

  it('keeps Authorization on a same-origin redirect and drops it across origins', async () => {
    const { calls, fetch } = scripted((call) => {
      if (call.url === 'https://reg.example/v2/acme/web/manifests/1') {
        return call.headers.Authorization
          ? { status: 307, headers: { Location: '/moved/acme/web/manifests/1' } }
          : { status: 401, headers: { 'WWW-Authenticate': 'Basic realm="r"' } };
      }
      if (call.url.startsWith('https://reg.example/moved/')) {
        return { status: 302, headers: { Location: 'https://storage.example/blob?sig=1' } };
      }
      return { status: 200, headers: { 'Docker-Content-Digest': DIGEST } };
    });
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'), {
      username: 'u',
      password: 'p',
    });
    expect(result).toMatchObject({ ok: true });
    expect(calls.map((c) => [new URL(c.url).host, Boolean(c.headers.Authorization)])).toEqual([
      ['reg.example', false],
      ['reg.example', true],
      ['reg.example', true],
      ['storage.example', false],
    ]);
  });

  it.each([
    ['to http on the same host and port', 'http://reg.example:443/v2/acme/web/manifests/1'],
    ['to http on the same host', 'http://reg.example/v2/acme/web/manifests/1'],
    ['to the same host on another port', 'https://reg.example:8443/v2/acme/web/manifests/1'],
    ['to a subdomain of the host', 'https://cdn.reg.example/v2/acme/web/manifests/1'],
  ])(
    'drops Authorization on a redirect of an authorised request %s (another origin)',
    async (_what, location) => {
      const { calls, fetch } = scripted((call) => {
        if (call.url === 'https://reg.example/v2/acme/web/manifests/1') {
          return call.headers.Authorization
            ? { status: 307, headers: { Location: location } }
            : { status: 401, headers: { 'WWW-Authenticate': 'Basic realm="r"' } };
        }
        return { status: 200, headers: { 'Docker-Content-Digest': DIGEST } };
      });
      const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'), {
        username: 'u',
        password: 'p',
      });
      expect(result).toMatchObject({ ok: true });
      expect(calls.map((c) => [c.url, Boolean(c.headers.Authorization)])).toEqual([
        ['https://reg.example/v2/acme/web/manifests/1', false],
        ['https://reg.example/v2/acme/web/manifests/1', true],
        [location, false],
      ]);
    },
  );

  it.each([
    ['a redirect', { status: 307, headers: { Location: 'http://169.254.169.254/latest/meta-data/' } }],
    ['a token realm', { status: 401, headers: { 'WWW-Authenticate': bearer('https://[fe80::1]/token') } }],
  ])('never sends a request to a link-local address named by %s', async (_name, reply) => {
    const { calls, fetch } = scripted(() => reply);
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'));
    expect(result).toMatchObject({ ok: false });
    expect(!result.ok && result.message).toMatch(/link-local address .* never sent/);
    expect(calls.map((c) => new URL(c.url).host)).toEqual(['reg.example']);
  });

  it.each([
    ['169.254.169.254', true],
    ['169.254.0.1:80', true],
    ['[fe80::1]', true],
    ['[febf::1]', true],
    ['[::ffff:169.254.169.254]', true],
    // Other spellings of 169.254.169.254 that URL parsing normalises: decimal, hex, octal, short forms.
    ['2852039166', true],
    ['0xa9fea9fe', true],
    ['0251.0376.0251.0376', true],
    ['169.254.43518', true],
    ['[::ffff:a9fe:a9fe]', true],
    ['[0:0:0:0:0:ffff:169.254.169.254]', true],
    ['[FE80::1]', true],
    ['169.255.0.1', false],
    ['[fec0::1]', false],
    ['127.0.0.1:5000', false],
    ['registry.example', false],
  ])('isLinkLocal(%s) is %s', (host, expected) => {
    expect(isLinkLocal(new URL(`http://${host}/`))).toBe(expected);
  });

  it('stops after 5 redirects', async () => {
    const { calls, fetch } = scripted((_call, n) => ({ status: 302, headers: { Location: `/loop/${n}` } }));
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'));
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(calls).toHaveLength(6);
  });

  it('retries a reset connection, then reports the registry unreachable', async () => {
    const calls: string[] = [];
    const sleeps: number[] = [];
    const fetch = async (url: string) => {
      calls.push(url);
      throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    };
    const c = client(fetch, { sleep: async (ms) => void sleeps.push(ms), random: () => 0 });
    const result = await c.resolveDigest(normalizeReference('reg.example/acme/web:1'));
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toContain('connection to reg.example was reset');
    expect(calls).toHaveLength(3);
    expect(sleeps).toEqual([200, 400]);
  });

  it('turns DNS failures into RegistryUnreachable naming the host', async () => {
    const fetch = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
    };
    const result = await client(fetch).resolveDigest(normalizeReference('nowhere.example/acme/web:1'));
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toContain('cannot resolve host nowhere.example');
  });

  it('hashes the body bytes as served when falling back to GET', async () => {
    const body =
      '{"schemaVersion":2,  "mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}\n';
    const { fetch } = scripted((call) =>
      call.method === 'HEAD'
        ? { status: 200 }
        : { status: 200, headers: { 'Content-Type': 'application/vnd.oci.image.index.v1+json' }, body },
    );
    const { createHash } = await import('node:crypto');
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'));
    expect(result).toEqual({
      ok: true,
      method: 'GET',
      digest: `sha256:${createHash('sha256').update(body).digest('hex')}`,
      mediaType: 'application/vnd.oci.image.index.v1+json',
    });
  });

  it('reads NAME_UNKNOWN from a GET body as NotFound', async () => {
    const { fetch } = scripted((call) =>
      call.method === 'HEAD'
        ? { status: 400 }
        : {
            status: 400,
            body: JSON.stringify({
              errors: [{ code: 'NAME_UNKNOWN', message: 'repository name not known' }],
            }),
          },
    );
    const result = await client(fetch).resolveDigest(normalizeReference('reg.example/acme/web:1'));
    expect(result).toMatchObject({
      ok: false,
      reason: 'NotFound',
      message: 'repository acme/web does not exist on reg.example',
    });
  });

  it('asks one token for the planned repositories, and keeps an oversized batched token to its own resolve', async () => {
    for (const size of [100, 7 * 1024]) {
      const { calls, fetch } = scripted((call) => {
        if (call.url.startsWith('https://auth.example/')) {
          const n = new URL(call.url).searchParams.getAll('scope').length;
          return { status: 200, body: JSON.stringify({ token: `${n}-${'t'.repeat(n > 1 ? size : 10)}` }) };
        }
        return call.headers.Authorization
          ? { status: 200, headers: { 'Docker-Content-Digest': DIGEST } }
          : { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } };
      });
      const c = client(fetch);
      const refs = ['a', 'b', 'c'].map((r) => normalizeReference(`reg.example/acme/${r}:1`));
      c.planLookups(refs.map((reference) => ({ reference })));
      for (const ref of refs) expect(await c.resolveDigest(ref)).toMatchObject({ ok: true });
      const scopes = calls
        .filter((call) => call.url.startsWith('https://auth.example/'))
        .map((call) => new URL(call.url).searchParams.getAll('scope').length);
      // A small token serves all three; an oversized one serves its own resolve, the others ask alone.
      expect(scopes).toEqual(size === 100 ? [3] : [3, 1, 1]);
    }
  });

  it('never logs credentials or tokens', async () => {
    const lines: string[] = [];
    const log = (message: string, meta?: unknown) =>
      void lines.push(`${message} ${JSON.stringify(meta ?? {})}`);
    const logger = { debug: log, info: log, warn: log } as unknown as RegistryClientOptions['logger'];
    const { fetch } = scripted((call) => {
      if (call.url.startsWith('https://auth.example/'))
        return { status: 200, body: JSON.stringify({ token: 'TOKEN-SECRET' }) };
      return call.headers.Authorization
        ? { status: 503 }
        : { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } };
    });
    await client(fetch, { logger }).resolveDigest(normalizeReference('reg.example/acme/web:1'), {
      username: 'USER-SECRET',
      password: 'PASS-SECRET',
    });
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) expect(line).not.toMatch(/SECRET|Basic |Bearer /);
  });

  it('lets the first request to a host learn its challenge while concurrent resolves wait', async () => {
    const { calls, fetch } = scripted((call) => {
      if (call.url.startsWith('https://auth.example/')) return { status: 200, body: '{"token":"t"}' };
      return call.headers.Authorization
        ? { status: 200, headers: { 'Docker-Content-Digest': DIGEST } }
        : { status: 401, headers: { 'WWW-Authenticate': bearer('https://auth.example/token') } };
    });
    const registry = client(fetch);
    const repos = ['a', 'b', 'c', 'd'];
    const results = await Promise.all(
      repos.map((r) => registry.resolveDigest(normalizeReference(`reg.example/acme/${r}:1`))),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    // One 401 in all, then one token and one HEAD per repository.
    expect(calls.filter((c) => c.method === 'HEAD' && !c.headers.Authorization)).toHaveLength(1);
    expect(registry.stats()).toMatchObject({ head: 5, token: 4, total: 9 });
  });
});

const CREDENTIAL = { username: 'ci', password: 'CI-SECRET' };

/** A registry at reg.example whose token service is `realm` and issues `token` for every scope. */
function tokenRegistry(realm: string, token = 'tok') {
  return scripted((call) => {
    if (call.url.startsWith(realm)) return { status: 200, body: JSON.stringify({ token }) };
    if (call.url.startsWith('https://reg.example/v2/') && call.headers.Authorization === `Bearer ${token}`)
      return { status: 200, headers: { 'Docker-Content-Digest': DIGEST } };
    if (call.url.startsWith('https://reg.example/v2/'))
      return {
        status: 401,
        headers: { 'WWW-Authenticate': `Bearer realm="${realm}",service="reg.example"` },
      };
    return { status: 404 };
  });
}

const memory = (realm: string): RegistryChallenge => ({
  registry: 'reg.example',
  scheme: 'Bearer',
  realm,
  service: 'reg.example',
});
const ref = (repo = 'web') => normalizeReference(`reg.example/acme/${repo}:1`);
const anonymousHeads = (calls: Call[]) =>
  calls.filter((c) => c.method === 'HEAD' && !c.headers.Authorization);

describe('RegistryClient with a remembered challenge', () => {
  it('fetches the token first: one token request for every planned repository, no 401', async () => {
    const { calls, fetch } = tokenRegistry('https://reg.example/token');
    const registry = client(fetch);
    const repos = ['a', 'b', 'c', 'd'];
    registry.planLookups(repos.map((r) => ({ reference: ref(r), credential: CREDENTIAL })));
    registry.rememberChallenges([memory('https://reg.example/token')]);
    const results = await Promise.all(repos.map((r) => registry.resolveDigest(ref(r), CREDENTIAL)));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(calls[0]!.url).toMatch(/^https:\/\/reg\.example\/token\?/);
    expect(anonymousHeads(calls)).toEqual([]);
    expect(registry.stats()).toMatchObject({ head: 4, get: 0, token: 1, total: 5 });
    expect(results[0]).toMatchObject({ challenge: memory('https://reg.example/token') });
  });

  it('moves on to the live challenge once when the remembered realm issues no token, and reports the live one', async () => {
    const { calls, fetch } = tokenRegistry('https://reg.example/v2/token');
    const registry = client(fetch);
    registry.rememberChallenges([memory('https://reg.example/old-token')]);
    const results = await Promise.all(['a', 'b', 'c'].map((r) => registry.resolveDigest(ref(r), CREDENTIAL)));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(calls.filter((c) => c.url.includes('/old-token'))).toHaveLength(1);
    expect(anonymousHeads(calls)).toHaveLength(1);
    expect(results[2]).toMatchObject({ challenge: memory('https://reg.example/v2/token') });
  });

  it('answers a 401 naming another challenge than the remembered one (a token the registry no longer trusts)', async () => {
    // The old realm still issues tokens, but the registry refuses them and names its new realm.
    const { calls, fetch } = scripted((call) => {
      if (call.url.startsWith('https://reg.example/old-token'))
        return { status: 200, body: '{"token":"old"}' };
      if (call.url.startsWith('https://reg.example/token')) return { status: 200, body: '{"token":"new"}' };
      return call.headers.Authorization === 'Bearer new'
        ? { status: 200, headers: { 'Docker-Content-Digest': DIGEST } }
        : {
            status: 401,
            headers: { 'WWW-Authenticate': 'Bearer realm="https://reg.example/token",service="reg.example"' },
          };
    });
    const registry = client(fetch);
    registry.rememberChallenges([memory('https://reg.example/old-token')]);
    const result = await registry.resolveDigest(ref(), CREDENTIAL);
    expect(result).toMatchObject({ ok: true, challenge: memory('https://reg.example/token') });
    expect(
      calls.map((c) => `${c.method} ${c.url.split('?')[0]} ${c.headers.Authorization ?? ''}`.trim()),
    ).toEqual([
      'GET https://reg.example/old-token Basic Y2k6Q0ktU0VDUkVU',
      'HEAD https://reg.example/v2/acme/web/manifests/1 Bearer old',
      'GET https://reg.example/token Basic Y2k6Q0ktU0VDUkVU',
      'HEAD https://reg.example/v2/acme/web/manifests/1 Bearer new',
    ]);
  });

  it('still reports Unauthorized when the remembered challenge is right and the credential is refused', async () => {
    const { fetch } = scripted((call) => {
      if (call.url.startsWith('https://reg.example/token'))
        return { status: 200, body: '{"token":"no-access"}' };
      return {
        status: 401,
        headers: { 'WWW-Authenticate': 'Bearer realm="https://reg.example/token",service="reg.example"' },
      };
    });
    const registry = client(fetch);
    registry.rememberChallenges([memory('https://reg.example/token')]);
    const result = await registry.resolveDigest(ref(), CREDENTIAL);
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(registry.stats()).toMatchObject({ head: 1, token: 1 });
  });

  it.each<[string, Record<string, RegistryHostOptions>]>([
    ['without an allow-list', {}],
    ['outside the allow-list', { 'reg.example': { realmHosts: ['reg.example'] } }],
  ])(
    'sends nothing to a remembered realm on another host %s: learns the live challenge',
    async (_what, registries) => {
      const { calls, fetch } = tokenRegistry('https://reg.example/token');
      const registry = client(fetch, { registries });
      registry.rememberChallenges([memory('https://evil.example/token')]);
      const result = await registry.resolveDigest(ref(), CREDENTIAL);
      expect(result).toMatchObject({ ok: true, challenge: memory('https://reg.example/token') });
      expect(calls.filter((c) => !c.url.startsWith('https://reg.example/'))).toEqual([]);
      expect(anonymousHeads(calls)).toHaveLength(1);
    },
  );

  it('uses a remembered realm on a host the registry lists in realmHosts', async () => {
    const { calls, fetch } = tokenRegistry('https://auth.example/token');
    const registry = client(fetch, { registries: { 'reg.example': { realmHosts: ['auth.example'] } } });
    registry.rememberChallenges([memory('https://auth.example/token')]);
    expect(await registry.resolveDigest(ref(), CREDENTIAL)).toMatchObject({ ok: true });
    expect(anonymousHeads(calls)).toEqual([]);
    expect(registry.stats()).toMatchObject({ head: 1, token: 1 });
  });

  it('sends Basic credentials up front for a remembered Basic challenge', async () => {
    const { calls, fetch } = scripted((call) =>
      call.headers.Authorization?.startsWith('Basic ')
        ? { status: 200, headers: { 'Docker-Content-Digest': DIGEST } }
        : { status: 401, headers: { 'WWW-Authenticate': 'Basic realm="registry"' } },
    );
    const registry = client(fetch);
    registry.rememberChallenges([{ registry: 'reg.example', scheme: 'Basic' }]);
    const result = await registry.resolveDigest(ref(), CREDENTIAL);
    expect(result).toMatchObject({ ok: true, challenge: { registry: 'reg.example', scheme: 'Basic' } });
    expect(calls).toHaveLength(1);
  });

  it("uses no memory of another registry's challenge", async () => {
    const { calls, fetch } = tokenRegistry('https://reg.example/token');
    const registry = client(fetch);
    registry.rememberChallenges([{ ...memory('https://reg.example/token'), registry: 'other.example' }]);
    expect(await registry.resolveDigest(ref(), CREDENTIAL)).toMatchObject({ ok: true });
    expect(anonymousHeads(calls)).toHaveLength(1);
  });
});
