/** What the registry client takes and returns; the poller turns these into conditions and Events. */
import type { RegistryChallenge } from '@kubewatcher/shared';

/** Credentials for one registry, as found in a docker config (never logged, never used as a cache key). */
export interface RegistryCredential {
  username?: string;
  password?: string;
  /** OAuth2 refresh token (`identitytoken` in a docker config), exchanged at the token realm. */
  identityToken?: string;
  /** A bearer token sent as is (`registrytoken` in a docker config). */
  registryToken?: string;
}

/** Docker Hub's pull budget as reported by `ratelimit-limit` / `ratelimit-remaining`. */
export interface RateLimitInfo {
  limit: number;
  remaining: number;
  /** Window of the budget in seconds (`;w=21600`). */
  windowSeconds?: number;
  /** Who is being counted (`docker-ratelimit-source`: an IP address or a /64). */
  source?: string;
}

/** Why a tag could not be resolved; these are the `Resolved` condition's reasons. */
export type ResolveFailureReason =
  | 'Unauthorized'
  | 'NotFound'
  | 'RateLimited'
  | 'RegistryUnreachable'
  | 'RegistryError';

export interface ResolveSuccess {
  ok: true;
  /** Digest of the manifest (or index) behind the tag: what `image: repo:tag@digest` pins. */
  digest: string;
  mediaType?: string;
  /** The request that produced the digest: HEAD normally, GET when HEAD gave no digest. */
  method: 'HEAD' | 'GET';
  rateLimit?: RateLimitInfo;
  /** How the registry asks to authenticate, when it does: what the next run may remember. */
  challenge?: RegistryChallenge;
}

export interface ResolveFailure {
  ok: false;
  reason: ResolveFailureReason;
  /** For people: names the registry and repository and says what to do. Never holds a secret. */
  message: string;
  /** When a 429 said how long to wait (Retry-After), or how long the registry stays paused. */
  retryAfterMs?: number;
  rateLimit?: RateLimitInfo;
  /** How the registry asks to authenticate, when that became known before the failure. */
  challenge?: RegistryChallenge;
}

export type ResolveResult = ResolveSuccess | ResolveFailure;

/** Per-registry transport settings, keyed by host (`host:port` as written in image references). */
export interface RegistryHostOptions {
  /** Speak plain HTTP. Never assumed, not even for localhost: it must be asked for by name. */
  plainHttp?: boolean;
  /** Accept any TLS certificate. Off by default; for throwaway test registries only. */
  insecureSkipVerify?: boolean;
  /** Path of a PEM file with extra CA certificates trusted for this host (added to the system roots). */
  caFile?: string;
  /** The same as PEM text, e.g. read from a Secret. */
  ca?: string;
  /**
   * Hosts (`host[:port]`) this registry's token realm may be on. When set, a challenge naming a realm
   * elsewhere is refused, so a registry cannot make the poller fetch arbitrary URLs. Under the `*` key
   * it applies to every registry without its own list.
   */
  realmHosts?: string[];
}

/** HTTP requests sent, by kind. `total` is the sum of the others. */
export interface RequestCounts {
  head: number;
  get: number;
  token: number;
  total: number;
}

/** Requests overall (head, get, token, total), per host, and the paused registries. */
export interface RegistryClientStats extends RequestCounts {
  /** Keyed by the host a request went to (`host:port`), redirect targets and token realms included. */
  byHost: Record<string, RequestCounts>;
  /** Registries paused after a 429, for the rest of this client's life. */
  pausedHosts: string[];
}
