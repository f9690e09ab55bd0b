/**
 * Pull-secret credentials: parse `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg` Secrets
 * into keyrings, and pick the credential for an image the way kubelet does
 * (pkg/credentialprovider/keyring.go), so the poller uses what the node would pull with.
 */
import { dockerConfigKeys, type ImageReference } from '@kubewatcher/shared';
import type { RegistryCredential } from './types.ts';

export const SECRET_TYPE_DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
export const SECRET_TYPE_DOCKERCFG = 'kubernetes.io/dockercfg';
const KEY_DOCKER_CONFIG_JSON = '.dockerconfigjson';
const KEY_DOCKERCFG = '.dockercfg';

/** One `auths` entry, indexed the way kubelet indexes it. */
export interface KeyringEntry {
  /** The key as written in the docker config (a registry host or URL; not secret). */
  server: string;
  /** Normalised key: host[:port] plus an optional path, no scheme, no /v1/ or /v2/: 'quay.io/acme'. */
  key: string;
  /** Lower-cased host with port, possibly a glob ('*.example.com:5000'). */
  host: string;
  /** '' or a path starting with '/' and without a trailing '/'. */
  path: string;
  credential: RegistryCredential;
}

export interface Keyring {
  /** Where the entries came from, for messages: 'namespace/name' of the Secret. */
  source: string;
  entries: KeyringEntry[];
}

/** The parts of a Secret this module reads (a V1Secret from @kubernetes/client-node fits). */
export interface PullSecret {
  /** How messages name the Secret ('namespace/name'); else taken from metadata. */
  name?: string;
  metadata?: { name?: string; namespace?: string };
  type?: string;
  /** Base64 values, as the API server returns them. */
  data?: Record<string, string>;
}

/** A pull secret that cannot be used. The message names the Secret and the field, never its content. */
export class PullSecretError extends Error {
  readonly secret: string;
  readonly field: string;

  constructor(secret: string, field: string, problem: string) {
    super(`pull secret ${secret}: ${field} ${problem}`);
    this.name = 'PullSecretError';
    this.secret = secret;
    this.field = field;
  }
}

