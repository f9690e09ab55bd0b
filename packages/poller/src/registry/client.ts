/**
 * Resolves a tag to the digest behind it: HEAD the manifest with the four Accept types, fall back to
 * GET + sha256 of the body as served when HEAD gives no digest, and turn every answer into a typed
 * outcome. Authentication lives in auth.ts, sending (redirects, retries, body caps) in transport.ts.
 * A registry that answers 429 is paused for the rest of the client's life.
 */
import {
  boundMessage,
  DIGEST_PATTERN,
  familiarString,
  type ImageReference,
  type Logger,
  type RegistryChallenge,
  registryApiHost,
  silentLogger,
} from '@kubewatcher/shared';
import { MANIFEST_ACCEPT, pullScope, RegistryAuthenticator } from './auth.ts';
import { TransportConfigError } from './hosts.ts';
import { fail, ResolveAbort, type ResolveContext } from './outcome.ts';
import { credentialFingerprint, hasSecret } from './token-cache.ts';
import {
  type RegistryResponse,
  RegistryTransport,
  RequestFailure,
  type RequestKind,
  type RetryOptions,
  type TransportOptions,
} from './transport.ts';
import type { RegistryClientStats, RegistryCredential, ResolveFailure, ResolveResult } from './types.ts';

export type { RequestKind, RetryOptions };
export { MANIFEST_ACCEPT };

const DIGEST_RE = new RegExp(DIGEST_PATTERN);
/** A registry error code as the distribution spec spells them; anything else in `code` is dropped. */
const ERROR_CODE = /^[A-Z][A-Z_]{0,39}$/;

export interface RegistryClientOptions extends TransportOptions {
  /**
   * Deadline of one resolution (default 15 s): every request it sends, redirect hops, retries, backoff
   * waits and token fetches included.
   */
  timeoutMs?: number;
  /** Renew tokens this long before they expire (default 10 s, at most half a token's life). */
  tokenExpiryMarginMs?: number;
}

export interface ResolveOptions {
  /**
   * An earlier end than the client's timeout (milliseconds on the client's clock), e.g. what is left
   * of a run's budget.
   */
  deadline?: number;
}

/** `errors[].code` of a registry error body: at most three well-formed codes. */
function errorCodes(body: Buffer): string[] {
  if (body.length === 0) return [];
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown }> };
    if (!Array.isArray(parsed?.errors)) return [];
    return parsed.errors
      .map((e) => (typeof e?.code === 'string' && ERROR_CODE.test(e.code) ? e.code : ''))
      .filter(Boolean)
      .slice(0, 3);
  } catch {
    return [];
  }
}

