/**
 * Resolves a tag to the digest behind it (./README.md explains it): HEAD the manifest with the four
 * Accept types, answer 401 challenges (Bearer tokens, cached; Basic), fall back to GET + sha256 of the
 * raw body when HEAD gives no digest, and keep each registry's limits: a per-host concurrency cap,
 * retries with jittered backoff on 5xx, and a pause for the rest of the run after a 429.
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import {
  DIGEST_PATTERN,
  familiarString,
  type ImageReference,
  type Logger,
  registryApiHost,
} from '@kubewatcher/shared';
import fetch from 'node-fetch';
import { Counter, type Registry } from 'prom-client';
import winston from 'winston';
import { type AuthChallenge, findChallenge, parseAuthChallenges } from './challenge.ts';
import { HostLimiter } from './host-limiter.ts';
import { type HeaderSource, parseRateLimit, parseRetryAfter } from './rate-limit.ts';
import { credentialFingerprint, hasSecret, TokenCache } from './token-cache.ts';
import { type RegistryFetch, RegistryTransport, TransportConfigError } from './transport.ts';
import type {
  RateLimitInfo,
  RegistryClientStats,
  RegistryCredential,
  RegistryHostOptions,
  RequestCounts,
  ResolveFailure,
  ResolveFailureReason,
  ResolveResult,
} from './types.ts';

/** One Accept header with all four manifest types: index and list first, so multi-arch tags are never converted. */
export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** The OCI distribution spec lets registries refuse manifests above 4 MiB; allow twice that. */
const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;
const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const DIGEST_RE = new RegExp(DIGEST_PATTERN);
/** Network errors worth another attempt: a pooled connection closed under us, a reset mid-response. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET']);

export type RequestKind = 'head' | 'get' | 'token';
export type RegistryLogger = Pick<Logger, 'debug' | 'info' | 'warn'>;

export interface RetryOptions {
  /** Attempts in all for a request answered with 5xx or a reset connection (default 3). */
  attempts?: number;
  /** Backoff base: attempt n waits random() × min(maxDelayMs, baseDelayMs × 2^n) (default 200 ms). */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface RegistryClientOptions {
  /** HTTP implementation; node-fetch by default. */
  fetch?: RegistryFetch;
  /** Milliseconds since the epoch; Date.now by default. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Uniform in [0, 1), for backoff jitter; Math.random by default. */
  random?: () => number;
  logger?: RegistryLogger;
  /** Transport settings by registry host (as written in image references, e.g. '127.0.0.1:5000'). */
  registries?: Record<string, RegistryHostOptions>;
  /** Timeout of each HTTP request, body included (default 15 s). */
  timeoutMs?: number;
  /** Requests open at once to one host, and keep-alive sockets per host (default 4). */
  maxConcurrencyPerHost?: number;
  retry?: RetryOptions;
  /** Renew tokens this long before they expire (default 10 s, at most half a token's life). */
  tokenExpiryMarginMs?: number;
  /** Counts every request sent; create it with createRegistryRequestCounter. */
  requestCounter?: Counter<'host' | 'kind'>;
  userAgent?: string;
}

/** What authorises one request to the registry. */
type Auth =
  | { kind: 'none' }
  | { kind: 'basic'; header: string }
  | { kind: 'registryToken'; header: string }
  | { kind: 'bearer'; header: string; cacheKey: string; fresh: boolean };

interface ResolveContext {
  ref: ImageReference;
  /** Registry name as written ('docker.io', '127.0.0.1:5000'), for messages. */
  domain: string;
  /** Host serving the API ('registry-1.docker.io'). */
  apiHost: string;
  credential: RegistryCredential | undefined;
  scope: string;
  rateLimit?: RateLimitInfo;
}

interface HttpResponse {
  status: number;
  headers: HeaderSource;
  body: Buffer;
  /** Where the final response came from, after redirects. */
  url: URL;
}

/** Ends a resolve early with a typed outcome; caught in resolveDigest, never escapes it. */
class ResolveAbort extends Error {
  readonly failure: ResolveFailure;
  constructor(failure: ResolveFailure) {
    super(failure.message);
    this.failure = failure;
  }
}

