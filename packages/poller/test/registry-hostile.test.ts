/**
 * The registry client against hostile registries: small loopback servers of the test's own that
 * redirect logins elsewhere, name token realms on other hosts, send endless bodies, stall and answer
 * with garbage. Each test covers a class of fault, not one input.
 */
import { createHash } from 'node:crypto';
import { MAX_MESSAGE_BYTES, normalizeReference } from '@kubewatcher/shared';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BODY_LIMITS,
  RegistryClient,
  type RegistryClientOptions,
  type RegistryHostOptions,
  type ResolveResult,
} from '../src/registry/index.ts';
import {
  type HostileHandler,
  type HostileRegistry,
  startHostileRegistry,
  writeBody,
} from './hostile-registry.ts';

const DIGEST = `sha256:${'d'.repeat(64)}`;
const credential = { username: 'alice', password: 'SECRET-PASSWORD' };
const identity = { username: '<token>', identityToken: 'SECRET-REFRESH' };
const secrets = [
  'SECRET',
  Buffer.from('alice:SECRET-PASSWORD').toString('base64'),
  Buffer.from('<token>:SECRET-REFRESH').toString('base64'),
];

const servers: HostileRegistry[] = [];
const clients: RegistryClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function hostile(handler: HostileHandler): Promise<HostileRegistry> {
  const s = await startHostileRegistry(handler);
  servers.push(s);
  return s;
}

function client(
  hosts: string[],
  opts: RegistryClientOptions = {},
  extra: Record<string, RegistryHostOptions> = {},
) {
  const registries: Record<string, RegistryHostOptions> = Object.fromEntries(
    hosts.map((h) => [h, { plainHttp: true }]),
  );
  const c = new RegistryClient({ registries: { ...registries, ...extra }, timeoutMs: 10_000, ...opts });
  clients.push(c);
  return c;
}

function resolve(
  c: RegistryClient,
  host: string,
  cred?: typeof credential | typeof identity,
): Promise<ResolveResult> {
  return c.resolveDigest(normalizeReference(`${host}/acme/web:1`), cred);
}

/** Everything a server received, as one string, to look for secrets in. */
function received(s: HostileRegistry): string {
  return JSON.stringify(s.requests);
}

function expectNoSecrets(s: HostileRegistry): void {
  const all = received(s);
  for (const secret of secrets) expect(all).not.toContain(secret);
}

