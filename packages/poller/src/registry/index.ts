/** The poller's registry client and pull-secret credentials. */
export { type AuthChallenge, findChallenge, parseAuthChallenges } from './challenge.ts';
export {
  createRegistryRequestCounter,
  MANIFEST_ACCEPT,
  RegistryClient,
  type RegistryClientOptions,
  type RegistryLogger,
  type RequestKind,
  type RetryOptions,
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
export { type HeaderSource, parseRateLimit, parseRetryAfter } from './rate-limit.ts';
export { credentialFingerprint, TokenCache } from './token-cache.ts';
export type { RegistryFetch, RegistryFetchInit, RegistryFetchResponse } from './transport.ts';
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
