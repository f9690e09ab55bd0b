/**
 * Where a challenge remembered from an earlier run may stand in for the first 401
 * (rememberedChallengeProblem). What the client sends with one is in client.test.ts (scripted fetch)
 * and packages/poller/test/run.test.ts (the real token registry).
 */
import { describe, expect, it } from 'vitest';
import { rememberedChallengeProblem } from './auth.ts';
import type { AuthChallenge } from './challenge.ts';
import { RegistryHosts } from './hosts.ts';
import type { RegistryHostOptions } from './types.ts';

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