function describeDelay(ms: number | undefined): string {
  if (ms === undefined) return '';
  return ms >= 60_000
    ? ` (retry after ${Math.ceil(ms / 60_000)} min)`
    : ` (retry after ${Math.ceil(ms / 1000)} s)`;
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

export class RegistryClient {
  readonly #now: () => number;
  readonly #log: Logger;
  readonly #transport: RegistryTransport;
  readonly #auth: RegistryAuthenticator;
  readonly #timeoutMs: number;
  /** Registries that answered 429: paused until the client is dropped; `until` is Retry-After, if given. */
  readonly #paused = new Map<string, { until?: number }>();

  constructor(opts: RegistryClientOptions = {}) {
    this.#now = opts.now ?? Date.now;
    this.#log = opts.logger ?? silentLogger;
    this.#transport = new RegistryTransport({ ...opts, logger: this.#log });
    this.#auth = new RegistryAuthenticator({
      transport: this.#transport,
      now: this.#now,
      logger: this.#log,
      ...(opts.tokenExpiryMarginMs === undefined ? {} : { tokenExpiryMarginMs: opts.tokenExpiryMarginMs }),
    });
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
  }

  /** Deadline of one resolution, in milliseconds. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /** Requests sent so far, overall and per host, and the registries paused after a 429. */
  stats(): RegistryClientStats {
    return { ...this.#transport.counts(), pausedHosts: [...this.#paused.keys()].sort() };
  }

  /**
   * The lookups this run will make, so a registry's token service is asked once per credential for
   * the pull scopes of every repository due rather than once per repository.
   */
  planLookups(lookups: Iterable<{ reference: ImageReference; credential?: RegistryCredential }>): void {
    const byKey = new Map<
      string,
      { apiHost: string; credential: RegistryCredential | undefined; repositories: Set<string> }
    >();
    for (const { reference, credential } of lookups) {
      const apiHost = registryApiHost(reference.domain);
      const usable = credential && hasSecret(credential) ? credential : undefined;
      const key = `${apiHost}|${credentialFingerprint(usable)}`;
      const entry = byKey.get(key) ?? { apiHost, credential: usable, repositories: new Set<string>() };
      entry.repositories.add(reference.path);
      byKey.set(key, entry);
    }
    for (const { apiHost, credential, repositories } of byKey.values()) {
      this.#auth.planScopes(apiHost, credential, repositories);
    }
  }

  /**
   * Challenges (scheme, realm, service) learned by earlier runs, so this run fetches each registry's
   * token before its first request rather than after a 401. Each is checked like a live one when used
   * and dropped for the live one when the registry or its token service answers otherwise.
   */
  rememberChallenges(challenges: Iterable<RegistryChallenge>): void {
    this.#auth.remember(challenges);
  }

  /** Closes pooled connections. The client can still be used afterwards (new connections are opened). */
  close(): void {
    this.#transport.close();
  }

  /**
   * The digest behind `ref`'s tag (its digest when it has no tag). Never throws for registry trouble:
   * every failure is a typed result whose message says what happened and what to do, bounded in
   * length and free of control characters, so it can go into a condition or an Event as it is.
   */
  async resolveDigest(
    ref: ImageReference,
    credential?: RegistryCredential,
    opts: ResolveOptions = {},
  ): Promise<ResolveResult> {
    const apiHost = registryApiHost(ref.domain);
    const paused = this.#paused.get(apiHost);
    if (paused) {
      const retryAfterMs = paused.until === undefined ? undefined : Math.max(0, paused.until - this.#now());
      return {
        ok: false,
        reason: 'RateLimited',
        message: `registry ${ref.domain} is paused for the rest of this run after answering 429 Too Many Requests${describeDelay(retryAfterMs)}`,
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      };
    }
    const started = this.#now();
    const deadline = Math.min(started + this.#timeoutMs, opts.deadline ?? Number.POSITIVE_INFINITY);
    let ctx: ResolveContext | undefined;
    try {
      ctx = {
        ref,
        domain: ref.domain,
        apiHost,
        origin: `${this.#transport.hosts.scheme(apiHost)}://${apiHost}`,
        credential: credential && hasSecret(credential) ? credential : undefined,
        scope: pullScope(ref.path),
        deadline,
        budgetMs: Math.max(0, deadline - started),
        log: { registry: ref.domain, repository: ref.path },
      };
      return this.#withChallenge(apiHost, await this.#resolve(ctx));
    } catch (error) {
      let failure: ResolveFailure;
      if (error instanceof ResolveAbort) failure = error.failure;
      else if (error instanceof RequestFailure && ctx) failure = this.#requestFailed(ctx, error);
      else if (error instanceof TransportConfigError) {
        failure = { ok: false, reason: 'RegistryError', message: error.message };
      } else throw error;
      if (ctx?.rateLimit && !failure.rateLimit) failure = { ...failure, rateLimit: ctx.rateLimit };
      failure = { ...failure, message: boundMessage(failure.message) };
      this.#log.debug('registry resolve failed', {
        registry: ref.domain,
        repository: ref.path,
        reason: failure.reason,
      });
      return this.#withChallenge(apiHost, failure);
    }
  }

  /** The result with the challenge the registry is known to send, for the next run to remember. */
  #withChallenge<R extends ResolveResult>(apiHost: string, result: R): R {
    const challenge = this.#auth.knownChallenge(apiHost);
    return challenge ? { ...result, challenge } : result;
  }

  async #resolve(ctx: ResolveContext): Promise<ResolveResult> {
    const reference = ctx.ref.tag ?? ctx.ref.digest ?? 'latest';
    const url = new URL(`${ctx.origin}/v2/${ctx.ref.path}/manifests/${encodeURIComponent(reference)}`);
    const head = await this.#auth.send(ctx, 'head', url);
    if (isSuccess(head.status)) {
      const digest = head.headers.get('docker-content-digest')?.trim();
      if (digest && DIGEST_RE.test(digest)) return this.#success(ctx, digest, head, 'HEAD');
      this.#log.debug('HEAD gave no usable Docker-Content-Digest; reading the manifest with GET', ctx.log);
    } else if (!this.#headRefused(head.status)) {
      throw this.#failureFor(ctx, head, 'HEAD');
    } else {
      this.#log.debug('registry refused HEAD; reading the manifest with GET', {
        ...ctx.log,
        status: head.status,
      });
    }

    const get = await this.#auth.send(ctx, 'get', url);
    if (!isSuccess(get.status) || get.sha256 === undefined) throw this.#failureFor(ctx, get, 'GET');
    // The digest is the hash of the bytes as served; re-serialising the JSON would change it.
    const digest = `sha256:${get.sha256}`;
    const announced = get.headers.get('docker-content-digest')?.trim();
    if (announced?.startsWith('sha256:') && announced !== digest) {
      this.#log.warn(
        'registry announced a digest that does not match the manifest it served; using the hash of the body',
        { ...ctx.log, announced: announced.slice(0, 80), computed: digest },
      );
    }
    return this.#success(ctx, digest, get, 'GET');
  }

  /**
   * A HEAD answer that says "this method is not served here" rather than anything about the manifest:
   * 4xx other than 401/403/404/429, and 501. A real 404 is NotFound, and 5xx after retries is an error.
   */
  #headRefused(status: number): boolean {
    if (status === 501) return true;
    return status >= 400 && status < 500 && ![401, 403, 404, 429].includes(status);
  }

  #success(
    ctx: ResolveContext,
    digest: string,
    res: RegistryResponse,
    method: 'HEAD' | 'GET',
  ): ResolveResult {
    const mediaType = res.headers.get('content-type')?.split(';')[0]?.trim().slice(0, 255);
    return {
      ok: true,
      digest,
      method,
      ...(mediaType ? { mediaType } : {}),
      ...(ctx.rateLimit ? { rateLimit: ctx.rateLimit } : {}),
    };
  }

  /** The outcome of a request that got no usable answer, named by what the request was for. */
  #requestFailed(ctx: ResolveContext, error: RequestFailure): ResolveFailure {
    if (error.rateLimit) ctx.rateLimit = error.rateLimit;
    const what = error.kind === 'token' ? 'token request' : `${error.kind.toUpperCase()} request`;
    switch (error.problem) {
      case 'rateLimited':
        return this.#rateLimited(ctx, error);
      case 'timeout':
        return {
          ok: false,
          reason: 'RegistryUnreachable',
          message: `registry ${ctx.domain}: resolving ${ctx.ref.path} timed out after ${ctx.budgetMs} ms (during a ${what} to ${error.host}; the deadline covers every request, retry and token fetch)`,
        };
      case 'tooLarge':
      case 'crossOriginRedirect':
        return {
          ok: false,
          reason: 'RegistryError',
          message: `registry ${ctx.domain}: ${what} for ${ctx.ref.path} refused: ${error.message}`,
        };
      default:
        return {
          ok: false,
          reason: 'RegistryUnreachable',
          message: `registry ${ctx.domain}: ${error.message}`,
        };
    }
  }

  #rateLimited(ctx: ResolveContext, error: RequestFailure): ResolveFailure {
    const { retryAfterMs } = error;
    this.#paused.set(ctx.apiHost, retryAfterMs === undefined ? {} : { until: this.#now() + retryAfterMs });
    const pull = error.pullLimit ? ' (pull rate limit reached)' : '';
    this.#log.warn('registry answered 429; pausing it for the rest of this run', {
      registry: ctx.domain,
      host: error.host,
      retryAfterMs,
    });
    return {
      ok: false,
      reason: 'RateLimited',
      message: `registry ${ctx.domain} answered 429 Too Many Requests${pull} for ${ctx.ref.path}; no more requests go to it in this run${describeDelay(retryAfterMs)}`,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      ...(ctx.rateLimit ? { rateLimit: ctx.rateLimit } : {}),
    };
  }

  /** The outcome for a final, unsuccessful answer to the manifest request. */
  #failureFor(ctx: ResolveContext, res: RegistryResponse, method: string): ResolveAbort {
    const where = `${ctx.domain}/${ctx.ref.path}`;
    const codes = errorCodes(res.body);
    if (res.status === 404 || codes.includes('MANIFEST_UNKNOWN') || codes.includes('NAME_UNKNOWN')) {
      const what = codes.includes('NAME_UNKNOWN')
        ? `repository ${ctx.ref.path} does not exist on ${ctx.domain}`
        : `${familiarString(ctx.ref)} not found on ${ctx.domain}: the tag or the repository does not exist`;
      return fail('NotFound', what);
    }
    if (res.status === 403 || codes.includes('DENIED')) {
      return fail(
        'Unauthorized',
        ctx.credential
          ? `credentials for ${ctx.domain} are not allowed to pull ${ctx.ref.path} (403 Forbidden): grant the account pull access or use another pullSecret`
          : `registry ${ctx.domain} refused anonymous access to ${ctx.ref.path} (403 Forbidden): add a pullSecret with credentials for ${ctx.domain}`,
      );
    }
    const code = codes.length > 0 ? ` (${codes.join(', ')})` : '';
    if (res.status >= 500) {
      return fail(
        'RegistryError',
        `registry ${ctx.domain} answered ${res.status}${code} to ${method} ${where} ${res.attempts} times`,
      );
    }
    let hint = '';
    if (res.status === 400 && res.url.protocol === 'http:') {
      hint = ': is it an HTTPS registry? plainHttp is set for it';
    }
    return fail(
      'RegistryError',
      `registry ${ctx.domain} answered ${res.status}${code} to ${method} ${where}${hint}`,
    );
  }
}
