/**
 * The registry transport: one request type in, one answer or one typed failure out. It sends through
 * node-fetch (the one HTTP client for registries) within a per-host concurrency cap, follows redirects
 * by hand, retries 5xx and reset connections with jittered backoff, reads bodies within a cap chosen
 * by the request's kind, classifies network errors, and counts every request it sends. It knows
 * nothing about authentication or manifests; auth.ts and client.ts do.
 */
import { createHash } from 'node:crypto';
import type http from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { compareKeys, exponentialDelay, jitter, type Logger, silentLogger } from '@kubewatcher/shared';
import fetch from 'node-fetch';
import { HostLimiter } from './host-limiter.ts';
import { RegistryHosts } from './hosts.ts';
import { type HeaderSource, parseRateLimit, parseRetryAfter } from './rate-limit.ts';
import type { RateLimitInfo, RegistryClientStats, RegistryHostOptions, RequestCounts } from './types.ts';

/** What a request is for: it decides the body cap and how the body is read. */
export type RequestKind = 'head' | 'get' | 'token';

/**
 * Largest bodies read, by what they are. A manifest is hashed as it streams and never held; the OCI
 * distribution spec lets registries refuse manifests above 4 MiB, so twice that is allowed. A token
 * answer is a few KiB of JSON. Error bodies only matter for their `errors[].code`: anything beyond
 * the cap is not read and the codes are taken as unknown.
 */
export const BODY_LIMITS = {
  manifest: 8 * 1024 * 1024,
  token: 64 * 1024,
  error: 16 * 1024,
} as const;

const MAX_REDIRECTS = 5;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
/** Network errors worth another attempt: a pooled connection closed under us, a reset mid-response. */
const TRANSIENT_CODES = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'UND_ERR_SOCKET']);

/**
 * Whether a URL's host is a link-local address written as such (169.254.0.0/16, fe80::/10): where
 * cloud metadata services answer. No registry lives there, so no request goes there, whatever a
 * registry's realm or redirect says. (Names that resolve there are the egress policy's to stop.)
 */
export function isLinkLocal(url: URL): boolean {
  const host = url.hostname.toLowerCase();
  if (/^169\.254\.\d{1,3}\.\d{1,3}$/.test(host)) return true;
  const v6 = host.startsWith('[') ? host.slice(1, -1) : host;
  // fe80::/10 is fe80 to febf; an IPv4-mapped ::ffff:169.254.x.y is the IPv4 range again.
  return /^fe[89ab][0-9a-f]?:/.test(v6) || /^::ffff:(169\.254\.|a9fe:)/.test(v6);
}

/** What the transport passes to fetch: a subset of node-fetch's RequestInit. */
export interface RegistryFetchInit {
  method: string;
  headers: Record<string, string>;
  body?: string;
  redirect: 'manual';
  signal: AbortSignal;
  agent: http.Agent;
}

/** What the transport reads from a response: a subset of node-fetch's Response. */
export interface RegistryFetchResponse {
  status: number;
  headers: HeaderSource;
  /** The body as a stream of chunks (node-fetch gives a Readable); null when there is none. */
  body: AsyncIterable<Uint8Array> | null;
}

/** node-fetch's `fetch`, or a test double with the same shape. */
export type RegistryFetch = (url: string, init: RegistryFetchInit) => Promise<RegistryFetchResponse>;

/** The one request type: everything the transport needs to send, follow, retry and read it. */
export interface RegistryRequest {
  kind: RequestKind;
  method: 'HEAD' | 'GET' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body?: string;
  /**
   * When the work this request serves must be over, in milliseconds on the transport's clock: every
   * redirect hop, retry and backoff sleep fits before it, so one resolution has one deadline.
   */
  deadline: number;
  /**
   * `follow`: any origin, with Authorization dropped once a hop leaves the first origin. `sameOrigin`:
   * a redirect to another origin (https → http included) is a failure; for requests that carry a
   * login in their body or query (token requests), which must reach only the host they were meant for.
   */
  redirects: 'follow' | 'sameOrigin';
  /** Fields for log lines (registry, repository): never credentials. */
  context?: Record<string, string>;
}

export interface RegistryResponse {
  status: number;
  headers: HeaderSource;
  /**
   * The body as read: empty for HEAD and for a 2xx manifest GET (hashed instead); a 2xx token answer
   * whole; any other answer's first BODY_LIMITS.error bytes.
   */
  body: Buffer;
  /** Hex SHA-256 of a 2xx manifest GET's body bytes as served, computed while they streamed. */
  sha256?: string;
  /** Where the final response came from, after redirects. */
  url: URL;
  /** The last rate-limit budget any hop or attempt reported. */
  rateLimit?: RateLimitInfo;
  /** Attempts made (1 unless 5xx answers or reset connections were retried). */
  attempts: number;
}