function secretName(secret: PullSecret): string {
  if (secret.name) return secret.name;
  const name = secret.metadata?.name ?? '(unnamed)';
  return secret.metadata?.namespace ? `${secret.metadata.namespace}/${name}` : name;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function decodeBase64(value: unknown, secret: string, field: string): string {
  if (typeof value !== 'string') throw new PullSecretError(secret, field, 'is not a string');
  const compact = value.replace(/\s+/g, '');
  if (!BASE64.test(compact) || compact.length % 4 === 1) {
    throw new PullSecretError(secret, field, 'is not valid base64');
  }
  return Buffer.from(compact, 'base64').toString('utf8');
}

function optionalString(
  entry: Record<string, unknown>,
  name: string,
  secret: string,
  field: string,
): string | undefined {
  const value = entry[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new PullSecretError(secret, `${field}.${name}`, 'is not a string');
  return value;
}

/**
 * Splits a docker config key as kubelet's BasicDockerKeyring.Add does: drop the scheme, read host and
 * path, treat a leading /v1/ or /v2/ as the bare host. Hosts are compared case-insensitively.
 */
export function parseConfigKey(server: string): { key: string; host: string; path: string } {
  let rest = server.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, '');
  rest = rest.replace(/[?#].*$/, '');
  const slash = rest.indexOf('/');
  const host = (slash === -1 ? rest : rest.slice(0, slash)).replace(/^[^@]*@/, '').toLowerCase();
  let path = slash === -1 ? '' : rest.slice(slash);
  if (/^\/v[12](\/|$)/.test(path)) path = path.slice(3);
  path = path.replace(/\/+$/, '');
  return { key: host + path, host, path };
}

/** The `auths` map of a docker config, decoded into entries; `field` names where it sits, for errors. */
function readAuths(auths: unknown, secret: string, field: string): KeyringEntry[] {
  if (auths === null || typeof auths !== 'object' || Array.isArray(auths)) {
    throw new PullSecretError(secret, field, 'is not a JSON object of registries');
  }
  const entries: KeyringEntry[] = [];
  for (const [server, raw] of Object.entries(auths as Record<string, unknown>)) {
    const where = `${field}[${JSON.stringify(server)}]`;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw new PullSecretError(secret, where, 'is not a JSON object');
    }
    const entry = raw as Record<string, unknown>;
    const credential: RegistryCredential = {};
    const username = optionalString(entry, 'username', secret, where);
    const password = optionalString(entry, 'password', secret, where);
    if (username !== undefined) credential.username = username;
    if (password !== undefined) credential.password = password;
    const auth = optionalString(entry, 'auth', secret, where);
    if (auth !== undefined) {
      // kubelet: base64(user:pass), split at the first ':' (passwords may hold colons); overrides both.
      const decoded = decodeBase64(auth, secret, `${where}.auth`);
      const colon = decoded.indexOf(':');
      if (colon === -1) {
        throw new PullSecretError(secret, `${where}.auth`, 'must be base64 of "username:password"');
      }
      credential.username = decoded.slice(0, colon);
      credential.password = decoded.slice(colon + 1);
    }
    const identityToken = optionalString(entry, 'identitytoken', secret, where);
    const registryToken = optionalString(entry, 'registrytoken', secret, where);
    if (identityToken !== undefined) credential.identityToken = identityToken;
    if (registryToken !== undefined) credential.registryToken = registryToken;
    entries.push({ server, ...parseConfigKey(server), credential });
  }
  return entries;
}

function parseJson(text: string, secret: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the input: never pass it on.
    throw new PullSecretError(secret, field, 'is not valid JSON');
  }
}

/**
 * Reads a pull secret into a keyring. `kubernetes.io/dockerconfigjson` holds `.dockerconfigjson` =
 * `{"auths": {...}}`; the legacy `kubernetes.io/dockercfg` holds `.dockercfg` = the map itself. A secret
 * without a type is read by whichever key it has; any other type is refused, as kubelet ignores it.
 */
export function parseDockerConfigSecret(secret: PullSecret): Keyring {
  const name = secretName(secret);
  const data = secret.data ?? {};
  let format: 'json' | 'cfg';
  if (secret.type === SECRET_TYPE_DOCKER_CONFIG_JSON) format = 'json';
  else if (secret.type === SECRET_TYPE_DOCKERCFG) format = 'cfg';
  else if (secret.type === undefined || secret.type === '') {
    if (KEY_DOCKER_CONFIG_JSON in data) format = 'json';
    else if (KEY_DOCKERCFG in data) format = 'cfg';
    else
      throw new PullSecretError(name, 'data', `has neither ${KEY_DOCKER_CONFIG_JSON} nor ${KEY_DOCKERCFG}`);
  } else {
    throw new PullSecretError(
      name,
      'type',
      `is ${secret.type}; pull secrets must be ${SECRET_TYPE_DOCKER_CONFIG_JSON} or ${SECRET_TYPE_DOCKERCFG}`,
    );
  }
  const key = format === 'json' ? KEY_DOCKER_CONFIG_JSON : KEY_DOCKERCFG;
  const field = `data[${JSON.stringify(key)}]`;
  const raw = data[key];
  if (raw === undefined || raw === '') throw new PullSecretError(name, field, 'is missing or empty');
  const config = parseJson(decodeBase64(raw, name, field), name, field);
  if (format === 'cfg') return { source: name, entries: readAuths(config, name, field) };
  if (config === null || typeof config !== 'object' || Array.isArray(config)) {
    throw new PullSecretError(name, field, 'is not a JSON object');
  }
  const auths = (config as Record<string, unknown>).auths;
  if (auths === undefined) throw new PullSecretError(name, `${field}.auths`, 'is missing');
  return { source: name, entries: readAuths(auths, name, `${field}.auths`) };
}

/** Go's path.Match for one host component: '*', '?', '[a-z]' / '[^a-z]' classes and '\' escapes. */
function globToRegExp(glob: string): RegExp | undefined {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') out += '.*';
    else if (c === '?') out += '.';
    else if (c === '\\') {
      i++;
      if (i >= glob.length) return undefined;
      out += escapeRegExp(glob[i]!);
    } else if (c === '[') {
      const end = glob.indexOf(']', i + 2);
      if (end === -1) return undefined;
      let body = glob.slice(i + 1, end);
      let negate = false;
      if (body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      if (body === '') return undefined;
      out += `[${negate ? '^' : ''}${body.replace(/[\]\\^]/g, '\\$&')}]`;
      i = end;
    } else out += escapeRegExp(c);
  }
  try {
    return new RegExp(`^${out}$`);
  } catch {
    return undefined;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

/** host[:port] → [parts split at '.', port]; bracketed IPv6 keeps its colons. */
function splitHost(host: string): [parts: string[], port: string] {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(host);
  const name = m?.[1] ?? host;
  return [name.startsWith('[') ? [name] : name.split('.'), m?.[2] ?? ''];
}

/** kubelet's URLsMatch: same port, same number of host parts, each part a glob match, path a prefix. */
function keyMatches(entry: KeyringEntry, host: string, path: string): boolean {
  const [globParts, globPort] = splitHost(entry.host);
  const [parts, port] = splitHost(host);
  if (globPort !== port || globParts.length !== parts.length) return false;
  // A prefix of whole path segments: 'quay.io/acme' serves 'quay.io/acme/web', not 'quay.io/acmecorp'.
  if (entry.path !== '' && path !== entry.path && !path.startsWith(`${entry.path}/`)) return false;
  return globParts.every((glob, i) => {
    const target = parts[i]!;
    // Bracketed IPv6 addresses are literal; '[' there opens no character class.
    if (glob.startsWith('[') && glob.endsWith(']') && glob.includes(':')) return glob === target;
    if (!/[*?[\\]/.test(glob)) return glob === target;
    return globToRegExp(glob)?.test(target) ?? false;
  });
}

interface Candidate {
  entry: KeyringEntry;
  /** Index of the matching alias in dockerConfigKeys (0 = the image's own domain). */
  alias: number;
  order: number;
}

/**
 * Every credential that applies to the image, in the order kubelet would try them: keys sorted in
 * reverse lexical order (so 'quay.io/acme/web' before 'quay.io/acme' before 'quay.io', a literal host
 * before a glob), then the image's own domain before its Docker Hub aliases, then keyring order.
 */
export function findCredentials(keyrings: Keyring[], ref: ImageReference): RegistryCredential[] {
  const path = `/${ref.path}`;
  const aliases = dockerConfigKeys(ref.domain).map((k) => parseConfigKey(k).host);
  const hub = aliases[0] === 'docker.io';
  const candidates: Candidate[] = [];
  let order = 0;
  for (const keyring of keyrings) {
    for (const entry of keyring.entries) {
      order++;
      for (let alias = 0; alias < aliases.length; alias++) {
        if (keyMatches(entry, aliases[alias]!, path)) {
          candidates.push({ entry, alias, order });
          break;
        }
      }
    }
  }
  // Docker Hub aliases sort as 'docker.io' so their paths compete on specificity alone.
  const sortKey = (c: Candidate): string => (hub ? `docker.io${c.entry.path}` : c.entry.key);
  candidates.sort((a, b) => {
    const ka = sortKey(a);
    const kb = sortKey(b);
    if (ka !== kb) return ka < kb ? 1 : -1;
    return a.alias - b.alias || a.order - b.order;
  });
  return candidates.map((c) => c.entry.credential);
}

/** The credential kubelet would try first for this image, or undefined (pull anonymously). */
export function findCredential(keyrings: Keyring[], ref: ImageReference): RegistryCredential | undefined {
  return findCredentials(keyrings, ref)[0];
}
