/**
 * Authentication for manifest requests: answer a registry's 401 challenge (Bearer tokens fetched from
 * its realm and cached; Basic credentials sent to the registry), remember each host's challenge so
 * later requests authenticate up front, and keep credentials to the origins they belong to: the
 * registry the secret names, and the token realm that registry names (within its allow-list).
 * A challenge remembered from an earlier run (the WatchedImages' status) stands in for the first 401
 * only where a live one could not send anything further: see rememberedChallengeProblem.
 */
import { type Logger, type RegistryChallenge, silentLogger } from '@kubewatcher/shared';
import type { AuthChallenge } from './challenge.ts';
import { findChallenge, parseAuthChallenges } from './challenge.ts';
import type { RegistryHosts } from './hosts.ts';
import { fail, ResolveAbort, type ResolveContext } from './outcome.ts';
import { credentialFingerprint, TokenCache } from './token-cache.ts';
import { type RegistryResponse, type RegistryTransport, RequestFailure } from './transport.ts';
import type { RegistryCredential } from './types.ts';

/**
 * Most scopes one token request carries. A token that names its grants grows with each (about 80
 * bytes) and goes out on every manifest request, where servers cap headers at about 8 KB.
 */
const MAX_SCOPES_PER_TOKEN = 20;
/** A batched token longer than this is kept for its own resolve only: headers that large get refused. */
const MAX_BATCHED_TOKEN_LENGTH = 6 * 1024;

/** The scope a resolution of `repository` needs. */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

/**
 * The pull scopes a token grants, from the `access` claim of a JWT as distribution's token spec
 * issues them; undefined when the token is not such a JWT (then nothing is known either way).
 */
export function grantedPullScopes(token: string): Set<string> | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as {
      access?: Array<{ type?: unknown; name?: unknown; actions?: unknown }>;
    };
    if (!Array.isArray(claims?.access)) return undefined;
    const granted = new Set<string>();
    for (const a of claims.access) {
      if (
        a?.type === 'repository' &&
        typeof a.name === 'string' &&
        Array.isArray(a.actions) &&
        a.actions.includes('pull')
      ) {
        granted.add(pullScope(a.name));
      }
    }
    return granted;
  } catch {
    return undefined;
  }
}

/** One Accept header with all four manifest types: index and list first, so multi-arch tags are never converted. */
export const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

/** What authorises one request to the registry. */
type Auth = (
  | { kind: 'none' }
  | { kind: 'basic'; header: string }
  | { kind: 'registryToken'; header: string }
  /**
   * `fresh`: fetched by this resolve and known to carry its scope (asked alone, or granted by the
   * token's claims). `batched`: asked for with other repositories' scopes.
   */
  | { kind: 'bearer'; header: string; cacheKey: string; fresh: boolean; batched: boolean }
) & {
  /** Built from a challenge remembered from an earlier run, not one this registry sent in this run. */
  remembered?: AuthChallenge;
};

/** Longest realm and service a remembered challenge may carry (the status schema's limits). */
const MAX_REALM_LENGTH = 1024;
const MAX_SERVICE_LENGTH = 255;

