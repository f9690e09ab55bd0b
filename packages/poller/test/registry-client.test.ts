/**
 * The registry client against the real local registries (distribution, started by the integration
 * global setup): open (HTTP), basic (htpasswd, HTTPS with the environment's CA) and token (Bearer via the
 * project's token server). Faults come from a proxy in front of a real registry, never from a mock.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { normalizeReference } from '@kubewatcher/shared';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { pushTestImage } from '../../../scripts/lib/images.ts';
import {
  MANIFEST_ACCEPT,
  RegistryClient,
  type RegistryClientOptions,
  type RegistryHostOptions,
  type ResolveResult,
} from '../src/registry/index.ts';
import { type FaultProxy, startFaultProxy } from './fault-proxy.ts';

const run = promisify(execFile);
const info = inject('localCluster');
const { open, basic, token } = info.registries;
const basicCredential = { username: basic.username!, password: basic.password! };
const tokenCredential = { username: token.username!, password: token.password! };

/** Every local registry's transport settings: plain HTTP where it is HTTP, the CA where it is HTTPS. */
function registries(extra: Record<string, RegistryHostOptions> = {}): Record<string, RegistryHostOptions> {
  return {
    [open.host]: { plainHttp: true },
    [token.host]: { plainHttp: true },
    [basic.host]: { caFile: basic.caFile! },
    ...extra,
  };
}

const clients: RegistryClient[] = [];
const sleeps: number[] = [];
function client(opts: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({
    registries: registries(),
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    timeoutMs: 10_000,
    ...opts,
  });
  clients.push(c);
  return c;
}

const proxies: FaultProxy[] = [];
async function proxy(
  target: string,
  opts: { ca?: string; injectHeaders?: Record<string, string>; advertiseHost?: string } = {},
) {
  const p = await startFaultProxy({ target, ...opts });
  proxies.push(p);
  return p;
}

afterEach(() => {
  sleeps.length = 0;
});
afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all(proxies.map((p) => p.close()));
});

function expectOk(result: ResolveResult): asserts result is Extract<ResolveResult, { ok: true }> {
  if (!result.ok) throw new Error(`expected a digest, got ${result.reason}: ${result.message}`);
}

function ref(host: string, repository: string, tag: string) {
  return normalizeReference(`${host}/${repository}:${tag}`);
}

let single: { digest: string; mediaType: string };
let multi: { digest: string; mediaType: string };
let basicImage: string;
let tokenImage: string;

beforeAll(async () => {
  [single, multi] = await Promise.all([
    pushTestImage({ info, registry: 'open', repository: 'acme/web', tag: 'stable' }),
    pushTestImage({ info, registry: 'open', repository: 'acme/multi', tag: 'v1', multiArch: true }),
  ]);
});

describe('open registry (plain HTTP, no auth)', () => {
  it('resolves a single-arch tag with one HEAD', async () => {
    const c = client();
    const result = await c.resolveDigest(ref(open.host, 'acme/web', 'stable'));
    expectOk(result);
    expect(result).toMatchObject({ digest: single.digest, method: 'HEAD', mediaType: single.mediaType });
    expect(c.stats()).toMatchObject({ head: 1, get: 0, token: 0, total: 1 });
    expect(c.stats().byHost[open.host]).toEqual({ head: 1, get: 0, token: 0, total: 1 });
  });

  it('resolves a multi-arch tag to the index digest, the same as crane', async () => {
    const c = client();
    const result = await c.resolveDigest(ref(open.host, 'acme/multi', 'v1'));
    expectOk(result);
    const { stdout } = await run(join(info.binDir, 'crane'), [
      'digest',
      '--insecure',
      `${open.host}/acme/multi:v1`,
    ]);
    expect(result.digest).toBe(stdout.trim());
    expect(result.digest).toBe(multi.digest);
    expect(result.mediaType).toBe('application/vnd.oci.image.index.v1+json');
  });

  it('reports a missing tag and a missing repository as NotFound, without a GET', async () => {
    const c = client();
    const tag = await c.resolveDigest(ref(open.host, 'acme/web', 'no-such-tag'));
    expect(tag).toMatchObject({ ok: false, reason: 'NotFound' });
    expect(!tag.ok && tag.message).toContain(`${open.host}/acme/web:no-such-tag not found`);
    const repo = await c.resolveDigest(ref(open.host, 'acme/nothing-here', 'v1'));
    expect(repo).toMatchObject({ ok: false, reason: 'NotFound' });
    expect(c.stats()).toMatchObject({ head: 2, get: 0 });
  });

  it('does not speak plain HTTP to localhost or 127.0.0.1 unless told to', async () => {
    const c = client({ registries: {} });
    const result = await c.resolveDigest(ref(open.host, 'acme/web', 'stable'));
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toBe(
      `registry ${open.host}: TLS handshake with ${open.host} failed: if it serves plain HTTP, set plainHttp for it`,
    );
  });
});

