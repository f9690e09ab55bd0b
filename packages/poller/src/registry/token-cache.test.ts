import { describe, expect, it } from 'vitest';
import { credentialFingerprint, MAX_TOKEN_LIFETIME_SECONDS, TokenCache } from './token-cache.ts';

const scope = {
  realm: 'https://auth.example/token',
  service: 'registry.example',
  scope: 'repository:a/b:pull',
};

function clock(start = Date.parse('2026-03-01T12:00:00Z')) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('TokenCache', () => {
  it('keeps a token until expires_in minus the margin', () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now, marginMs: 10_000 });
    const key = TokenCache.key(scope, 'anonymous');
    cache.set(key, 'tok', 300);
    c.advance(289_999);
    expect(cache.get(key)).toBe('tok');
    c.advance(1);
    expect(cache.get(key)).toBeUndefined();
  });

  it('defaults expires_in to 60 s and treats shorter lifetimes as 60 s', () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now, marginMs: 10_000 });
    cache.set('a', 'tok-a');
    cache.set('b', 'tok-b', 5);
    c.advance(49_999);
    expect(cache.get('a')).toBe('tok-a');
    expect(cache.get('b')).toBe('tok-b');
    c.advance(1);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('b')).toBeUndefined();
  });

  it.each([1e12, Number.MAX_VALUE, 86_400 * 365])(
    'keeps a token no longer than the lifetime cap, whatever expires_in says (%d s)',
    (expiresIn) => {
      const c = clock();
      const cache = new TokenCache({ now: c.now, marginMs: 10_000 });
      const expiresAt = cache.set('k', 'tok', expiresIn);
      expect(expiresAt).toBe(c.now() + MAX_TOKEN_LIFETIME_SECONDS * 1000 - 10_000);
      c.advance(MAX_TOKEN_LIFETIME_SECONDS * 1000);
      expect(cache.get('k')).toBeUndefined();
    },
  );

  it.each([-1, -1e12, 0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY])(
    'keeps a token the shortest lifetime when expires_in is %d',
    (expiresIn) => {
      const c = clock();
      const cache = new TokenCache({ now: c.now, marginMs: 10_000 });
      expect(cache.set('k', 'tok', expiresIn)).toBe(c.now() + 50_000);
      c.advance(49_999);
      expect(cache.get('k')).toBe('tok');
      c.advance(1);
      expect(cache.get('k')).toBeUndefined();
    },
  );

  it.each(['1970-01-01T00:00:00Z', 'not a time', '+275760-09-13T00:00:00.000Z'])(
    'never keeps a token past its lifetime from now, whatever issued_at says (%s)',
    (issuedAt) => {
      const c = clock();
      const cache = new TokenCache({ now: c.now, marginMs: 10_000 });
      expect(cache.set('k', 'tok', 300, issuedAt)).toBeLessThanOrEqual(c.now() + 290_000);
      c.advance(290_000);
      expect(cache.get('k')).toBeUndefined();
    },
  );

  it('counts from issued_at when the token server says when it issued the token', () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now, marginMs: 10_000 });
    const issued = new Date(c.now() - 100_000).toISOString();
    cache.set('k', 'tok', 300, issued);
    c.advance(189_999);
    expect(cache.get('k')).toBe('tok');
    c.advance(1);
    expect(cache.get('k')).toBeUndefined();
  });

  it('never lets an issued_at ahead of our clock stretch the lifetime', () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now, marginMs: 10_000 });
    cache.set('k', 'tok', 60, new Date(c.now() + 3_600_000).toISOString());
    c.advance(50_000);
    expect(cache.get('k')).toBeUndefined();
  });

  it('caps the margin at half the lifetime', () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now, marginMs: 120_000 });
    cache.set('k', 'tok', 60);
    c.advance(29_999);
    expect(cache.get('k')).toBe('tok');
    c.advance(1);
    expect(cache.get('k')).toBeUndefined();
  });

  it('keys by realm, service, scope and credential', () => {
    const a = TokenCache.key(scope, 'anonymous');
    expect(TokenCache.key({ ...scope, scope: 'repository:a/c:pull' }, 'anonymous')).not.toBe(a);
    expect(TokenCache.key({ ...scope, service: 'other' }, 'anonymous')).not.toBe(a);
    expect(TokenCache.key({ ...scope, realm: 'https://other/token' }, 'anonymous')).not.toBe(a);
    expect(TokenCache.key(scope, credentialFingerprint({ username: 'u', password: 'p' }))).not.toBe(a);
  });

  it('deletes on request and drops expired entries when adding', () => {
    const c = clock();
    const cache = new TokenCache({ now: c.now });
    cache.set('a', 'tok-a', 60);
    cache.delete('a');
    expect(cache.get('a')).toBeUndefined();
    cache.set('b', 'tok-b', 60);
    c.advance(120_000);
    cache.set('c', 'tok-c', 60);
    expect(cache.size).toBe(1);
  });
});

describe('credentialFingerprint', () => {
  it('is anonymous without a secret', () => {
    expect(credentialFingerprint(undefined)).toBe('anonymous');
    expect(credentialFingerprint({})).toBe('anonymous');
  });
  it('is a sha256 that never contains the secret and tells credentials apart', () => {
    const f = credentialFingerprint({ username: 'alice', password: 's3cret-pass' });
    expect(f).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(f).not.toContain('alice');
    expect(f).not.toContain('s3cret');
    expect(credentialFingerprint({ username: 'alice', password: 's3cret-pass' })).toBe(f);
    expect(credentialFingerprint({ username: 'alice', password: 'other' })).not.toBe(f);
    expect(credentialFingerprint({ username: 'alice:s3cret', password: '-pass' })).not.toBe(
      credentialFingerprint({ username: 'alice', password: 's3cret:-pass' }),
    );
  });
});
