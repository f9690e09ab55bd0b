/** Bearer tokens kept between resolves, so a run asks the token service once per repository and credential. */
import { createHash } from 'node:crypto';
import type { RegistryCredential } from './types.ts';

/** Docker's client treats shorter lifetimes as 60 s, and so does the token spec when none is given. */
export const MIN_TOKEN_LIFETIME_SECONDS = 60;
/**
 * Longest a token is kept, whatever `expires_in` says: a token service's word is not trusted without
 * bound, and a poller run lasts minutes, so an hour is never the limit that matters.
 */
export const MAX_TOKEN_LIFETIME_SECONDS = 3600;
/** Refresh this long before expiry, so a token never runs out between being read and being used. */
export const DEFAULT_EXPIRY_MARGIN_MS = 10_000;

export interface TokenScope {
  realm: string;
  service: string;
  scope: string;
}

/**
 * A stable name for a credential that is not the credential: a SHA-256 over its fields, so cache keys
 * (which may show up in a heap dump or a debug line) never carry a secret. Anonymous is 'anonymous'.
 */
export function credentialFingerprint(credential: RegistryCredential | undefined): string {
  if (!credential || !hasSecret(credential)) return 'anonymous';
  const material = JSON.stringify([
    credential.username ?? '',
    credential.password ?? '',
    credential.identityToken ?? '',
    credential.registryToken ?? '',
  ]);
  return `sha256:${createHash('sha256').update(material).digest('hex')}`;
}

/** Whether the credential carries anything to authenticate with. */
export function hasSecret(credential: RegistryCredential): boolean {
  return Boolean(
    credential.username || credential.password || credential.identityToken || credential.registryToken,
  );
}

interface Entry {
  token: string;
  expiresAt: number;
}

/** Token cache keyed by (realm, service, scope, credential fingerprint), expiring on an injected clock. */
export class TokenCache {
  readonly #entries = new Map<string, Entry>();
  readonly #now: () => number;
  readonly #marginMs: number;

  constructor(opts: { now: () => number; marginMs?: number }) {
    this.#now = opts.now;
    this.#marginMs = opts.marginMs ?? DEFAULT_EXPIRY_MARGIN_MS;
  }

  static key(scope: TokenScope, fingerprint: string): string {
    return JSON.stringify([scope.realm, scope.service, scope.scope, fingerprint]);
  }

  get(key: string): string | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (this.#now() >= entry.expiresAt) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry.token;
  }

  /**
   * Keeps a token until issued_at + expires_in − margin, the lifetime clamped to
   * [MIN_TOKEN_LIFETIME_SECONDS, MAX_TOKEN_LIFETIME_SECONDS]. `issuedAt` (RFC 3339) comes from the token
   * server's clock; one ahead of ours is read as now, so skew never stretches a token's life. The
   * margin never exceeds half the lifetime, so a short-lived token is still reused within its life.
   */
  set(key: string, token: string, expiresInSeconds?: number, issuedAt?: string): number {
    const now = this.#now();
    const lifetimeMs =
      Math.min(
        MAX_TOKEN_LIFETIME_SECONDS,
        Math.max(
          MIN_TOKEN_LIFETIME_SECONDS,
          expiresInSeconds !== undefined && Number.isFinite(expiresInSeconds) ? expiresInSeconds : 0,
        ),
      ) * 1000;
    let start = now;
    if (issuedAt) {
      const parsed = Date.parse(issuedAt);
      if (!Number.isNaN(parsed)) start = Math.min(parsed, now);
    }
    const expiresAt = start + lifetimeMs - Math.min(this.#marginMs, lifetimeMs / 2);
    for (const [k, e] of this.#entries) if (now >= e.expiresAt) this.#entries.delete(k);
    this.#entries.set(key, { token, expiresAt });
    return expiresAt;
  }

  delete(key: string): void {
    this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }
}
