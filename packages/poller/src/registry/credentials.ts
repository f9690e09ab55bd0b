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
  // A loop, not /\/+$/: that regexp rescans every run of slashes from each of its starts.
  let end = path.length;
  while (end > 0 && path[end - 1] === '/') end--;
  path = path.slice(0, end);
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

/**
 * Counts the steps matching takes, so tests can check that matching stays linear without a clock.
 * Production callers pass nothing.
 */
export interface MatchProbe {
  steps: number;
}

/** Longest glob accepted for one host component: a DNS label has at most 63 characters. */
export const MAX_GLOB_LENGTH = 63;

type GlobToken =
  | { kind: 'literal'; char: string }
  | { kind: 'any' }
  | { kind: 'star' }
  | { kind: 'class'; negate: boolean; ranges: Array<[lo: string, hi: string]> };

/** Go's path.Match pattern for one component, as tokens; undefined when it is not a valid pattern. */
function compileGlob(glob: string): GlobToken[] | undefined {
  const chars = [...glob];
  const tokens: GlobToken[] = [];
  // Go's getEsc: one class character, '\' escaping the next; a bare '-' or ']' is a bad pattern.
  const classChar = (i: number): [string, number] | undefined => {
    let c = chars[i];
    if (c === undefined || c === '-' || c === ']') return undefined;
    if (c === '\\') {
      c = chars[i + 1];
      if (c === undefined) return undefined;
      return [c, i + 2];
    }
    return [c, i + 1];
  };
  for (let i = 0; i < chars.length; ) {
    const c = chars[i]!;
    if (c === '*') {
      // Consecutive stars match what one does.
      if (tokens.at(-1)?.kind !== 'star') tokens.push({ kind: 'star' });
      i++;
    } else if (c === '?') {
      tokens.push({ kind: 'any' });
      i++;
    } else if (c === '\\') {
      const next = chars[i + 1];
      if (next === undefined) return undefined;
      tokens.push({ kind: 'literal', char: next });
      i += 2;
    } else if (c === '[') {
      i++;
      const negate = chars[i] === '^';
      if (negate) i++;
      const ranges: Array<[string, string]> = [];
      for (;;) {
        if (chars[i] === ']' && ranges.length > 0) {
          i++;
          break;
        }
        const lo = classChar(i);
        if (!lo) return undefined;
        let hi: [string, number] = lo;
        if (chars[lo[1]] === '-') {
          const h = classChar(lo[1] + 1);
          if (!h) return undefined;
          hi = h;
        }
        ranges.push([lo[0], hi[0]]);
        i = hi[1];
      }
      tokens.push({ kind: 'class', negate, ranges });
    } else {
      tokens.push({ kind: 'literal', char: c });
      i++;
    }
  }
  return tokens;
}

function tokenMatches(token: GlobToken, char: string, probe: MatchProbe | undefined): boolean {
  if (probe) probe.steps++;
  switch (token.kind) {
    case 'literal':
      return token.char === char;
    case 'any':
      return true;
    case 'class': {
      let inside = false;
      for (const [lo, hi] of token.ranges) {
        if (probe) probe.steps++;
        if (lo <= char && char <= hi) inside = true;
      }
      return inside !== token.negate;
    }
    default:
      return false;
  }
}

/**
 * Go's path.Match for one host component ('*', '?', '[a-z]' / '[^a-z]' classes, '\' escapes),
 * without backtracking beyond the last star: the greedy algorithm, whose work is at most
 * glob length × name length. Globs are capped at MAX_GLOB_LENGTH (no host label is longer), so the
 * work is linear in the name. An invalid or over-long glob matches nothing, as kubelet skips keys
 * path.Match rejects.
 */
export function globMatch(glob: string, name: string, probe?: MatchProbe): boolean {
  if (glob.length > MAX_GLOB_LENGTH) return false;
  const pattern = compileGlob(glob);
  if (!pattern) return false;
  const text = [...name];
  let p = 0;
  let t = 0;
  let starP = -1;
  let starT = 0;
  while (t < text.length) {
    if (probe) probe.steps++;
    const token = pattern[p];
    if (token?.kind === 'star') {
      starP = p++;
      starT = t;
    } else if (token && tokenMatches(token, text[t]!, probe)) {
      p++;
      t++;
    } else if (starP >= 0) {
      // Let the last star take one more character and try the rest again from there.
      p = starP + 1;
      t = ++starT;
    } else return false;
  }
  while (pattern[p]?.kind === 'star') p++;
  return p === pattern.length;
}

/** host[:port] → [parts split at '.', port]; bracketed IPv6 keeps its colons. */
function splitHost(host: string): [parts: string[], port: string] {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(host);
  const name = m?.[1] ?? host;
  return [name.startsWith('[') ? [name] : name.split('.'), m?.[2] ?? ''];
}

/** kubelet's URLsMatch: same port, same number of host parts, each part a glob match, path a prefix. */
function keyMatches(entry: KeyringEntry, host: string, path: string, probe?: MatchProbe): boolean {
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
    return globMatch(glob, target, probe);
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
export function findCredentials(
  keyrings: Keyring[],
  ref: ImageReference,
  probe?: MatchProbe,
): RegistryCredential[] {
  const path = `/${ref.path}`;
  const aliases = dockerConfigKeys(ref.domain).map((k) => parseConfigKey(k).host);
  const hub = aliases[0] === 'docker.io';
  const candidates: Candidate[] = [];
  let order = 0;
  for (const keyring of keyrings) {
    for (const entry of keyring.entries) {
      order++;
      for (let alias = 0; alias < aliases.length; alias++) {
        if (keyMatches(entry, aliases[alias]!, path, probe)) {
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
export function findCredential(
  keyrings: Keyring[],
  ref: ImageReference,
  probe?: MatchProbe,
): RegistryCredential | undefined {
  return findCredentials(keyrings, ref, probe)[0];
}