describe('basic-auth registry (HTTPS with its own CA)', () => {
  beforeAll(async () => {
    basicImage = (await pushTestImage({ info, registry: 'basic', repository: 'acme/private', tag: 'v1' }))
      .digest;
  });

  it('resolves with credentials, answering the Basic challenge, then sends them up front', async () => {
    const c = client();
    const first = await c.resolveDigest(ref(basic.host, 'acme/private', 'v1'), basicCredential);
    expectOk(first);
    expect(first.digest).toBe(basicImage);
    expect(c.stats()).toMatchObject({ head: 2, get: 0, token: 0 });
    const second = await c.resolveDigest(ref(basic.host, 'acme/private', 'v1'), basicCredential);
    expectOk(second);
    expect(c.stats()).toMatchObject({ head: 3 });
  });

  it('without credentials: Unauthorized, telling the user to add a pullSecret', async () => {
    const result = await client().resolveDigest(ref(basic.host, 'acme/private', 'v1'));
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(!result.ok && result.message).toBe(
      `registry ${basic.host} refused anonymous access to acme/private: add a pullSecret (kubernetes.io/dockerconfigjson) with credentials for ${basic.host}`,
    );
  });

  it('with wrong credentials: Unauthorized, saying they were rejected, never quoting them', async () => {
    const result = await client().resolveDigest(ref(basic.host, 'acme/private', 'v1'), {
      username: basic.username!,
      password: 'wrong-password-123',
    });
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(!result.ok && result.message).toContain(`credentials for ${basic.host} were rejected`);
    expect(!result.ok && result.message).not.toContain('wrong-password-123');
  });

  it('verifies TLS: without the CA the registry is unreachable, with a hint', async () => {
    const c = client({ registries: registries({ [basic.host]: {} }) });
    const result = await c.resolveDigest(ref(basic.host, 'acme/private', 'v1'), basicCredential);
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toMatch(/TLS certificate of .* is not trusted .*caFile/);
  });

  it('accepts the CA as PEM text too', async () => {
    const c = client({
      registries: registries({ [basic.host]: { ca: readFileSync(basic.caFile!, 'utf8') } }),
    });
    expectOk(await c.resolveDigest(ref(basic.host, 'acme/private', 'v1'), basicCredential));
  });

  it('reports an unreadable caFile as a RegistryError naming the file', async () => {
    const c = client({ registries: registries({ [basic.host]: { caFile: '/nonexistent/ca.pem' } }) });
    const result = await c.resolveDigest(ref(basic.host, 'acme/private', 'v1'), basicCredential);
    expect(result).toMatchObject({ ok: false, reason: 'RegistryError' });
    expect(!result.ok && result.message).toContain('/nonexistent/ca.pem');
  });
});

