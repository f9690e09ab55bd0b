/**
 * Authentication for manifest requests: answer a registry's 401 challenge (Bearer tokens fetched from
 * its realm and cached; Basic credentials sent to the registry), remember each host's challenge so
 * later requests authenticate up front, and keep credentials to the origins they belong to: the
 * registry the secret names, and the token realm that registry names (within its allow-list).
 */
import type { AuthChallenge } from './challenge.ts';
import { findChallenge, parseAuthChallenges } from './challenge.ts';
import { fail, type ResolveAbort, type ResolveContext } from './outcome.ts';
import { credentialFingerprint, TokenCache } from './token-cache.ts';
import type { RegistryResponse, RegistryTransport } from './transport.ts';

/** One Accept header with all four manifest types: index and list first, so multi-arch tags are never converted. */
export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** What authorises one request to the registry. */
type Auth =
  | { kind: 'none' }
  | { kind: 'basic'; header: string }
  | { kind: 'registryToken'; header: string }
  | { kind: 'bearer'; header: string; cacheKey: string; fresh: boolean };

/** What may follow `Bearer ` in a header: visible ASCII, no spaces or line breaks. */
const HEADER_SAFE = /^[\x21-\x7e]+$/;

function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
}

function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

export interface AuthenticatorOptions {
  transport: RegistryTransport;
  now: () => number;
  /** Renew tokens this long before they expire (default 10 s, at most half a token's life). */
  tokenExpiryMarginMs?: number;
}

export class RegistryAuthenticator {
  readonly #transport: RegistryTransport;
  readonly #tokens: TokenCache;
  /** The last challenge each registry host sent, so later resolves authenticate up front. */
  readonly #challenges = new Map<string, AuthChallenge>();
  /** Token fetches in flight, so concurrent resolves of one repository share one. */
  readonly #tokenFlights = new Map<string, Promise<string>>();
  /**
   * The first manifest exchange with each host, which learns whether and how it wants authentication.
   * Concurrent resolves wait for it rather than each collecting its own 401.
   */
  readonly #firstContacts = new Map<string, Promise<void>>();

  constructor(opts: AuthenticatorOptions) {
    this.#transport = opts.transport;
    this.#tokens = new TokenCache({ now: opts.now, marginMs: opts.tokenExpiryMarginMs });
  }