/** A request that got no HTTP answer. */
class NetworkFailure extends Error {
  readonly transient: boolean;
  constructor(message: string, transient: boolean) {
    super(message);
    this.transient = transient;
  }
}

function fail(
  reason: ResolveFailureReason,
  message: string,
  extra: Partial<ResolveFailure> = {},
): ResolveAbort {
  return new ResolveAbort({ ok: false, reason, message, ...extra });
}

function emptyCounts(): RequestCounts {
  return { head: 0, get: 0, token: 0, total: 0 };
}

function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/** `errors[].code` of a registry error body, if it has one. */
function errorCodes(body: Buffer): string[] {
  if (body.length === 0 || body.length > 64 * 1024) return [];
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: unknown }> };
    return (parsed.errors ?? []).map((e) => (typeof e.code === 'string' ? e.code : '')).filter(Boolean);
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

/**
 * Counter for the client's requests, labelled by host and kind (head, get, token). Registered in
 * `register` when given (the poller's metrics registry), else in none.
 */
export function createRegistryRequestCounter(register?: Registry): Counter<'host' | 'kind'> {
  return new Counter({
    name: 'kubewatcher_registry_requests_total',
    help: 'HTTP requests sent to container registries and their token services, by host and kind',
    labelNames: ['host', 'kind'] as const,
    registers: register ? [register] : [],
  });
}

export class RegistryClient {
  readonly #fetch: RegistryFetch;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #log: RegistryLogger;
  readonly #transport: RegistryTransport;
  readonly #limiter: HostLimiter;
  readonly #tokens: TokenCache;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #counter: Counter<'host' | 'kind'> | undefined;
  readonly #userAgent: string;
  readonly #counts = emptyCounts();
  readonly #byHost = new Map<string, RequestCounts>();
  /** Registries that answered 429: paused until the client is dropped; `until` is Retry-After, if given. */
  readonly #paused = new Map<string, { until?: number }>();
  /** The last challenge each registry host sent, so later resolves authenticate up front. */
  readonly #challenges = new Map<string, AuthChallenge>();
  /** Token fetches in flight, so concurrent resolves of one repository share one. */
  readonly #tokenFlights = new Map<string, Promise<string>>();
  /**
   * The first manifest exchange with each host, which learns whether and how it wants authentication.
   * Concurrent resolves wait for it rather than each collecting its own 401.
   */
  readonly #firstContacts = new Map<string, Promise<void>>();

  constructor(opts: RegistryClientOptions = {}) {
    this.#fetch = opts.fetch ?? (fetch as unknown as RegistryFetch);
    this.#now = opts.now ?? Date.now;
    this.#sleep = opts.sleep ?? ((ms) => delay(ms));
    this.#random = opts.random ?? Math.random;
    this.#log = opts.logger ?? winston.createLogger({ silent: true });
    const perHost = opts.maxConcurrencyPerHost ?? 4;
    this.#limiter = new HostLimiter(perHost);
    this.#transport = new RegistryTransport({ hosts: opts.registries, maxSocketsPerHost: perHost });
    this.#tokens = new TokenCache({ now: this.#now, marginMs: opts.tokenExpiryMarginMs });
    this.#timeoutMs = opts.timeoutMs ?? 15_000;
    this.#attempts = Math.max(1, opts.retry?.attempts ?? 3);
    this.#baseDelayMs = opts.retry?.baseDelayMs ?? 200;
    this.#maxDelayMs = opts.retry?.maxDelayMs ?? 5_000;
    this.#counter = opts.requestCounter;
    this.#userAgent = opts.userAgent ?? 'kubewatcher-poller';
  }