describe('credentials stay with the origins they belong to', () => {
  it('a 401 from a redirect target is not answered with the registry credentials', async () => {
    const elsewhere = await hostile((req, res) => {
      res.writeHead(401, {
        'WWW-Authenticate': `Bearer realm="http://${req.headers.host}/token",service="x", Basic realm="x"`,
      });
      res.end();
    });
    const registry = await hostile((_req, res) => {
      res.writeHead(307, { Location: `${elsewhere.url}/v2/acme/web/manifests/1` });
      res.end();
    });
    const result = await resolve(client([registry.host, elsewhere.host]), registry.host, credential);
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(!result.ok && result.message).toContain(`credentials for ${registry.host} are only sent to`);
    expect(elsewhere.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['HEAD /v2/acme/web/manifests/1']);
    expectNoSecrets(elsewhere);
  });

  it.each(['Basic', 'Bearer'])(
    'an authorised request (%s) redirected to the same host on another port arrives there without credentials',
    async (scheme) => {
      // Another port is another origin: same address, another server.
      const elsewhere = await hostile((_req, res) => {
        res.writeHead(200, { 'Docker-Content-Digest': DIGEST });
        res.end();
      });
      const registry = await hostile((req, res) => {
        if (req.path.startsWith('/token')) {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          return void res.end(JSON.stringify({ token: 'SECRET-TOKEN' }));
        }
        if (!req.headers.authorization) {
          const challenge =
            scheme === 'Basic'
              ? 'Basic realm="reg"'
              : `Bearer realm="http://${req.headers.host}/token",service="reg"`;
          res.writeHead(401, { 'WWW-Authenticate': challenge });
          return void res.end();
        }
        res.writeHead(307, { Location: `${elsewhere.url}${req.path}` });
        res.end();
      });
      expect(elsewhere.host.split(':')[0]).toBe(registry.host.split(':')[0]);
      const result = await resolve(client([registry.host, elsewhere.host]), registry.host, credential);
      expect(result).toMatchObject({ ok: true, digest: DIGEST });
      expect(registry.requests.some((r) => r.headers.authorization)).toBe(true);
      expect(elsewhere.requests.length).toBeGreaterThan(0);
      expect(elsewhere.requests.map((r) => r.headers.authorization)).toEqual(
        elsewhere.requests.map(() => undefined),
      );
      expectNoSecrets(elsewhere);
      expect(received(elsewhere)).not.toContain('SECRET-TOKEN');
    },
  );

  it('token requests (GET with Basic, POST with a refresh token) never follow a redirect to another origin', async () => {
    const elsewhere = await hostile((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token: 'stolen' }));
    });
    const registry = await hostile((req, res) => {
      if (req.path.startsWith('/token')) {
        res.writeHead(307, { Location: `${elsewhere.url}/token` });
        return void res.end();
      }
      res.writeHead(401, {
        'WWW-Authenticate': `Bearer realm="http://${req.headers.host}/token",service="reg"`,
      });
      res.end();
    });
    for (const cred of [credential, identity]) {
      const result = await resolve(client([registry.host, elsewhere.host]), registry.host, cred);
      expect(result).toMatchObject({ ok: false, reason: 'RegistryError' });
      expect(!result.ok && result.message).toMatch(
        /token request .* redirected a token request to another origin/,
      );
    }
    expect(registry.requests.some((r) => r.method === 'POST')).toBe(true);
    expect(elsewhere.requests).toEqual([]);
  });

  it('a token realm outside the allow-list is never asked, by the registry entry or the * entry', async () => {
    const realm = await hostile((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ token: 't' }));
    });
    const registry = await hostile((req, res) => {
      if (req.headers.authorization === 'Bearer t') {
        res.writeHead(200, { 'Docker-Content-Digest': DIGEST });
        return void res.end();
      }
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${realm.url}/token",service="reg"` });
      res.end();
    });
    const own = client(
      [registry.host, realm.host],
      {},
      { [registry.host]: { plainHttp: true, realmHosts: ['auth.example'] } },
    );
    const byDefault = client([registry.host, realm.host], {}, { '*': { realmHosts: ['auth.example'] } });
    for (const c of [own, byDefault]) {
      const result = await resolve(c, registry.host, credential);
      expect(result).toMatchObject({ ok: false, reason: 'RegistryError' });
      expect(!result.ok && result.message).toContain(
        `token realm on ${realm.host}, which is not in its realmHosts`,
      );
    }
    expect(realm.requests).toEqual([]);
    // Listed, the same realm serves.
    const allowed = client([registry.host, realm.host], {}, { '*': { realmHosts: [realm.host] } });
    expect(await resolve(allowed, registry.host, credential)).toMatchObject({ ok: true, digest: DIGEST });
  });
});

describe('bodies are read within a cap chosen by what they are', () => {
  const huge = 64 * 1024 * 1024;

  it('refuses a token answer over its cap, naming the request, and hangs up early', async () => {
    let written = 0;
    const registry = await hostile(async (req, res) => {
      if (req.path.startsWith('/token')) {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        written = await writeBody(res, huge, ' ');
        return;
      }
      res.writeHead(401, {
        'WWW-Authenticate': `Bearer realm="http://${req.headers.host}/token",service="reg"`,
      });
      res.end();
    });
    const result = await resolve(client([registry.host]), registry.host);
    expect(result).toMatchObject({ ok: false, reason: 'RegistryError' });
    expect(!result.ok && result.message).toContain(
      `token request for acme/web refused: token service ${registry.host} sent an answer larger than ${BODY_LIMITS.token} bytes`,
    );
    await expect.poll(() => registry.requests.find((r) => r.path.startsWith('/token'))?.abandoned).toBe(true);
    expect(written).toBeLessThan(huge);
  });

  it('hashes a manifest as it streams, and refuses one over the manifest cap', async () => {
    let size = 3 * 1024 * 1024;
    const registry = await hostile(async (req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.index.v1+json' });
      if (req.method === 'HEAD') return void res.end();
      await writeBody(res, size, 'm');
    });
    const c = client([registry.host]);
    const ok = await resolve(c, registry.host);
    const expected = `sha256:${createHash('sha256').update(Buffer.alloc(size, 'm')).digest('hex')}`;
    expect(ok).toMatchObject({ ok: true, method: 'GET', digest: expected });

    size = huge;
    const tooBig = await resolve(c, registry.host);
    expect(tooBig).toMatchObject({ ok: false, reason: 'RegistryError' });
    expect(!tooBig.ok && tooBig.message).toContain(
      `GET request for acme/web refused: ${registry.host} sent a manifest larger than ${BODY_LIMITS.manifest} bytes`,
    );
    await expect.poll(() => registry.requests.at(-1)?.abandoned).toBe(true);
  });

  it('reads only the start of an error body, whatever its size', async () => {
    const registry = await hostile(async (req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(405);
        return void res.end();
      }
      res.writeHead(404, { 'Content-Type': 'application/json' });
      await writeBody(res, huge, ' ');
    });
    const result = await resolve(client([registry.host]), registry.host);
    expect(result).toMatchObject({ ok: false, reason: 'NotFound' });
    await expect.poll(() => registry.requests.at(-1)?.abandoned).toBe(true);
  });
});

