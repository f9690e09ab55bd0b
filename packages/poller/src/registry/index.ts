/** The poller's registry client and pull-secret credentials. */

export { MANIFEST_ACCEPT, RegistryAuthenticator } from './auth.ts';
export { type AuthChallenge, findChallenge, parseAuthChallenges } from './challenge.ts';
export {
  RegistryClient,
  type RegistryClientOptions,
  type ResolveOptions,
} from './client.ts';
export {
  findCredential,
  findCredentials,
  type Keyring,
  type KeyringEntry,
  type PullSecret,
  PullSecretError,
  parseConfigKey,
  parseDockerConfigSecret,
  SECRET_TYPE_DOCKER_CONFIG_JSON,
  SECRET_TYPE_DOCKERCFG,
} from './credentials.ts';
export { HostLimiter } from './host-limiter.ts';
export { ANY_HOST, RegistryHosts, TransportConfigError } from './hosts.ts';
export { type HeaderSource, parseRateLimit, parseRetryAfter } from './rate-limit.ts';
export { credentialFingerprint, TokenCache } from './token-cache.ts';
export {
  BODY_LIMITS,
  type RegistryFetch,
  type RegistryFetchInit,
  type RegistryFetchResponse,
  type RegistryRequest,
  type RegistryResponse,
  RegistryTransport,
  RequestFailure,
  type RequestKind,
  type RequestProblem,
  type RetryOptions,
} from './transport.ts';
export type {
  RateLimitInfo,
  RegistryClientStats,
  RegistryCredential,
  RegistryHostOptions,
  RequestCounts,
  ResolveFailure,
  ResolveFailureReason,
  ResolveResult,
  ResolveSuccess,
} from './types.ts';