describe('token-auth registry (Bearer)', () => {
  beforeAll(async () => {
    tokenImage = (await pushTestImage({ info, registry: 'token', repository: 'acme/api', tag: 'v1' })).digest;
  });

  it('refuses anonymous access with a message saying what to do', async () => {
    const result = await client().resolveDigest(ref(token.host, 'acme/api', 'v1'));
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(!result.ok && result.message).toContain(
      `registry ${token.host} refused anonymous access to acme/api`,
    );
    expect(!result.ok && result.message).toContain('add a pullSecret');
  });

  it('resolves with credentials and reuses the token: one token request for two resolves', async () => {
    const c = client();
    const first = await c.resolveDigest(ref(token.host, 'acme/api', 'v1'), tokenCredential);
    expectOk(first);
    expect(first.digest).toBe(tokenImage);
    const second = await c.resolveDigest(ref(token.host, 'acme/api', 'v1'), tokenCredential);
    expectOk(second);
    expect(second.digest).toBe(tokenImage);
    const stats = c.stats();
    expect(stats).toMatchObject({ head: 3, get: 0, token: 1, total: 4 });
    expect(stats.byHost[new URL(token.tokenRealm).host]).toMatchObject({ token: 1 });
  });

  it('rejects wrong credentials at the token service', async () => {
    const result = await client().resolveDigest(ref(token.host, 'acme/api', 'v1'), {
      username: token.username!,
      password: 'not-the-password',
    });
    expect(result).toMatchObject({ ok: false, reason: 'Unauthorized' });
    expect(!result.ok && result.message).toContain(`credentials for ${token.host} were rejected`);
    expect(!result.ok && result.message).not.toContain('not-the-password');
  });

  it('fetches a new token once the cached one expired (injected clock)', async () => {
    let now = Date.now();
    const c = client({ now: () => now });
    expectOk(await c.resolveDigest(ref(token.host, 'acme/api', 'v1'), tokenCredential));
    now += 301_000; // the token server issues 300 s tokens
    expectOk(await c.resolveDigest(ref(token.host, 'acme/api', 'v1'), tokenCredential));
    expect(c.stats().token).toBe(2);
  });

  it('reports a missing tag behind token auth as NotFound', async () => {
    const result = await client().resolveDigest(ref(token.host, 'acme/api', 'nope'), tokenCredential);
    expect(result).toMatchObject({ ok: false, reason: 'NotFound' });
  });
});