  /** Requests sent so far, overall and per host, and the registries paused after a 429. */
  stats(): RegistryClientStats {
    const byHost: Record<string, RequestCounts> = {};
    for (const [host, counts] of [...this.#byHost].sort(([a], [b]) => a.localeCompare(b))) {
      byHost[host] = { ...counts };
    }
    return { ...this.#counts, byHost, pausedHosts: [...this.#paused.keys()].sort() };
  }

  /** Closes pooled connections. The client can still be used afterwards (new connections are opened). */
  close(): void {
    this.#transport.close();
  }

  /**
   * The digest behind `ref`'s tag (its digest when it has no tag). Never throws for registry trouble:
   * every failure is a typed result whose message says what happened and what to do.
   */
  async resolveDigest(ref: ImageReference, credential?: RegistryCredential): Promise<ResolveResult> {
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
    const ctx: ResolveContext = {
      ref,
      domain: ref.domain,
      apiHost,
      credential: credential && hasSecret(credential) ? credential : undefined,
      scope: `repository:${ref.path}:pull`,
    };
    try {
      return await this.#resolve(ctx);
    } catch (error) {
      let failure: ResolveFailure;
      if (error instanceof ResolveAbort) failure = error.failure;
      else if (error instanceof TransportConfigError) {
        failure = { ok: false, reason: 'RegistryError', message: error.message };
      } else throw error;
      if (ctx.rateLimit && !failure.rateLimit) failure = { ...failure, rateLimit: ctx.rateLimit };
      this.#log.debug('registry resolve failed', {
        registry: ctx.domain,
        repository: ctx.ref.path,
        reason: failure.reason,
      });
      return failure;
    }
  }