/** Why a request got no usable answer. */
export type RequestProblem =
  /** No HTTP answer: refused, DNS, TLS, reset after the last retry, too many or invalid redirects. */
  | 'unreachable'
  /** The deadline passed before an answer (or while waiting to retry). */
  | 'timeout'
  /** 429 Too Many Requests. */
  | 'rateLimited'
  /** A manifest or token body over its cap. */
  | 'tooLarge'
  /** A `sameOrigin` request redirected to another origin. */
  | 'crossOriginRedirect';

export class RequestFailure extends Error {
  readonly kind: RequestKind;
  readonly problem: RequestProblem;
  /** The host the failing exchange was with. */
  readonly host: string;
  /** From a 429's Retry-After, in milliseconds. */
  readonly retryAfterMs?: number;
  /** A 429 whose body says it is Docker Hub's pull limit rather than its abuse limit. */
  readonly pullLimit: boolean;
  readonly rateLimit?: RateLimitInfo;

  constructor(
    kind: RequestKind,
    problem: RequestProblem,
    host: string,
    message: string,
    extra: { retryAfterMs?: number; pullLimit?: boolean; rateLimit?: RateLimitInfo } = {},
  ) {
    super(message);
    this.name = 'RequestFailure';
    this.kind = kind;
    this.problem = problem;
    this.host = host;
    if (extra.retryAfterMs !== undefined) this.retryAfterMs = extra.retryAfterMs;
    this.pullLimit = extra.pullLimit ?? false;
    if (extra.rateLimit) this.rateLimit = extra.rateLimit;
  }
}

/** A failed exchange, before retry policy decides whether it is final. */
class ExchangeError extends Error {
  readonly transient: boolean;
  readonly problem: RequestProblem;
  constructor(problem: RequestProblem, message: string, transient = false) {
    super(message);
    this.problem = problem;
    this.transient = transient;
  }
}

