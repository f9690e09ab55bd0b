/**
 * A challenge remembered from an earlier run standing in for the first 401: where it may be used
 * (rememberedChallengeProblem, a pure decision), and what the client sends with it, driven by a
 * scripted fetch. The same against the real token registry is in packages/poller/test/run.test.ts.
 */
import { Readable } from 'node:stream';
import { normalizeReference, type RegistryChallenge } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { rememberedChallengeProblem } from './auth.ts';
import type { AuthChallenge } from './challenge.ts';
import { RegistryClient, type RegistryClientOptions } from './client.ts';
import { RegistryHosts } from './hosts.ts';
import type { RegistryFetchInit, RegistryFetchResponse } from './transport.ts';
import type { RegistryHostOptions } from './types.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const CREDENTIAL = { username: 'ci', password: 'CI-SECRET' };

function hosts(options: Record<string, RegistryHostOptions> = {}): RegistryHosts {
  return new RegistryHosts({ hosts: options, maxSocketsPerHost: 1 });
}
const bearer = (realm: string, service = 'reg.example'): AuthChallenge => ({
  scheme: 'bearer',
  params: { realm, service },
});
const reg = { domain: 'reg.example', apiHost: 'reg.example', origin: 'https://reg.example' };

describe('rememberedChallengeProblem', () => {
  it.each<[string, AuthChallenge, Record<string, RegistryHostOptions>, typeof reg]>([
    ["a realm on the registry's own origin", bearer('https://reg.example/token'), {}, reg],
    [
      'a realm on a host the registry lists in realmHosts',
      bearer('https://auth.example/token'),
      { 'reg.example': { realmHosts: ['auth.example'] } },
      reg,
    ],
    [
      'a realm on a host the * entry lists',
      bearer('https://auth.example/token'),
      { '*': { realmHosts: ['auth.example'] } },
      reg,
    ],
    [
      "Docker Hub's token service",
      bearer('https://auth.docker.io/token', 'registry.docker.io'),
      {},
      { domain: 'docker.io', apiHost: 'registry-1.docker.io', origin: 'https://registry-1.docker.io' },
    ],
    ['Basic (credentials only go to the registry)', { scheme: 'basic', params: {} }, {}, reg],
  ])('may use %s', (_what, challenge, options, registry) => {
    expect(rememberedChallengeProblem(registry, challenge, hosts(options))).toBeUndefined();
  });

  it.each<[string, AuthChallenge, Record<string, RegistryHostOptions>, RegExp]>([
    [
      'a realm on another host without an allow-list',
      bearer('https://elsewhere.example/token'),
      {},
      /neither on reg\.example nor named/,
    ],
    [
      'a realm on another port of the same host',
      bearer('https://reg.example:8443/token'),
      {},
      /neither on reg\.example nor named/,
    ],
    [
      'a realm outside the allow-list',
      bearer('https://elsewhere.example/token'),
      { 'reg.example': { realmHosts: ['auth.example'] } },
      /not in its realmHosts allow-list/,
    ],
    [
      'a plain-HTTP realm for an HTTPS registry, even on its own host',
      bearer('http://reg.example/token'),
      {},
      /over plain HTTP/,
    ],
    ['a realm that is not a URL', bearer('not a url'), {}, /not a URL/],
    ['a realm that is not HTTP(S)', bearer('file:///etc/passwd'), {}, /not HTTP\(S\)/],
    [
      "another registry's known token service",
      bearer('https://auth.docker.io/token'),
      {},
      /neither on reg\.example nor named/,
    ],
    ['another scheme', { scheme: 'negotiate', params: {} }, {}, /not a Bearer or Basic/],
  ])('refuses %s', (_what, challenge, options, why) => {
    expect(rememberedChallengeProblem(reg, challenge, hosts(options))).toMatch(why);
  });
});

interface Call {
  method: string;
  url: string;
  authorization?: string;
}
type Reply = { status: number; headers?: Record<string, string | undefined>; body?: string };

function scripted(handler: (call: Call) => Reply) {
  const calls: Call[] = [];
  const fetch = async (url: string, init: RegistryFetchInit): Promise<RegistryFetchResponse> => {
    const call: Call = {
      method: init.method,
      url,
      ...(init.headers.Authorization ? { authorization: init.headers.Authorization } : {}),
    };
    calls.push(call);
    const reply = handler(call);
    const headers = Object.fromEntries(
      Object.entries(reply.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]),
    );
    return {
      status: reply.status,
      headers: { get: (name: string) => headers[name.toLowerCase()] ?? null },
      body: reply.body === undefined ? null : Readable.from([Buffer.from(reply.body)]),
    };
  };
  return { calls, fetch };
}

/** A registry at reg.example whose token service is `realm` and issues `token` for every scope. */
function tokenRegistry(realm: string, token = 'tok') {
  return scripted((call) => {
    if (call.url.startsWith(realm)) return { status: 200, body: JSON.stringify({ token }) };
    if (call.url.startsWith('https://reg.example/v2/') && call.authorization === `Bearer ${token}`)
      return { status: 200, headers: { 'Docker-Content-Digest': DIGEST } };
    if (call.url.startsWith('https://reg.example/v2/'))
      return {
        status: 401,
        headers: { 'WWW-Authenticate': `Bearer realm="${realm}",service="reg.example"` },
      };
    return { status: 404 };
  });
}

function client(fetch: RegistryClientOptions['fetch'], registries: Record<string, RegistryHostOptions> = {}) {
  return new RegistryClient({ fetch, registries, sleep: async () => {}, random: () => 0 });
}

const memory = (realm: string): RegistryChallenge => ({
  registry: 'reg.example',
  scheme: 'Bearer',
  realm,
  service: 'reg.example',
});
const ref = (repo = 'web') => normalizeReference(`reg.example/acme/${repo}:1`);
const anonymousHeads = (calls: Call[]) => calls.filter((c) => c.method === 'HEAD' && !c.authorization);

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
      return call.authorization === 'Bearer new'
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
    expect(calls.map((c) => `${c.method} ${c.url.split('?')[0]} ${c.authorization ?? ''}`.trim())).toEqual([
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
      const registry = client(fetch, registries);
      registry.rememberChallenges([memory('https://evil.example/token')]);
      const result = await registry.resolveDigest(ref(), CREDENTIAL);
      expect(result).toMatchObject({ ok: true, challenge: memory('https://reg.example/token') });
      expect(calls.filter((c) => !c.url.startsWith('https://reg.example/'))).toEqual([]);
      expect(anonymousHeads(calls)).toHaveLength(1);
    },
  );

  it('uses a remembered realm on a host the registry lists in realmHosts', async () => {
    const { calls, fetch } = tokenRegistry('https://auth.example/token');
    const registry = client(fetch, { 'reg.example': { realmHosts: ['auth.example'] } });
    registry.rememberChallenges([memory('https://auth.example/token')]);
    expect(await registry.resolveDigest(ref(), CREDENTIAL)).toMatchObject({ ok: true });
    expect(anonymousHeads(calls)).toEqual([]);
    expect(registry.stats()).toMatchObject({ head: 1, token: 1 });
  });

  it('sends Basic credentials up front for a remembered Basic challenge', async () => {
    const { calls, fetch } = scripted((call) =>
      call.authorization?.startsWith('Basic ')
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