describe('one deadline per resolution', () => {
  it('covers redirect hops that each answer slowly', async () => {
    const registry = await hostile((req, res) => {
      const hop = Number(/\/hop\/(\d+)/.exec(req.path)?.[1] ?? 0);
      setTimeout(() => {
        if (res.destroyed) return;
        res.writeHead(
          hop < 5 ? 307 : 200,
          hop < 5 ? { Location: `/hop/${hop + 1}` } : { 'Docker-Content-Digest': DIGEST },
        );
        res.end();
      }, 400);
    });
    const result = await resolve(client([registry.host], { timeoutMs: 1_000 }), registry.host);
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toContain('acme/web timed out after 1000 ms');
    // Six hops of 400 ms each would take 2.4 s: the deadline ended the resolution before the last.
    expect(registry.requests.length).toBeLessThan(6);
  });

  it('covers retries and their backoff waits', async () => {
    const registry = await hostile((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    const c = client([registry.host], {
      timeoutMs: 1_000,
      retry: { attempts: 50, baseDelayMs: 200, maxDelayMs: 200 },
      random: () => 0,
    });
    const result = await resolve(c, registry.host);
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toContain('timed out after 1000 ms');
    // 50 attempts 200 ms apart need 10 s; within 1 s at most 6 fit.
    expect(registry.requests.length).toBeLessThanOrEqual(6);
  });

  it('covers token fetches', async () => {
    const registry = await hostile((req, res) => {
      if (req.path.startsWith('/token')) return; // never answers
      res.writeHead(401, {
        'WWW-Authenticate': `Bearer realm="http://${req.headers.host}/token",service="reg"`,
      });
      res.end();
    });
    const result = await resolve(client([registry.host], { timeoutMs: 800 }), registry.host);
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toContain(
      `timed out after 800 ms (during a token request to ${registry.host}`,
    );
  });
});

describe('one deadline per resolution, bodies included', () => {
  /** Sends the headers at once, then one byte every 50 ms until the client hangs up (bounded: 60 s). */
  const drip = async (res: import('node:http').ServerResponse, first = ' ') => {
    res.write(first);
    for (let i = 0; i < 1200 && !res.destroyed; i++) {
      await new Promise((r) => setTimeout(r, 50));
      if (!res.destroyed) res.write(' ');
    }
    if (!res.destroyed) res.end();
  };

  it.each([
    ['a manifest GET', 'get'],
    ['a token answer', 'token'],
    ['an error body', 'error'],
  ] as const)(
    'ends %s that drips forever, chunked without Content-Length, at the deadline',
    async (_what, kind) => {
      const registry = await hostile(async (req, res) => {
        if (kind === 'token' && req.path.startsWith('/token')) {
          res.writeHead(200, { 'Content-Type': 'application/json' });
          return drip(res, '{');
        }
        if (kind === 'token') {
          res.writeHead(401, {
            'WWW-Authenticate': `Bearer realm="http://${req.headers.host}/token",service="reg"`,
          });
          return void res.end();
        }
        if (req.method === 'HEAD') {
          res.writeHead(405);
          return void res.end();
        }
        res.writeHead(kind === 'get' ? 200 : 404, { 'Content-Type': 'application/json' });
        await drip(res);
      });
      const result = await resolve(client([registry.host], { timeoutMs: 800 }), registry.host);
      expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
      expect(!result.ok && result.message).toContain('timed out after 800 ms');
      const dripped = registry.requests.find((r) =>
        kind === 'token' ? r.path.startsWith('/token') : r.method === 'GET',
      );
      // The answer (chunked: written without a Content-Length) was abandoned, not read to its end.
      await expect.poll(() => dripped?.abandoned).toBe(true);
    },
  );
});

describe('what a registry says reaches the API bounded and clean', () => {
  it('bounds error codes and challenge schemes, and drops what is not a code', async () => {
    const registry = await hostile((req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(401, {
          'WWW-Authenticate': Array.from({ length: 300 }, (_, i) => `Scheme${'x'.repeat(40)}${i}`).join(', '),
        });
        return void res.end();
      }
      res.end();
    });
    const result = await resolve(client([registry.host]), registry.host);
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(Buffer.byteLength(!result.ok ? result.message : '')).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);

    const garbage = await hostile((req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(405);
        return void res.end();
      }
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(
        JSON.stringify({
          errors: [
            { code: `EVIL\u0007\n${'Z'.repeat(5_000)}` },
            { code: 'TAG_INVALID' },
            ...Array.from({ length: 100 }, () => ({ code: 'UNSUPPORTED' })),
          ],
        }),
      );
    });
    const bad = await resolve(client([garbage.host]), garbage.host);
    expect(bad).toMatchObject({ ok: false, reason: 'RegistryError' });
    const message = !bad.ok ? bad.message : '';
    expect(message).toContain('(TAG_INVALID, UNSUPPORTED, UNSUPPORTED)');
    expect(message).not.toMatch(/EVIL|ZZZZ/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them is the point
    expect(message).not.toMatch(/[\u0000-\u001f]/);
  });
});