  async #resolve(ctx: ResolveContext): Promise<ResolveResult> {
    const reference = ctx.ref.tag ?? ctx.ref.digest ?? 'latest';
    const url = new URL(
      `${this.#transport.scheme(ctx.apiHost)}://${ctx.apiHost}/v2/${ctx.ref.path}/manifests/${encodeURIComponent(reference)}`,
    );
    const head = await this.#authorized(ctx, 'head', url);
    if (isSuccess(head.status)) {
      const digest = head.headers.get('docker-content-digest')?.trim();
      if (digest && DIGEST_RE.test(digest)) return this.#success(ctx, digest, head, 'HEAD');
      this.#log.debug('HEAD gave no usable Docker-Content-Digest; reading the manifest with GET', {
        registry: ctx.domain,
        repository: ctx.ref.path,
      });
    } else if (!this.#headRefused(head.status)) {
      throw this.#failureFor(ctx, head, 'HEAD');
    } else {
      this.#log.debug('registry refused HEAD; reading the manifest with GET', {
        registry: ctx.domain,
        repository: ctx.ref.path,
        status: head.status,
      });
    }

    const get = await this.#authorized(ctx, 'get', url);
    if (!isSuccess(get.status)) throw this.#failureFor(ctx, get, 'GET');
    // The digest is the hash of the bytes as served; re-serialising the JSON would change it.
    const digest = `sha256:${createHash('sha256').update(get.body).digest('hex')}`;
    const announced = get.headers.get('docker-content-digest')?.trim();
    if (announced?.startsWith('sha256:') && announced !== digest) {
      this.#log.warn(
        'registry announced a digest that does not match the manifest it served; using the hash of the body',
        {
          registry: ctx.domain,
          repository: ctx.ref.path,
          announced,
          computed: digest,
        },
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

  #success(ctx: ResolveContext, digest: string, res: HttpResponse, method: 'HEAD' | 'GET'): ResolveResult {
    const mediaType = res.headers.get('content-type')?.split(';')[0]?.trim();
    return {
      ok: true,
      digest,
      method,
      ...(mediaType ? { mediaType } : {}),
      ...(ctx.rateLimit ? { rateLimit: ctx.rateLimit } : {}),
    };
  }

  /** The outcome for a final, unsuccessful answer to the manifest request. */
  #failureFor(ctx: ResolveContext, res: HttpResponse, method: string): ResolveAbort {
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
        `registry ${ctx.domain} answered ${res.status}${code} to ${method} ${where} ${this.#attempts} times`,
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

  /** Sends a manifest request, answering 401 challenges until it is authorised or cannot be. */
  async #authorized(ctx: ResolveContext, kind: 'head' | 'get', url: URL): Promise<HttpResponse> {
    let endFirstContact: (() => void) | undefined;
    const firstContact = this.#firstContacts.get(ctx.apiHost);
    if (firstContact) await firstContact;
    else if (!this.#challenges.has(ctx.apiHost)) {
      this.#firstContacts.set(
        ctx.apiHost,
        new Promise<void>((done) => {
          endFirstContact = done;
        }),
      );
    }
    try {
      let auth = await this.#upfrontAuth(ctx);
      // At most: anonymous → fresh token → (cached token refused) another fresh token.
      for (let round = 0; round < 3; round++) {
        const headers: Record<string, string> = { Accept: MANIFEST_ACCEPT };
        if (auth.kind !== 'none') headers.Authorization = auth.header;
        const res = await this.#request(ctx, kind, kind === 'head' ? 'HEAD' : 'GET', url, headers);
        if (res.status !== 401) return res;
        auth = await this.#answerChallenge(ctx, res, auth);
      }
      throw fail('Unauthorized', `registry ${ctx.domain} kept answering 401 for ${ctx.ref.path}`);
    } finally {
      endFirstContact?.();
    }
  }

  /** Authorisation to send before any 401, from what this registry asked for earlier in the run. */
  async #upfrontAuth(ctx: ResolveContext): Promise<Auth> {
    const challenge = this.#challenges.get(ctx.apiHost);
    if (!challenge) return { kind: 'none' };
    if (challenge.scheme === 'basic') {
      const c = ctx.credential;
      return c && (c.username || c.password)
        ? { kind: 'basic', header: basicHeader(c.username ?? '', c.password ?? '') }
        : { kind: 'none' };
    }
    return this.#bearerAuth(ctx, challenge, false);
  }

  /** The next authorisation to try after a 401, or the Unauthorized outcome. */
  async #answerChallenge(ctx: ResolveContext, res: HttpResponse, used: Auth): Promise<Auth> {
    const challenges = parseAuthChallenges(res.headers.get('www-authenticate'));
    const bearer = findChallenge(challenges, 'bearer');
    const basic = findChallenge(challenges, 'basic');
    if (bearer?.params.realm) {
      this.#challenges.set(ctx.apiHost, bearer);
      if (used.kind === 'registryToken') throw this.#rejected(ctx, 'the registry token was refused');
      if (used.kind === 'bearer') {
        // A token this resolve fetched was refused: the credential lacks access. A cached one may
        // have expired or been revoked: drop it and try once with a fresh one.
        if (used.fresh) throw this.#rejected(ctx, 'a token was issued but the registry refused it');
        this.#tokens.delete(used.cacheKey);
        return this.#bearerAuth(ctx, bearer, true);
      }
      return this.#bearerAuth(ctx, bearer, false);
    }
    if (basic) {
      this.#challenges.set(ctx.apiHost, basic);
      const c = ctx.credential;
      if (used.kind === 'basic') throw this.#rejected(ctx, '401 Unauthorized');
      if (c && (c.username || c.password)) {
        return { kind: 'basic', header: basicHeader(c.username ?? '', c.password ?? '') };
      }
      throw this.#rejected(ctx, '401 Unauthorized');
    }
    const schemes = challenges.map((c) => c.scheme).join(', ');
    throw fail(
      'Unauthorized',
      schemes
        ? `registry ${ctx.domain} asks for authentication Kubewatcher does not speak (${schemes}) for ${ctx.ref.path}`
        : `registry ${ctx.domain} answered 401 for ${ctx.ref.path} without saying how to authenticate`,
    );
  }

  /** Unauthorized, worded for whether credentials were sent. */
  #rejected(ctx: ResolveContext, detail: string): ResolveAbort {
    if (!ctx.credential) {
      return fail(
        'Unauthorized',
        `registry ${ctx.domain} refused anonymous access to ${ctx.ref.path}: add a pullSecret (kubernetes.io/dockerconfigjson) with credentials for ${ctx.domain}`,
      );
    }
    return fail(
      'Unauthorized',
      `credentials for ${ctx.domain} were rejected for ${ctx.ref.path} (${detail}): check the username, password or token in the pullSecret and that the account may pull this repository`,
    );
  }

  /** Bearer authorisation for this resolve's scope: a registry token, a cached token or a new one. */
  async #bearerAuth(ctx: ResolveContext, challenge: AuthChallenge, forceFresh: boolean): Promise<Auth> {
    const c = ctx.credential;
    if (c?.registryToken) return { kind: 'registryToken', header: `Bearer ${c.registryToken}` };
    const realm = challenge.params.realm ?? '';
    const service = challenge.params.service ?? '';
    const cacheKey = TokenCache.key({ realm, service, scope: ctx.scope }, credentialFingerprint(c));
    if (!forceFresh) {
      const cached = this.#tokens.get(cacheKey);
      if (cached) return { kind: 'bearer', header: `Bearer ${cached}`, cacheKey, fresh: false };
    }
    let flight = this.#tokenFlights.get(cacheKey);
    if (!flight) {
      flight = this.#fetchToken(ctx, realm, service, cacheKey).finally(() =>
        this.#tokenFlights.delete(cacheKey),
      );
      this.#tokenFlights.set(cacheKey, flight);
    }
    const token = await flight;
    return { kind: 'bearer', header: `Bearer ${token}`, cacheKey, fresh: true };
  }

  /** Asks the token service for a pull token and caches it. */
  async #fetchToken(ctx: ResolveContext, realm: string, service: string, cacheKey: string): Promise<string> {
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm);
    } catch {
      throw fail('RegistryError', `registry ${ctx.domain} named a token realm that is not a URL`);
    }
    if (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:') {
      throw fail('RegistryError', `registry ${ctx.domain} named a token realm that is not HTTP(S)`);
    }
    const c = ctx.credential;
    if (
      c &&
      realmUrl.protocol === 'http:' &&
      !this.#transport.options(ctx.apiHost).plainHttp &&
      !this.#transport.options(realmUrl.host).plainHttp
    ) {
      throw fail(
        'RegistryError',
        `registry ${ctx.domain} sends logins to ${realmUrl.host} over plain HTTP; set plainHttp for ${realmUrl.host} to allow sending credentials there`,
      );
    }
    const query = new URLSearchParams();
    if (service) query.set('service', service);
    query.set('scope', ctx.scope);

    let res: HttpResponse | undefined;
    if (c?.identityToken) {
      // OAuth2 refresh-token grant (docker's identity tokens); servers without it answer 404 or 405.
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: c.identityToken,
        client_id: 'kubewatcher',
        scope: ctx.scope,
      });
      if (service) form.set('service', service);
      res = await this.#request(
        ctx,
        'token',
        'POST',
        realmUrl,
        {
          'Content-Type': 'application/x-www-form-urlencoded',
          Accept: 'application/json',
        },
        form.toString(),
      );
      if (res.status === 404 || res.status === 405) res = undefined;
    }
    if (!res) {
      const url = new URL(realmUrl);
      for (const [k, v] of query) url.searchParams.set(k, v);
      const headers: Record<string, string> = { Accept: 'application/json' };
      // An identity-token login keeps its secret in the token, not the password (ACR, docker login --identity-token).
      if (c?.identityToken && !c.password)
        headers.Authorization = basicHeader(c.username ?? '', c.identityToken);
      else if (c && (c.username || c.password))
        headers.Authorization = basicHeader(c.username ?? '', c.password ?? '');
      res = await this.#request(ctx, 'token', 'GET', url, headers);
    }

    if (res.status === 401 || res.status === 403) {
      if (!c) {
        throw fail(
          'Unauthorized',
          `registry ${ctx.domain} refused anonymous access to ${ctx.ref.path} (its token service ${realmUrl.host} answered ${res.status}): add a pullSecret (kubernetes.io/dockerconfigjson) with credentials for ${ctx.domain}`,
        );
      }
      throw this.#rejected(ctx, `token service ${realmUrl.host} answered ${res.status}`);
    }
    if (!isSuccess(res.status)) {
      throw fail('RegistryError', `token service ${realmUrl.host} of ${ctx.domain} answered ${res.status}`);
    }
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown; issued_at?: unknown };
    try {
      body = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw fail(
        'RegistryError',
        `token service ${realmUrl.host} of ${ctx.domain} answered with something that is not JSON`,
      );
    }
    const token =
      typeof body.token === 'string' && body.token
        ? body.token
        : typeof body.access_token === 'string'
          ? body.access_token
          : '';
    if (!token)
      throw fail('RegistryError', `token service ${realmUrl.host} of ${ctx.domain} answered without a token`);
    const expiresIn = typeof body.expires_in === 'number' ? body.expires_in : undefined;
    const issuedAt = typeof body.issued_at === 'string' ? body.issued_at : undefined;
    this.#tokens.set(cacheKey, token, expiresIn, issuedAt);
    return token;
  }

  /**
   * One logical request: retried with exponential backoff and full jitter on 5xx (501 aside) and on
   * reset connections; a 429 pauses the registry and ends the resolve.
   */
  async #request(
    ctx: ResolveContext,
    kind: RequestKind,
    method: string,
    url: URL,
    headers: Record<string, string>,
    body?: string,
  ): Promise<HttpResponse> {
    for (let attempt = 1; ; attempt++) {
      let res: HttpResponse;
      try {
        res = await this.#followRedirects(kind, method, url, headers, body);
      } catch (error) {
        if (!(error instanceof NetworkFailure)) throw error;
        if (error.transient && attempt < this.#attempts) {
          await this.#backoff(ctx, attempt, error.message);
          continue;
        }
        throw fail('RegistryUnreachable', `registry ${ctx.domain}: ${error.message}`);
      }
      const rateLimit = parseRateLimit(res.headers);
      if (rateLimit) ctx.rateLimit = rateLimit;
      if (res.status === 429) throw this.#rateLimited(ctx, res);
      if (res.status >= 500 && res.status !== 501 && attempt < this.#attempts) {
        await this.#backoff(
          ctx,
          attempt,
          `${method} ${res.url.host}${res.url.pathname} answered ${res.status}`,
        );
        continue;
      }
      return res;
    }
  }

  async #backoff(ctx: ResolveContext, attempt: number, why: string): Promise<void> {
    const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (attempt - 1));
    const ms = Math.round(this.#random() * ceiling);
    this.#log.warn('registry request failed; retrying', {
      registry: ctx.domain,
      repository: ctx.ref.path,
      attempt,
      delayMs: ms,
      problem: why,
    });
    await this.#sleep(ms);
  }

  #rateLimited(ctx: ResolveContext, res: HttpResponse): ResolveAbort {
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), this.#now());
    this.#paused.set(ctx.apiHost, retryAfterMs === undefined ? {} : { until: this.#now() + retryAfterMs });
    const pull = res.body.toString('utf8').includes('pull rate limit') ? ' (pull rate limit reached)' : '';
    this.#log.warn('registry answered 429; pausing it for the rest of this run', {
      registry: ctx.domain,
      host: res.url.host,
      retryAfterMs,
    });
    return fail(
      'RateLimited',
      `registry ${ctx.domain} answered 429 Too Many Requests${pull} for ${ctx.ref.path}; no more requests go to it in this run${describeDelay(retryAfterMs)}`,
      {
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
        ...(ctx.rateLimit ? { rateLimit: ctx.rateLimit } : {}),
      },
    );
  }

  /** Follows up to 5 redirects by hand; Authorization never goes to another origin than the first. */
  async #followRedirects(
    kind: RequestKind,
    method: string,
    url: URL,
    headers: Record<string, string>,
    body?: string,
  ): Promise<HttpResponse> {
    let current = url;
    let currentMethod = method;
    let currentBody = body;
    let currentHeaders = headers;
    for (let hop = 0; ; hop++) {
      const res = await this.#send(kind, currentMethod, current, currentHeaders, currentBody);
      if (!REDIRECT_STATUSES.has(res.status)) return res;
      const location = res.headers.get('location');
      if (!location) return res;
      if (hop >= MAX_REDIRECTS)
        throw new NetworkFailure(`more than ${MAX_REDIRECTS} redirects from ${url.host}`, false);
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new NetworkFailure(`${current.host} redirected to an invalid URL`, false);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new NetworkFailure(`${current.host} redirected to a ${next.protocol} URL`, false);
      }
      if (next.origin !== current.origin && 'Authorization' in currentHeaders) {
        const { Authorization: _dropped, ...rest } = currentHeaders;
        currentHeaders = rest;
      }
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && currentMethod === 'POST')) {
        currentMethod = 'GET';
        currentBody = undefined;
        const { 'Content-Type': _type, ...rest } = currentHeaders;
        currentHeaders = rest;
      }
      current = next;
    }
  }

  /** One HTTP exchange, body read in full, within the host's concurrency slot and the timeout. */
  async #send(
    kind: RequestKind,
    method: string,
    url: URL,
    headers: Record<string, string>,
    body?: string,
  ): Promise<HttpResponse> {
    const agent = this.#transport.agent(url);
    const release = await this.#limiter.acquire(url.host);
    this.#count(kind, url.host);
    const signal = AbortSignal.timeout(this.#timeoutMs);
    const started = this.#now();
    try {
      const res = await this.#fetch(url.href, {
        method,
        headers: { 'User-Agent': this.#userAgent, ...headers },
        ...(body === undefined ? {} : { body }),
        redirect: 'manual',
        signal,
        agent,
        size: MAX_MANIFEST_BYTES,
      });
      const bytes = method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(await res.arrayBuffer());
      this.#log.debug('registry request', {
        method,
        host: url.host,
        path: url.pathname,
        status: res.status,
        ms: this.#now() - started,
      });
      return { status: res.status, headers: res.headers, body: bytes, url };
    } catch (error) {
      throw this.#networkFailure(error, url, signal);
    } finally {
      release();
    }
  }

  #networkFailure(error: unknown, url: URL, signal: AbortSignal): NetworkFailure {
    if (signal.aborted) {
      return new NetworkFailure(`request to ${url.host} timed out after ${this.#timeoutMs} ms`, false);
    }
    const e = error as { code?: string; type?: string; message?: string; cause?: { code?: string } };
    const code = e.code ?? e.cause?.code ?? '';
    const host = url.host;
    if (e.type === 'max-size')
      return new NetworkFailure(`${host} sent a manifest larger than ${MAX_MANIFEST_BYTES} bytes`, false);
    if (code === 'ECONNREFUSED') return new NetworkFailure(`connection to ${host} refused`, false);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      return new NetworkFailure(`cannot resolve host ${url.hostname}`, false);
    if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
      return new NetworkFailure(`cannot reach ${host} (${code})`, false);
    }
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME_MISMATCH/.test(code)) {
      return new NetworkFailure(
        `TLS certificate of ${host} is not trusted (${code}): give the registry's CA with caFile`,
        false,
      );
    }
    if (code === 'EPROTO' || /wrong version number/i.test(e.message ?? '')) {
      return new NetworkFailure(
        `TLS handshake with ${host} failed: if it serves plain HTTP, set plainHttp for it`,
        false,
      );
    }
    if (TRANSIENT_CODES.has(code) || /socket hang up|premature close/i.test(e.message ?? '')) {
      return new NetworkFailure(`connection to ${host} was reset (${code || 'closed'})`, true);
    }
    return new NetworkFailure(`request to ${host} failed (${code || e.type || 'unknown error'})`, false);
  }

  #count(kind: RequestKind, host: string): void {
    this.#counts[kind]++;
    this.#counts.total++;
    let counts = this.#byHost.get(host);
    if (!counts) {
      counts = emptyCounts();
      this.#byHost.set(host, counts);
    }
    counts[kind]++;
    counts.total++;
    this.#counter?.inc({ host, kind });
  }
}