export interface RetryOptions {
  /** Attempts in all for a request answered with 5xx or a reset connection (default 3). */
  attempts?: number;
  /**
   * Backoff base: retry n (from 0) waits min(maxDelayMs, baseDelayMs × 2^n), shortened by full jitter
   * (default 200 ms).
   */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface TransportOptions {
  /** HTTP implementation; node-fetch by default. */
  fetch?: RegistryFetch;
  /** Milliseconds since the epoch; Date.now by default. Deadlines are read on this clock. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Uniform in [0, 1), for backoff jitter; Math.random by default. */
  random?: () => number;
  logger?: Logger;
  /** Transport settings by registry host (as written in image references, e.g. '127.0.0.1:5000'). */
  registries?: Record<string, RegistryHostOptions>;
  /** Requests open at once to one host, and keep-alive sockets per host (default 4). */
  maxConcurrencyPerHost?: number;
  retry?: RetryOptions;
  userAgent?: string;
}

function emptyCounts(): RequestCounts {
  return { head: 0, get: 0, token: 0, total: 0 };
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

export class RegistryTransport {
  readonly hosts: RegistryHosts;
  readonly attempts: number;
  readonly #fetch: RegistryFetch;
  readonly #now: () => number;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #limiter: HostLimiter;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #userAgent: string;
  readonly #counts = emptyCounts();
  readonly #byHost = new Map<string, RequestCounts>();

  constructor(opts: TransportOptions = {}) {
    this.#fetch = opts.fetch ?? (fetch as unknown as RegistryFetch);
    this.#now = opts.now ?? Date.now;
    this.#sleep = opts.sleep ?? ((ms) => delay(ms));
    this.#random = opts.random ?? Math.random;
    this.#log = opts.logger ?? silentLogger;
    const perHost = opts.maxConcurrencyPerHost ?? 4;
    this.#limiter = new HostLimiter(perHost);
    this.hosts = new RegistryHosts({ hosts: opts.registries, maxSocketsPerHost: perHost });
    this.attempts = Math.max(1, opts.retry?.attempts ?? 3);
    this.#baseDelayMs = opts.retry?.baseDelayMs ?? 200;
    this.#maxDelayMs = opts.retry?.maxDelayMs ?? 5_000;
    this.#userAgent = opts.userAgent ?? 'kubewatcher-poller';
  }

  /** Requests sent so far, overall and per host (redirect targets and token realms included). */
  counts(): Pick<RegistryClientStats, 'head' | 'get' | 'token' | 'total' | 'byHost'> {
    const byHost: Record<string, RequestCounts> = {};
    for (const [host, counts] of [...this.#byHost].sort(([a], [b]) => compareKeys(a, b))) {
      byHost[host] = { ...counts };
    }
    return { ...this.#counts, byHost };
  }

  /** Closes pooled connections. The transport can still be used afterwards. */
  close(): void {
    this.hosts.close();
  }

  /**
   * Sends one logical request: retried with exponential backoff and full jitter on 5xx (501 aside) and
   * on reset connections, within its deadline. A 429 is a RequestFailure, never retried here: the
   * caller decides how long the registry rests.
   */
  async send(req: RegistryRequest): Promise<RegistryResponse> {
    let rateLimit: RateLimitInfo | undefined;
    for (let attempt = 1; ; attempt++) {
      let res: Omit<RegistryResponse, 'attempts'>;
      try {
        res = await this.#followRedirects(req);
      } catch (error) {
        if (!(error instanceof ExchangeError)) throw error;
        if (error.transient && attempt < this.attempts) {
          await this.#backoff(req, attempt, error.message);
          continue;
        }
        throw new RequestFailure(
          req.kind,
          error.problem,
          req.url.host,
          error.message,
          rateLimit ? { rateLimit } : {},
        );
      }
      rateLimit = res.rateLimit ?? rateLimit;
      if (res.status === 429) {
        const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), this.#now());
        throw new RequestFailure(req.kind, 'rateLimited', res.url.host, `${res.url.host} answered 429`, {
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
          pullLimit: res.body.toString('utf8').includes('pull rate limit'),
          ...(rateLimit ? { rateLimit } : {}),
        });
      }
      if (res.status >= 500 && res.status !== 501 && attempt < this.attempts) {
        await this.#backoff(
          req,
          attempt,
          `${req.method} ${res.url.host}${res.url.pathname} answered ${res.status}`,
        );
        continue;
      }
      return { ...res, ...(rateLimit ? { rateLimit } : {}), attempts: attempt };
    }
  }

  /** Waits before the next attempt, unless the wait would outlast the deadline. */
  async #backoff(req: RegistryRequest, attempt: number, why: string): Promise<void> {
    const ms = Math.round(
      jitter(exponentialDelay(attempt - 1, this.#baseDelayMs, this.#maxDelayMs), 1, this.#random),
    );
    if (this.#now() + ms >= req.deadline) {
      throw new RequestFailure(
        req.kind,
        'timeout',
        req.url.host,
        `${why}; no time is left for another attempt before the deadline`,
      );
    }
    this.#log.warn('registry request failed; retrying', {
      ...req.context,
      attempt,
      delayMs: ms,
      problem: why,
    });
    await this.#sleep(ms);
  }

  /** Follows up to 5 redirects by hand, as the request's redirect policy allows. */
  async #followRedirects(req: RegistryRequest): Promise<Omit<RegistryResponse, 'attempts'>> {
    let current = req.url;
    let method: string = req.method;
    let body = req.body;
    let headers = req.headers;
    let rateLimit: RateLimitInfo | undefined;
    for (let hop = 0; ; hop++) {
      const res = await this.#exchange(req, method, current, headers, body);
      rateLimit = res.rateLimit ?? rateLimit;
      const location = REDIRECT_STATUSES.has(res.status) ? res.headers.get('location') : null;
      if (!location) return { ...res, ...(rateLimit ? { rateLimit } : {}) };
      if (hop >= MAX_REDIRECTS) {
        throw new ExchangeError('unreachable', `more than ${MAX_REDIRECTS} redirects from ${req.url.host}`);
      }
      let next: URL;
      try {
        next = new URL(location, current);
      } catch {
        throw new ExchangeError('unreachable', `${current.host} redirected to an invalid URL`);
      }
      if (next.protocol !== 'http:' && next.protocol !== 'https:') {
        throw new ExchangeError('unreachable', `${current.host} redirected to a ${next.protocol} URL`);
      }
      if (next.origin !== current.origin) {
        if (req.redirects === 'sameOrigin') {
          throw new ExchangeError(
            'crossOriginRedirect',
            `${current.host} redirected a ${req.kind} request to another origin (${next.protocol}//${next.host}), which is never followed`,
          );
        }
        if ('Authorization' in headers) {
          const { Authorization: _dropped, ...rest } = headers;
          headers = rest;
        }
      }
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        const { 'Content-Type': _type, ...rest } = headers;
        headers = rest;
      }
      current = next;
    }
  }

  /** One HTTP exchange, body read within its cap, inside the host's concurrency slot and the deadline. */
  async #exchange(
    req: RegistryRequest,
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: string | undefined,
  ): Promise<Omit<RegistryResponse, 'attempts'>> {
    if (isLinkLocal(url)) {
      throw new ExchangeError('unreachable', `requests to the link-local address ${url.host} are never sent`);
    }
    const agent = this.hosts.agent(url);
    const release = await this.#limiter.acquire(url.host);
    const remaining = req.deadline - this.#now();
    if (remaining <= 0) {
      release();
      throw new ExchangeError('timeout', `no time was left to send a request to ${url.host}`);
    }
    this.#count(req.kind, url.host);
    // A timer of our own rather than AbortSignal.timeout, cleared when the exchange is over: node-fetch
    // keeps listening to the signal of a body left partly unread, and an abort then would hit a
    // stream nobody reads any more.
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), remaining);
    const started = this.#now();
    try {
      const res = await this.#fetch(url.href, {
        method,
        headers: { 'User-Agent': this.#userAgent, ...headers },
        ...(body === undefined ? {} : { body }),
        redirect: 'manual',
        signal: timeout.signal,
        agent,
      });
      const read = await this.#readBody(req.kind, method, url, res);
      this.#log.debug('registry request', {
        method,
        host: url.host,
        path: url.pathname,
        status: res.status,
        ms: this.#now() - started,
      });
      const rateLimit = parseRateLimit(res.headers);
      return { status: res.status, headers: res.headers, ...read, url, ...(rateLimit ? { rateLimit } : {}) };
    } catch (error) {
      if (error instanceof ExchangeError) throw error;
      throw this.#classify(error, url, timeout.signal.aborted);
    } finally {
      clearTimeout(timer);
      release();
    }
  }

  /**
   * Reads a body as its kind requires: nothing for HEAD; a 2xx manifest hashed chunk by chunk; a 2xx
   * token answer whole; any other answer up to the error cap, the rest left unread. Leaving a loop
   * early (a cap reached) destroys the stream, so nothing more is read.
   */
  async #readBody(
    kind: RequestKind,
    method: string,
    url: URL,
    res: RegistryFetchResponse,
  ): Promise<{ body: Buffer; sha256?: string }> {
    if (method === 'HEAD') return { body: Buffer.alloc(0) };
    const ok = isSuccess(res.status);
    if (kind === 'get' && ok) {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of res.body ?? []) {
        size += chunk.byteLength;
        if (size > BODY_LIMITS.manifest) {
          throw new ExchangeError(
            'tooLarge',
            `${url.host} sent a manifest larger than ${BODY_LIMITS.manifest} bytes`,
          );
        }
        hash.update(chunk);
      }
      return { body: Buffer.alloc(0), sha256: hash.digest('hex') };
    }
    if (!res.body) return { body: Buffer.alloc(0) };
    const limit = kind === 'token' && ok ? BODY_LIMITS.token : BODY_LIMITS.error;
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      if (size + chunk.byteLength > limit) {
        if (kind === 'token' && ok) {
          throw new ExchangeError(
            'tooLarge',
            `token service ${url.host} sent an answer larger than ${limit} bytes`,
          );
        }
        // An error body only matters for its codes; the rest is not worth reading.
        // Leaving the loop destroys the stream and with it the connection.
        chunks.push(Buffer.from(chunk.subarray(0, limit - size)));
        break;
      }
      chunks.push(Buffer.from(chunk));
      size += chunk.byteLength;
    }
    return { body: Buffer.concat(chunks) };
  }

  #classify(error: unknown, url: URL, timedOut: boolean): ExchangeError {
    const host = url.host;
    if (timedOut) return new ExchangeError('timeout', `request to ${host} ran out of time`);
    const e = error as { code?: string; type?: string; message?: string; cause?: { code?: string } };
    const code = e.code ?? e.cause?.code ?? '';
    const unreachable = (message: string, transient = false) =>
      new ExchangeError('unreachable', message, transient);
    if (code === 'ECONNREFUSED') return unreachable(`connection to ${host} refused`);
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      return unreachable(`cannot resolve host ${url.hostname}`);
    if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
      return unreachable(`cannot reach ${host} (${code})`);
    }
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME_MISMATCH/.test(code)) {
      return unreachable(
        `TLS certificate of ${host} is not trusted (${code}): give the registry's CA with caFile`,
      );
    }
    if (code === 'EPROTO' || /wrong version number/i.test(e.message ?? '')) {
      return unreachable(`TLS handshake with ${host} failed: if it serves plain HTTP, set plainHttp for it`);
    }
    if (TRANSIENT_CODES.has(code) || /socket hang up|premature close/i.test(e.message ?? '')) {
      return unreachable(`connection to ${host} was reset (${code || 'closed'})`, true);
    }
    return unreachable(`request to ${host} failed (${code || e.type || 'unknown error'})`);
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
  }
}