describe('one token request per registry and credential', () => {
  const jwt = (repositories: string[]) =>
    [
      'e30',
      Buffer.from(
        JSON.stringify({
          access: repositories.map((name) => ({ type: 'repository', name, actions: ['pull'] })),
        }),
      ).toString('base64url'),
      'sig',
    ].join('.');

  it('asks once for every planned repository, and falls back to one per repository when granted fewer', async () => {
    const logs: string[] = [];
    const record = (message: string, meta?: Record<string, unknown>) =>
      void logs.push(`${message} ${JSON.stringify(meta ?? {})}`);
    const logger = { error: record, warn: record, info: record, debug: () => undefined };
    for (const grantsAll of [true, false]) {
      logs.length = 0;
      const registry = await hostile((req, res) => {
        const url = new URL(req.path, 'http://x');
        if (url.pathname === '/token') {
          const scopes = url.searchParams.getAll('scope');
          const names = scopes.map((sc) => sc.split(':')[1]!);
          res.writeHead(200, { 'Content-Type': 'application/json' });
          return void res.end(JSON.stringify({ token: jwt(grantsAll ? names : names.slice(0, 1)) }));
        }
        const token = req.headers.authorization?.replace(/^Bearer /, '');
        const repository = /^\/v2\/(.+)\/manifests\//.exec(url.pathname)?.[1];
        const granted = token
          ? JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).access.map(
              (a: { name: string }) => a.name,
            )
          : [];
        if (repository && granted.includes(repository)) {
          res.writeHead(200, { 'Docker-Content-Digest': DIGEST });
          return void res.end();
        }
        res.writeHead(401, {
          'WWW-Authenticate': `Bearer realm="http://${req.headers.host}/token",service="reg"`,
        });
        res.end();
      });
      const c = client([registry.host], { logger });
      const refs = ['acme/a', 'acme/b', 'acme/c'].map((r) => normalizeReference(`${registry.host}/${r}:1`));
      c.planLookups(refs.map((reference) => ({ reference, credential })));
      const results = await Promise.all(refs.map((r) => c.resolveDigest(r, credential)));
      expect(results.every((r) => r.ok)).toBe(true);
      const tokenRequests = registry.requests.filter((r) => r.path.startsWith('/token'));
      expect(new URL(tokenRequests[0]!.path, 'http://x').searchParams.getAll('scope')).toEqual([
        'repository:acme/a:pull',
        'repository:acme/b:pull',
        'repository:acme/c:pull',
      ]);
      const fallbacks = logs.filter((l) => l.startsWith('asking this registry for one token per repository'));
      if (grantsAll) {
        expect(c.stats()).toMatchObject({ token: 1, head: 4 });
        expect(fallbacks).toEqual([]);
      } else {
        // One batched request granted a; b and c then ask alone; said once in the log.
        expect(c.stats()).toMatchObject({ token: 3 });
        expect(
          tokenRequests.slice(1).map((r) => new URL(r.path, 'http://x').searchParams.getAll('scope').length),
        ).toEqual([1, 1]);
        expect(fallbacks).toHaveLength(1);
      }
    }
  });
});