  /** Sends a manifest request, answering 401 challenges until it is authorised or cannot be. */
  async send(ctx: ResolveContext, kind: 'head' | 'get', url: URL): Promise<RegistryResponse> {
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
        const res = await this.#transport.send({
          kind,
          method: kind === 'head' ? 'HEAD' : 'GET',
          url,
          headers,
          deadline: ctx.deadline,
          redirects: 'follow',
          context: ctx.log,
        });
        if (res.rateLimit) ctx.rateLimit = res.rateLimit;
        if (res.status !== 401) return res;
        if (res.url.origin !== ctx.origin) {
          // A redirect target asking for a login is not the registry: its challenge is not answered.
          throw fail(
            'Unauthorized',
            `${res.url.protocol}//${res.url.host}, where ${ctx.domain} redirected the request for ${ctx.ref.path}, answered 401; credentials for ${ctx.domain} are only sent to ${ctx.domain} and its token service`,
          );
        }
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
  async #answerChallenge(ctx: ResolveContext, res: RegistryResponse, used: Auth): Promise<Auth> {
    const challenges = parseAuthChallenges(res.headers.get('www-authenticate'));
    const bearer = findChallenge(challenges, 'bearer');
    const basic = findChallenge(challenges, 'basic');
    if (bearer?.params.realm) {
      this.#challenges.set(ctx.apiHost, bearer);
      if (used.kind === 'registryToken') throw rejected(ctx, 'the registry token was refused');
      if (used.kind === 'bearer') {
        // A token this resolve fetched was refused: the credential lacks access. A cached one may
        // have expired or been revoked: drop it and try once with a fresh one.
        if (used.fresh) throw rejected(ctx, 'a token was issued but the registry refused it');
        this.#tokens.delete(used.cacheKey);
        return this.#bearerAuth(ctx, bearer, true);
      }
      return this.#bearerAuth(ctx, bearer, false);
    }
    if (basic) {
      this.#challenges.set(ctx.apiHost, basic);
      const c = ctx.credential;
      if (used.kind === 'basic') throw rejected(ctx, '401 Unauthorized');
      if (c && (c.username || c.password)) {
        return { kind: 'basic', header: basicHeader(c.username ?? '', c.password ?? '') };
      }
      throw rejected(ctx, '401 Unauthorized');
    }
    // Scheme names are the registry's words: only token characters, and a few of them.
    const schemes = challenges
      .slice(0, 5)
      .map((c) => c.scheme.slice(0, 32))
      .join(', ');
    throw fail(
      'Unauthorized',
      schemes
        ? `registry ${ctx.domain} asks for authentication Kubewatcher does not speak (${schemes}) for ${ctx.ref.path}`
        : `registry ${ctx.domain} answered 401 for ${ctx.ref.path} without saying how to authenticate`,
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

  /** The realm as a URL the poller may ask, or the RegistryError saying why not. */
  #realmUrl(ctx: ResolveContext, realm: string): URL {
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw fail('RegistryError', `registry ${ctx.domain} named a token realm that is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw fail('RegistryError', `registry ${ctx.domain} named a token realm that is not HTTP(S)`);
    }
    const hosts = this.#transport.hosts;
    if (!hosts.realmAllowed(ctx.apiHost, url.host)) {
      throw fail(
        'RegistryError',
        `registry ${ctx.domain} named a token realm on ${url.host}, which is not in its realmHosts allow-list: add it to the registries config if ${ctx.domain} really uses it`,
      );
    }
    // An HTTPS registry never downgrades its logins (or the tokens it will trust) to plain HTTP.
    if (
      url.protocol === 'http:' &&
      !hosts.options(ctx.apiHost).plainHttp &&
      !hosts.options(url.host).plainHttp
    ) {
      throw fail(
        'RegistryError',
        `registry ${ctx.domain} sends token requests to ${url.host} over plain HTTP; set plainHttp for ${url.host} to allow it`,
      );
    }
    return url;
  }

  /** Asks the token service for a pull token and caches it. */
  async #fetchToken(ctx: ResolveContext, realm: string, service: string, cacheKey: string): Promise<string> {
    const realmUrl = this.#realmUrl(ctx, realm);
    const c = ctx.credential;
    const tokenRequest = (
      method: 'GET' | 'POST',
      url: URL,
      headers: Record<string, string>,
      body?: string,
    ): Promise<RegistryResponse> =>
      this.#transport.send({
        kind: 'token',
        method,
        url,
        headers: { Accept: 'application/json', ...headers },
        ...(body === undefined ? {} : { body }),
        deadline: ctx.deadline,
        // A login never follows a redirect to another origin, https → http included.
        redirects: 'sameOrigin',
        context: ctx.log,
      });

    let res: RegistryResponse | undefined;
    if (c?.identityToken) {
      // OAuth2 refresh-token grant (docker's identity tokens); servers without it answer 404 or 405.
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: c.identityToken,
        client_id: 'kubewatcher',
        scope: ctx.scope,
      });
      if (service) form.set('service', service);
      res = await tokenRequest(
        'POST',
        realmUrl,
        { 'Content-Type': 'application/x-www-form-urlencoded' },
        form.toString(),
      );
      if (res.status === 404 || res.status === 405) res = undefined;
    }
    if (!res) {
      const url = new URL(realmUrl);
      if (service) url.searchParams.set('service', service);
      url.searchParams.set('scope', ctx.scope);
      const headers: Record<string, string> = {};
      // An identity-token login keeps its secret in the token, not the password (ACR, docker login --identity-token).
      if (c?.identityToken && !c.password)
        headers.Authorization = basicHeader(c.username ?? '', c.identityToken);
      else if (c && (c.username || c.password))
        headers.Authorization = basicHeader(c.username ?? '', c.password ?? '');
      res = await tokenRequest('GET', url, headers);
    }
    if (res.rateLimit) ctx.rateLimit = res.rateLimit;

    if (res.status === 401 || res.status === 403) {
      if (!c) {
        throw fail(
          'Unauthorized',
          `registry ${ctx.domain} refused anonymous access to ${ctx.ref.path} (its token service ${realmUrl.host} answered ${res.status}): add a pullSecret (kubernetes.io/dockerconfigjson) with credentials for ${ctx.domain}`,
        );
      }
      throw rejected(ctx, `token service ${realmUrl.host} answered ${res.status}`);
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
      typeof body?.token === 'string' && body.token
        ? body.token
        : typeof body?.access_token === 'string'
          ? body.access_token
          : '';
    if (!token)
      throw fail('RegistryError', `token service ${realmUrl.host} of ${ctx.domain} answered without a token`);
    if (!HEADER_SAFE.test(token)) {
      throw fail(
        'RegistryError',
        `token service ${realmUrl.host} of ${ctx.domain} answered with a token that is not printable ASCII`,
      );
    }
    const expiresIn = typeof body.expires_in === 'number' ? body.expires_in : undefined;
    const issuedAt = typeof body.issued_at === 'string' ? body.issued_at : undefined;
    this.#tokens.set(cacheKey, token, expiresIn, issuedAt);
    return token;
  }
}

/** Unauthorized, worded for whether credentials were sent. */
function rejected(ctx: ResolveContext, detail: string): ResolveAbort {
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