describe('faults', () => {
  it('falls back to GET when HEAD has no Docker-Content-Digest, hashing the raw body', async () => {
    const p = await proxy(open.url);
    p.mode = { kind: 'stripDigest' };
    const c = client({ registries: registries({ [p.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(p.host, 'acme/multi', 'v1'));
    expectOk(result);
    expect(result).toMatchObject({ digest: multi.digest, method: 'GET' });
    expect(c.stats()).toMatchObject({ head: 1, get: 1, total: 2 });
    expect(p.requests.map((r) => [r.method, r.headers.accept])).toEqual([
      ['HEAD', MANIFEST_ACCEPT],
      ['GET', MANIFEST_ACCEPT],
    ]);
  });

  it('falls back to GET when the registry refuses HEAD (405)', async () => {
    const p = await proxy(open.url);
    p.mode = { kind: 'status', status: 405, times: 1, method: 'HEAD' };
    const c = client({ registries: registries({ [p.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(p.host, 'acme/web', 'stable'));
    expectOk(result);
    expect(result).toMatchObject({ digest: single.digest, method: 'GET' });
    expect(c.stats()).toMatchObject({ head: 1, get: 1 });
  });

  it('retries 503 with jittered exponential backoff, then succeeds', async () => {
    const p = await proxy(open.url);
    p.mode = { kind: 'status', status: 503, times: 2 };
    const c = client({ registries: registries({ [p.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(p.host, 'acme/web', 'stable'));
    expectOk(result);
    expect(result.digest).toBe(single.digest);
    expect(c.stats()).toMatchObject({ head: 3, get: 0 });
    expect(sleeps).toEqual([100, 200]); // random() = 0.5 of 200 ms, then of 400 ms
  });

  it('gives up after three 503s with a RegistryError', async () => {
    const p = await proxy(open.url);
    p.mode = { kind: 'status', status: 503, times: 10 };
    const c = client({ registries: registries({ [p.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(p.host, 'acme/web', 'stable'));
    expect(result).toMatchObject({ ok: false, reason: 'RegistryError' });
    expect(!result.ok && result.message).toContain('answered 503');
    expect(c.stats()).toMatchObject({ head: 3, get: 0 });
  });

  it('429 with Retry-After seconds: RateLimited, and the registry is left alone for the rest of the run', async () => {
    const p = await proxy(open.url);
    p.mode = { kind: 'rateLimit', retryAfter: '120' };
    const c = client({ registries: registries({ [p.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(p.host, 'acme/web', 'stable'));
    expect(result).toMatchObject({ ok: false, reason: 'RateLimited', retryAfterMs: 120_000 });
    expect(p.requests).toHaveLength(1);

    p.mode = { kind: 'pass' };
    const later = await c.resolveDigest(ref(p.host, 'acme/multi', 'v1'));
    expect(later).toMatchObject({ ok: false, reason: 'RateLimited' });
    expect(p.requests).toHaveLength(1);
    expect(c.stats().pausedHosts).toEqual([p.host]);

    // Other registries go on.
    expectOk(await c.resolveDigest(ref(open.host, 'acme/web', 'stable')));
  });

  it('429 with Retry-After as an HTTP date', async () => {
    const p = await proxy(open.url);
    const now = Date.parse('2026-03-01T12:00:00Z');
    p.mode = { kind: 'rateLimit', retryAfter: new Date(now + 90_000).toUTCString() };
    const c = client({ now: () => now, registries: registries({ [p.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(p.host, 'acme/web', 'stable'));
    expect(result).toMatchObject({ ok: false, reason: 'RateLimited', retryAfterMs: 90_000 });
    const later = await c.resolveDigest(ref(p.host, 'acme/web', 'stable'));
    expect(later).toMatchObject({ ok: false, reason: 'RateLimited', retryAfterMs: 90_000 });
    expect(p.requests).toHaveLength(1);
  });

  it('follows a redirect to another host without sending Authorization there', async () => {
    basicImage ??= (await pushTestImage({ info, registry: 'basic', repository: 'acme/private', tag: 'v1' }))
      .digest;
    const ca = readFileSync(basic.caFile!, 'utf8');
    const basicAuth = `Basic ${Buffer.from(`${basic.username}:${basic.password}`).toString('base64')}`;
    // "Storage": another host that authenticates on its own, as a presigned URL would.
    const storage = await proxy(basic.url, {
      ca,
      injectHeaders: { authorization: basicAuth },
      advertiseHost: 'localhost',
    });
    const front = await proxy(basic.url, { ca });
    front.mode = { kind: 'redirect', to: storage.url, onlyAuthorized: true };
    const c = client({ registries: registries({ [front.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(front.host, 'acme/private', 'v1'), basicCredential);
    expectOk(result);
    expect(result.digest).toBe(basicImage);
    expect(front.requests.map((r) => [r.status, Boolean(r.headers.authorization)])).toEqual([
      [401, false],
      [307, true],
    ]);
    expect(storage.requests).toHaveLength(1);
    expect(storage.requests[0]!.headers.authorization).toBeUndefined();
    expect(c.stats().byHost[storage.host]).toMatchObject({ head: 1 });
  });

  it('times out a hanging registry as RegistryUnreachable', async () => {
    const p = await proxy(open.url);
    p.mode = { kind: 'hang' };
    const c = client({ timeoutMs: 500, registries: registries({ [p.host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(p.host, 'acme/web', 'stable'));
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toContain(
      `acme/web timed out after 500 ms (during a HEAD request to ${p.host}`,
    );
  });

  it('reports a closed port as RegistryUnreachable, naming the host', async () => {
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    const host = `127.0.0.1:${port}`;
    const c = client({ registries: registries({ [host]: { plainHttp: true } }) });
    const result = await c.resolveDigest(ref(host, 'acme/web', 'stable'));
    expect(result).toMatchObject({ ok: false, reason: 'RegistryUnreachable' });
    expect(!result.ok && result.message).toContain(`connection to ${host} refused`);
  });

  it('never has more requests in flight to one host than the cap', async () => {
    const p = await proxy(open.url);
    p.mode = { kind: 'delay', ms: 50 };
    const c = client({ maxConcurrencyPerHost: 2, registries: registries({ [p.host]: { plainHttp: true } }) });
    const results = await Promise.all(
      Array.from({ length: 8 }, () => c.resolveDigest(ref(p.host, 'acme/web', 'stable'))),
    );
    for (const r of results) expectOk(r);
    expect(p.requests).toHaveLength(8);
    expect(p.maxInFlight).toBe(2);
  });
});