/** A challenge as the status remembers it, or undefined for one that cannot be remembered. */
export function rememberableChallenge(
  apiHost: string,
  challenge: AuthChallenge | undefined,
): RegistryChallenge | undefined {
  if (challenge?.scheme === 'basic') return { registry: apiHost, scheme: 'Basic' };
  if (challenge?.scheme !== 'bearer') return undefined;
  const { realm, service } = challenge.params;
  if (!realm || realm.length > MAX_REALM_LENGTH || !/^https?:\/\//.test(realm)) return undefined;
  if (service !== undefined && service.length > MAX_SERVICE_LENGTH) return undefined;
  return { registry: apiHost, scheme: 'Bearer', realm, ...(service ? { service } : {}) };
}

/** The same scheme, realm and service. */
function sameChallenge(a: AuthChallenge, b: AuthChallenge): boolean {
  return (
    a.scheme === b.scheme &&
    (a.params.realm ?? '') === (b.params.realm ?? '') &&
    (a.params.service ?? '') === (b.params.service ?? '')
  );
}

/**
 * The token realm as a URL the poller may ask on behalf of `registry`, or the RegistryError saying
 * why not: an HTTP(S) URL, on a host the registry's realmHosts allow-list names (when it has one),
 * and never plain HTTP for an HTTPS registry unless that host was named with plainHttp.
 */
export function checkedRealmUrl(
  registry: { domain: string; apiHost: string },
  realm: string,
  hosts: RegistryHosts,
): URL {
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw fail('RegistryError', `registry ${registry.domain} named a token realm that is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw fail('RegistryError', `registry ${registry.domain} named a token realm that is not HTTP(S)`);
  }
  if (!hosts.realmAllowed(registry.apiHost, url.host)) {
    throw fail(
      'RegistryError',
      `registry ${registry.domain} named a token realm on ${url.host}, which is not in its realmHosts allow-list: add it to the registries config if ${registry.domain} really uses it`,
    );
  }
  // An HTTPS registry never downgrades its logins (or the tokens it will trust) to plain HTTP.
  if (
    url.protocol === 'http:' &&
    !hosts.options(registry.apiHost).plainHttp &&
    !hosts.options(url.host).plainHttp
  ) {
    throw fail(
      'RegistryError',
      `registry ${registry.domain} sends token requests to ${url.host} over plain HTTP; set plainHttp for ${url.host} to allow it`,
    );
  }
  return url;
}

/**
 * Why a challenge remembered from an earlier run may not stand in for a live one, or undefined when
 * it may. The memory sits in WatchedImage status, which other identities than the poller's can be
 * allowed to write, so it is trusted only where it cannot send anything anywhere new: its realm must
 * pass every check a live realm passes (checkedRealmUrl), and be on the registry's own origin, or on a
 * host the operator named for this registry in realmHosts, or be Docker Hub's known token service.
 * Anywhere else the run asks the registry, as it would without a memory.
 */
export function rememberedChallengeProblem(
  registry: { domain: string; apiHost: string; origin: string },
  challenge: AuthChallenge,
  hosts: RegistryHosts,
): string | undefined {
  if (challenge.scheme === 'basic') return undefined; // Basic credentials only ever go to the registry.
  if (challenge.scheme !== 'bearer' || !challenge.params.realm) return 'not a Bearer or Basic challenge';
  let url: URL;
  try {
    url = checkedRealmUrl(registry, challenge.params.realm, hosts);
  } catch (error) {
    if (error instanceof ResolveAbort) return error.failure.message;
    throw error;
  }
  if (url.origin === registry.origin || hosts.realmListed(registry.apiHost, url.host)) return undefined;
  return `its realm ${url.host} is neither on ${registry.apiHost} nor named in the registry's realmHosts`;
}

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
  logger?: Logger;
  /** Renew tokens this long before they expire (default 10 s, at most half a token's life). */
  tokenExpiryMarginMs?: number;
}

export class RegistryAuthenticator {
  readonly #transport: RegistryTransport;
  readonly #tokens: TokenCache;
  /**
   * The challenge each registry host sent in this run (or a remembered one that worked), so later
   * resolves authenticate up front.
   */
  readonly #challenges = new Map<string, AuthChallenge>();
  /** Challenges remembered from earlier runs and not yet tried, by registry host (remember). */
  readonly #remembered = new Map<string, AuthChallenge>();
  /** Token fetches in flight, so concurrent resolves of one repository share one. */
  readonly #tokenFlights = new Map<string, Promise<IssuedToken>>();
  /**
   * The first manifest exchange with each host, which learns whether and how it wants authentication.
   * Concurrent resolves wait for it rather than each collecting its own 401.
   */
  readonly #firstContacts = new Map<string, Promise<void>>();
  /** The pull scopes due this run, by registry host and credential fingerprint (planScopes). */
  readonly #plannedScopes = new Map<string, Set<string>>();
  /** Registry hosts whose token service granted fewer scopes than one request asked for. */
  readonly #oneScopePerToken = new Set<string>();
  readonly #log: Logger;

  constructor(opts: AuthenticatorOptions) {
    this.#transport = opts.transport;
    this.#tokens = new TokenCache({ now: opts.now, marginMs: opts.tokenExpiryMarginMs });
    this.#log = opts.logger ?? silentLogger;
  }

  /**
   * Tells the authenticator which repositories this run will ask each registry for, with which
   * credential, so one token request can carry the pull scopes of them all (repeated `scope`
   * parameters, which Docker Hub's and distribution's token servers accept).
   */
  planScopes(
    apiHost: string,
    credential: RegistryCredential | undefined,
    repositories: Iterable<string>,
  ): void {
    const key = `${apiHost}|${credentialFingerprint(credential)}`;
    const scopes = this.#plannedScopes.get(key) ?? new Set<string>();
    for (const repository of repositories) scopes.add(pullScope(repository));
    this.#plannedScopes.set(key, scopes);
  }

  /**
   * Challenges learned in earlier runs (read back from the WatchedImages' status), so a run can fetch
   * its token before its first request instead of collecting a 401 for the realm and service. Each is
   * checked again when first used (rememberedChallengeProblem); one that does not work is dropped
   * and the registry's live challenge answered instead, once.
   */
  remember(challenges: Iterable<RegistryChallenge>): void {
    for (const c of challenges) {
      const host = c.registry.toLowerCase();
      if (this.#challenges.has(host)) continue;
      const params: Record<string, string> = {};
      if (c.realm) params.realm = c.realm;
      if (c.service) params.service = c.service;
      this.#remembered.set(host, { scheme: c.scheme.toLowerCase(), params });
    }
  }

  /** The challenge the registry host is known to send (this run's, or a remembered one that worked). */
  knownChallenge(apiHost: string): RegistryChallenge | undefined {
    return rememberableChallenge(apiHost, this.#challenges.get(apiHost));
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

  /**
   * Authorisation to send before any 401, from what this registry asked for earlier in the run, else
   * from what it asked for in an earlier run (tried by the first contact only: the others wait).
   */
  async #upfrontAuth(ctx: ResolveContext): Promise<Auth> {
    const challenge = this.#challenges.get(ctx.apiHost);
    if (!challenge) return this.#rememberedAuth(ctx);
    if (challenge.scheme === 'basic') {
      const c = ctx.credential;
      return c && (c.username || c.password)
        ? { kind: 'basic', header: basicHeader(c.username ?? '', c.password ?? '') }
        : { kind: 'none' };
    }
    return this.#bearerAuth(ctx, challenge, false);
  }

  /**
   * Authorisation from the challenge remembered for this registry, when it passes the checks; none
   * (so the registry's live challenge is asked for) when there is none, it fails them, or its token
   * service does not issue a token.
   */
  async #rememberedAuth(ctx: ResolveContext): Promise<Auth> {
    const host = ctx.apiHost.toLowerCase();
    const remembered = this.#remembered.get(host);
    if (!remembered) return { kind: 'none' };
    this.#remembered.delete(host);
    const problem = rememberedChallengeProblem(ctx, remembered, this.#transport.hosts);
    if (problem) {
      this.#forget(ctx, problem);
      return { kind: 'none' };
    }
    // Provisionally the registry's challenge; a 401 naming another replaces it (#answerChallenge).
    this.#challenges.set(ctx.apiHost, remembered);
    if (remembered.scheme === 'basic') {
      const c = ctx.credential;
      return c && (c.username || c.password)
        ? { kind: 'basic', header: basicHeader(c.username ?? '', c.password ?? ''), remembered }
        : { kind: 'none' };
    }
    try {
      return { ...(await this.#bearerAuth(ctx, remembered, false)), remembered };
    } catch (error) {
      // A paused registry is asked nothing more; anything else means the memory may be stale.
      if (error instanceof RequestFailure && error.problem === 'rateLimited') throw error;
      if (!(error instanceof ResolveAbort) && !(error instanceof RequestFailure)) throw error;
      this.#challenges.delete(ctx.apiHost);
      this.#forget(ctx, `its token service did not issue a token (${error.message.slice(0, 200)})`);
      return { kind: 'none' };
    }
  }

  /** Says once per registry why its remembered challenge is not used. */
  #forget(ctx: ResolveContext, why: string): void {
    this.#log.info('not using the challenge remembered for this registry; asking the registry', {
      registry: ctx.domain,
      why,
    });
  }

  /** The next authorisation to try after a 401, or the Unauthorized outcome. */
  async #answerChallenge(ctx: ResolveContext, res: RegistryResponse, used: Auth): Promise<Auth> {
    const challenges = parseAuthChallenges(res.headers.get('www-authenticate'));
    const bearer = findChallenge(challenges, 'bearer');
    const basic = findChallenge(challenges, 'basic');
    if (bearer?.params.realm) {
      this.#challenges.set(ctx.apiHost, bearer);
      if (used.remembered && !sameChallenge(used.remembered, bearer)) {
        // The registry moved its token service since the memory was written: answer what it says now.
        this.#forget(ctx, 'the registry answered 401 with another challenge');
        return this.#bearerAuth(ctx, bearer, false);
      }
      if (used.kind === 'registryToken') throw rejected(ctx, 'the registry token was refused');
      if (used.kind === 'bearer') {
        // A token this resolve fetched was refused: the credential lacks access. A cached one may
        // have expired or been revoked: drop it and try once with a fresh one.
        if (used.fresh) throw rejected(ctx, 'a token was issued but the registry refused it');
        if (used.batched)
          this.#batchingFailed(ctx, 'the registry refused a token asked for with several scopes');
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
    const fingerprint = credentialFingerprint(c);
    const keyOf = (scope: string) => TokenCache.key({ realm, service, scope }, fingerprint);
    const cacheKey = keyOf(ctx.scope);
    if (!forceFresh) {
      const cached = this.#tokens.get(cacheKey);
      if (cached)
        return { kind: 'bearer', header: `Bearer ${cached}`, cacheKey, fresh: false, batched: false };
    }
    let flight = this.#tokenFlights.get(cacheKey);
    if (!flight) {
      // With the run's other repositories on this registry, unless this is a retry after a refusal
      // or the token service has shown it grants one scope per request.
      const scopes = forceFresh ? [ctx.scope] : this.#batch(ctx, fingerprint, keyOf);
      const fetched = this.#fetchToken(ctx, realm, service, scopes, keyOf);
      for (const scope of scopes) {
        const key = keyOf(scope);
        const mine = fetched.then((tokens) => {
          const issued = tokens.get(scope);
          if (issued === undefined) throw new NotGranted();
          return issued;
        });
        // Waiters that are not this resolve may never read theirs: keep their rejections handled.
        mine.catch(() => undefined);
        const tracked = mine.finally(() => {
          if (this.#tokenFlights.get(key) === tracked) this.#tokenFlights.delete(key);
        });
        tracked.catch(() => undefined);
        this.#tokenFlights.set(key, tracked);
      }
      flight = this.#tokenFlights.get(cacheKey)!;
    }
    try {
      const issued = await flight;
      return {
        kind: 'bearer',
        header: `Bearer ${issued.token}`,
        cacheKey,
        fresh: issued.verified,
        batched: issued.batched,
      };
    } catch (error) {
      // Asked for with other scopes and not granted: ask for this one alone.
      if (error instanceof NotGranted) return this.#bearerAuth(ctx, challenge, true);
      throw error;
    }
  }

  /** The scopes to ask for with this resolve's: the run's other repositories on the registry not yet cached. */
  #batch(ctx: ResolveContext, fingerprint: string, keyOf: (scope: string) => string): string[] {
    const planned = this.#plannedScopes.get(`${ctx.apiHost}|${fingerprint}`);
    // An identity-token grant is a POST with one scope field; only GET logins are batched.
    if (
      !planned?.has(ctx.scope) ||
      this.#oneScopePerToken.has(ctx.apiHost) ||
      ctx.credential?.identityToken
    ) {
      return [ctx.scope];
    }
    const scopes = [ctx.scope];
    for (const scope of planned) {
      if (scopes.length >= MAX_SCOPES_PER_TOKEN) break;
      const key = keyOf(scope);
      if (scope !== ctx.scope && !this.#tokenFlights.has(key) && this.#tokens.get(key) === undefined)
        scopes.push(scope);
    }
    return scopes;
  }

  /**
   * Asks the token service for a token carrying `scopes` and caches it under each scope it grants
   * (all of them when the token does not say). Resolves to the token by granted scope.
   */
  async #fetchToken(
    ctx: ResolveContext,
    realm: string,
    service: string,
    scopes: string[],
    keyOf: (scope: string) => string,
  ): Promise<Map<string, IssuedToken>> {
    const realmUrl = checkedRealmUrl(ctx, realm, this.#transport.hosts);
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
      for (const scope of scopes) url.searchParams.append('scope', scope);
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
    const tokens = new Map<string, IssuedToken>();
    const batched = scopes.length > 1;
    const granted = batched ? grantedPullScopes(token) : undefined;
    const tooLong = batched && token.length > MAX_BATCHED_TOKEN_LENGTH;
    if (tooLong)
      this.#batchingFailed(ctx, `a token for ${scopes.length} scopes is ${token.length} bytes long`);
    for (const scope of scopes) {
      if (granted && !granted.has(scope)) continue;
      if (tooLong && scope !== ctx.scope) continue;
      this.#tokens.set(keyOf(scope), token, expiresIn, issuedAt);
      tokens.set(scope, { token, verified: !batched || granted !== undefined, batched });
    }
    if (tokens.size < scopes.length) {
      this.#batchingFailed(
        ctx,
        `token service ${realmUrl.host} granted ${tokens.size} of ${scopes.length} scopes asked for`,
      );
    }
    return tokens;
  }

  /** Stops asking this registry's token service for several scopes at once, and says so once. */
  #batchingFailed(ctx: ResolveContext, why: string): void {
    if (this.#oneScopePerToken.has(ctx.apiHost)) return;
    this.#oneScopePerToken.add(ctx.apiHost);
    this.#log.info('asking this registry for one token per repository from now on', {
      registry: ctx.domain,
      why,
    });
  }
}

/** A token as issued for one scope. */
interface IssuedToken {
  token: string;
  /** Known to carry the scope: asked for alone, or named in the token's claims. */
  verified: boolean;
  batched: boolean;
}

/** A batched token request did not grant this resolve's scope. */
class NotGranted extends Error {}

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
