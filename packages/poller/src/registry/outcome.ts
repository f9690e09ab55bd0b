/** What one resolution knows about itself, and how it ends early with a typed outcome. */
import type { ImageReference } from '@kubewatcher/shared';
import type { RateLimitInfo, RegistryCredential, ResolveFailure, ResolveFailureReason } from './types.ts';

export interface ResolveContext {
  ref: ImageReference;
  /** Registry name as written ('docker.io', '127.0.0.1:5000'), for messages. */
  domain: string;
  /** Host serving the API ('registry-1.docker.io'). */
  apiHost: string;
  /** Scheme, host and port of the API: the only origin the credential is sent to. */
  origin: string;
  credential: RegistryCredential | undefined;
  scope: string;
  /** When the resolution must be over (transport clock): hops, retries and token fetches included. */
  deadline: number;
  /** How long the whole resolution was given, for messages. */
  budgetMs: number;
  /** Fields for log lines. */
  log: Record<string, string>;
  rateLimit?: RateLimitInfo;
}

/** Ends a resolve early with a typed outcome; caught in resolveDigest, never escapes it. */
export class ResolveAbort extends Error {
  readonly failure: ResolveFailure;
  constructor(failure: ResolveFailure) {
    super(failure.message);
    this.failure = failure;
  }
}

export function fail(
  reason: ResolveFailureReason,
  message: string,
  extra: Partial<ResolveFailure> = {},
): ResolveAbort {
  return new ResolveAbort({ ok: false, reason, message, ...extra });
}
