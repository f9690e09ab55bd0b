/**
 * Container image references: parse, validate and normalise them with the same grammar and the same
 * outcomes as github.com/distribution/reference v0.6.0 (the grammar Docker, containerd and the
 * Kubernetes tooling share), so a reference that runs in a pod means the same image here.
 *
 *   reference := name [":" tag] ["@" digest]
 *   name      := [domain "/"] path-component ["/" path-component]*
 */

/** A parsed image reference. `domain` is '' only for a strict parse of a name written without one. */
export interface ImageReference {
  /** Registry domain, canonical after normalisation: 'docker.io', 'ghcr.io', '127.0.0.1:5000', '[::1]:5000'. */
  domain: string;
  /** Repository path without the domain: 'library/nginx', 'acme/web'. */
  path: string;
  /** Tag, absent when none was written (normalizeReference supplies 'latest' unless a digest was given). */
  tag?: string;
  /** Digest such as 'sha256:…', present only when written. */
  digest?: string;
}

/** A string that is not a valid image reference; `reason` uses distribution/reference's wording. */
export class InvalidReferenceError extends Error {
  readonly reference: string;
  readonly reason: string;

  constructor(reference: string, reason: string) {
    super(`invalid image reference ${JSON.stringify(reference)}: ${reason}`);
    this.name = 'InvalidReferenceError';
    this.reference = reference;
    this.reason = reason;
  }
}

// Grammar pieces, spelt as in distribution's regexp.go. Only constructs that JavaScript and RE2 (Go,
// the API server's `pattern` and CEL) read identically: non-capturing groups, classes, counted repeats.
const alphanumeric = '[a-z0-9]+';
// One period, one or two underscores, or any run of dashes (runs of dashes keep hostnames valid as paths).
const separator = '(?:[._]|__|[-]+)';
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
// Bracketed IPv6 only; zone identifiers (`%eth0`) are excluded, as upstream.
const ipv6Address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainAndPort = `(?:${domainName}|${ipv6Address})(?::[0-9]+)?`;
const namePattern = `(?:${domainAndPort}/)?${remoteName}`;
const tagPattern = '[\\w][\\w.-]{0,127}';
const digestPattern = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';

/**
 * Anchored pattern for a name with an optional tag and no digest: the CRD schema's `pattern` for
 * WatchedImage.spec.image. It cannot count, so the 255-character path limit needs its own rule.
 */
export const REFERENCE_PATTERN = `^${namePattern}(?::${tagPattern})?$`;

/**
 * The whole grammar as one anchored pattern with three groups (name, tag, digest): what matchGrammar
 * reads, in a form the tests can hold it to.
 */
export const REFERENCE_GRAMMAR_PATTERN = `^(${namePattern})(?::(${tagPattern}))?(?:@(${digestPattern}))?$`;

/** The only digest form Kubewatcher records: what registries return in Docker-Content-Digest. */
export const DIGEST_PATTERN = '^sha256:[a-f0-9]{64}$';

/**
 * Longest repository path distribution accepts. v0.6.0 counts the path only, not the domain; releases
 * before it counted both. This follows the current release.
 */
export const PATH_MAX_LENGTH = 255;

/**
 * Counts characters the grammar reads, so tests can check that parsing stays linear without a clock.
 * Production callers pass nothing.
 */
export interface GrammarProbe {
  steps: number;
}

/*
 * The grammar above, read by hand in one pass rather than by a backtracking RegExp, so the work is
 * linear in the input whatever it holds (the pieces stay, for the CRD's `pattern`, and the tests
 * check that both readings agree). Two facts make one pass enough: neither name nor tag can hold
 * '@', so the digest starts at the first '@'; path components cannot hold ':', so a tag starts at
 * the first ':' after the last '/'.
 */
const isLowerAlnum = (c: string | undefined) =>
  c !== undefined && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
const isAlnum = (c: string | undefined) => c !== undefined && (isLowerAlnum(c) || (c >= 'A' && c <= 'Z'));
const isAlpha = (c: string | undefined) =>
  c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'));
const isWord = (c: string | undefined) => c === '_' || isAlnum(c);
const isDecimal = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isHex = (c: string | undefined) =>
  c !== undefined && (isDecimal(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));

function count(probe: GrammarProbe | undefined, n: number): void {
  if (probe) probe.steps += n;
}

/** remoteName: path components `[a-z0-9]+` joined by '.', '_', '__' or runs of '-', separated by '/'. */
function isRemoteName(s: string, probe?: GrammarProbe): boolean {
  let i = 0;
  for (;;) {
    // One path component.
    if (!isLowerAlnum(s[i])) return false;
    for (;;) {
      while (isLowerAlnum(s[i])) i++;
      const c = s[i];
      if (c === '.' || c === '_') {
        i += c === '_' && s[i + 1] === '_' ? 2 : 1;
      } else if (c === '-') {
        while (s[i] === '-') i++;
      } else break;
      if (!isLowerAlnum(s[i])) return false;
    }
    if (i === s.length) break;
    if (s[i] !== '/') return false;
    i++;
  }
  count(probe, s.length);
  return true;
}

/** domainAndPort: a host name or a bracketed IPv6 address, then an optional ':port'. */
function isDomainAndPort(s: string, probe?: GrammarProbe): boolean {
  count(probe, s.length);
  let i = 0;
  if (s[0] === '[') {
    i = 1;
    while (isHex(s[i]) || s[i] === ':') i++;
    if (i === 1 || s[i] !== ']') return false;
    i++;
  } else {
    for (;;) {
      // One domain component: alphanumerics and '-', neither first nor last.
      if (!isAlnum(s[i])) return false;
      while (isAlnum(s[i]) || s[i] === '-') i++;
      if (s[i - 1] === '-') return false;
      if (s[i] !== '.') break;
      i++;
    }
  }
  if (i === s.length) return true;
  if (s[i] !== ':' || !isDecimal(s[i + 1])) return false;
  i++;
  while (isDecimal(s[i])) i++;
  return i === s.length;
}

/** tag: a word character, then at most 127 word characters, '.' or '-'. */
function isTag(s: string, probe?: GrammarProbe): boolean {
  if (s.length < 1 || s.length > 128 || !isWord(s[0])) return false;
  for (let i = 1; i < s.length; i++) {
    count(probe, 1);
    if (!isWord(s[i]) && s[i] !== '.' && s[i] !== '-') return false;
  }
  return true;
}

/** digest: algorithm components joined by '-', '_', '+' or '.', a ':', then at least 32 hex digits. */
function isDigest(s: string, probe?: GrammarProbe): boolean {
  count(probe, s.length);
  let i = 0;
  for (;;) {
    if (!isAlpha(s[i])) return false;
    while (isAlnum(s[i])) i++;
    const c = s[i];
    if (c === '-' || c === '_' || c === '+' || c === '.') i++;
    else break;
  }
  if (s[i] !== ':') return false;
  const hex = ++i;
  while (isHex(s[i])) i++;
  return i === s.length && i - hex >= 32;
}

/** name := [domainAndPort "/"] remoteName. */
function isName(s: string, probe?: GrammarProbe): boolean {
  if (isRemoteName(s, probe)) return true;
  const slash = s.indexOf('/');
  count(probe, slash + 1);
  return slash > 0 && isDomainAndPort(s.slice(0, slash), probe) && isRemoteName(s.slice(slash + 1), probe);
}

/** The grammar's reading of a reference: its name, tag and digest, or undefined when it is not one. */
export function matchGrammar(input: string, probe?: GrammarProbe): Matched | undefined {
  const at = input.indexOf('@');
  count(probe, at === -1 ? input.length : at + 1);
  const left = at === -1 ? input : input.slice(0, at);
  const digest = at === -1 ? undefined : input.slice(at + 1);
  if (digest !== undefined && !isDigest(digest, probe)) return undefined;
  const lastSlash = left.lastIndexOf('/');
  const colon = left.indexOf(':', lastSlash + 1);
  count(probe, left.length);
  const name = colon === -1 ? left : left.slice(0, colon);
  const tag = colon === -1 ? undefined : left.slice(colon + 1);
  if (tag !== undefined && !isTag(tag, probe)) return undefined;
  if (!isName(name, probe)) return undefined;
  const matched: Matched = { name };
  if (tag !== undefined) matched.tag = tag;
  if (digest !== undefined) matched.digest = digest;
  return matched;
}
// A bare 64-hex string is an image ID; ParseNormalizedNamed refuses to read it as a Docker Hub name.
const identifierRegExp = /^[a-f0-9]{64}$/;
// go-digest's registered algorithms (sha256 plus the two crypto/sha512 ones) and their hex lengths.
const digestHexLength: ReadonlyMap<string, number> = new Map([
  ['sha256', 64],
  ['sha384', 96],
  ['sha512', 128],
]);
const lowercaseHexRegExp = /^[a-f0-9]+$/;
// go-digest's own digest shape, which decides between "unsupported" and "invalid format".
const goDigestRegExp = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_LEGACY = 'index.docker.io';
const OFFICIAL_PREFIX = 'library/';
const DEFAULT_TAG = 'latest';

interface Matched {
  name: string;
  tag?: string;
  digest?: string;
}

/** reference.Parse up to the domain split: grammar, length, then digest, in upstream's order. */
function matchReference(input: string, quoted: string): Matched {
  if (input === '') {
    throw new InvalidReferenceError(quoted, 'repository name must have at least one component');
  }
  const match = matchGrammar(input);
  if (match === undefined) {
    const lower = input.toLowerCase();
    // Valid once lowercased: the only fault is case, which deserves the more helpful message.
    if (lower !== input && matchGrammar(lower) !== undefined) {
      throw new InvalidReferenceError(quoted, 'repository name must be lowercase');
    }
    throw new InvalidReferenceError(quoted, 'invalid reference format');
  }
  const { name } = match;
  // Measured as upstream splits the name: any first segment shaped like a host is not path.
  const slash = name.indexOf('/');
  const path = slash > 0 && isDomainAndPort(name.slice(0, slash)) ? name.slice(slash + 1) : name;
  if (path.length > PATH_MAX_LENGTH) {
    throw new InvalidReferenceError(
      quoted,
      `repository name must not be more than ${PATH_MAX_LENGTH} characters`,
    );
  }
  const result: Matched = { name };
  if (match.tag !== undefined) result.tag = match.tag;
  if (match.digest !== undefined) {
    const reason = digestProblem(match.digest);
    if (reason !== undefined) throw new InvalidReferenceError(quoted, reason);
    result.digest = match.digest;
  }
  return result;
}

/** go-digest's Validate (what digest.Parse reports), in its order; undefined when the digest is fine. */
function digestProblem(digest: string): string | undefined {
  const colon = digest.indexOf(':');
  if (colon <= 0 || colon === digest.length - 1) return 'invalid checksum digest format';
  const expected = digestHexLength.get(digest.slice(0, colon));
  const encoded = digest.slice(colon + 1);
  if (expected === undefined) {
    // Unknown algorithms are "unsupported" only when spelt as go-digest allows (lowercase).
    return goDigestRegExp.test(digest) ? 'unsupported digest algorithm' : 'invalid checksum digest format';
  }
  if (encoded.length !== expected) return 'invalid checksum digest length';
  if (!lowercaseHexRegExp.test(encoded)) return 'invalid checksum digest format';
  return undefined;
}

/** The first segment names a registry when it looks like a host: has '.' or ':', is localhost, or has capitals. */
function looksLikeDomain(segment: string): boolean {
  return (
    segment === 'localhost' ||
    segment.includes('.') ||
    segment.includes(':') ||
    segment.toLowerCase() !== segment
  );
}

function build(domain: string, path: string, matched: Matched): ImageReference {
  const ref: ImageReference = { domain, path };
  if (matched.tag !== undefined) ref.tag = matched.tag;
  if (matched.digest !== undefined) ref.digest = matched.digest;
  return ref;
}

/**
 * Strict parse of what was written, like reference.Parse: no default registry, tag or `library/`.
 * `domain` is '' when the first segment is not written as a registry ('acme/web', 'nginx').
 */
export function parseReference(input: string): ImageReference {
  const matched = matchReference(input, input);
  const slash = matched.name.indexOf('/');
  if (slash > 0) {
    const first = matched.name.slice(0, slash);
    // Upstream's regexp would call 'acme' in 'acme/web' a domain; the host rule keeps `domain` meaning
    // "a registry was written". Validity is unchanged: the regexp has already accepted the whole name.
    if (looksLikeDomain(first) && isDomainAndPort(first)) {
      return build(first, matched.name.slice(slash + 1), matched);
    }
  }
  return build('', matched.name, matched);
}

/**
 * ParseNormalizedNamed followed by TagNameOnly: Docker Hub by default, `library/` for its single-segment
 * names, index.docker.io folded into docker.io, and tag 'latest' when neither tag nor digest is given.
 */
export function normalizeReference(input: string): ImageReference {
  if (identifierRegExp.test(input)) {
    throw new InvalidReferenceError(
      input,
      `invalid repository name (${input}), cannot specify 64-byte hexadecimal strings`,
    );
  }
  const [domain, remainder] = splitDockerDomain(input);
  const colon = remainder.indexOf(':');
  const remote = colon === -1 ? remainder : remainder.slice(0, colon);
  if (remote.toLowerCase() !== remote) {
    throw new InvalidReferenceError(
      input,
      `invalid reference format: repository name (${remote}) must be lowercase`,
    );
  }
  const matched = matchReference(`${domain}/${remainder}`, input);
  // Upstream would file an underscored "host" such as 'foo_bar.com/app' under no domain at all, leaving
  // nothing to pull from; such a name can only be a mistake, so it is refused.
  if (!isDomainAndPort(domain)) {
    throw new InvalidReferenceError(
      input,
      `invalid reference format: registry (${domain}) is not a valid host name`,
    );
  }
  const ref = build(domain, matched.name.slice(domain.length + 1), matched);
  if (ref.tag === undefined && ref.digest === undefined) ref.tag = DEFAULT_TAG;
  return ref;
}

/** normalize.go's splitDockerDomain, applied to the whole input (tag and digest hold no '/'). */
function splitDockerDomain(input: string): [domain: string, remainder: string] {
  const slash = input.indexOf('/');
  // A single segment is always a Docker Hub official image, even 'localhost' or 'example.com'.
  if (slash === -1) return [DOCKER_HUB, OFFICIAL_PREFIX + input];
  const first = input.slice(0, slash);
  let domain = DOCKER_HUB;
  let remainder = input;
  if (first === DOCKER_HUB_LEGACY) {
    remainder = input.slice(slash + 1);
  } else if (looksLikeDomain(first)) {
    domain = first;
    remainder = input.slice(slash + 1);
  }
  if (domain === DOCKER_HUB && !remainder.includes('/')) remainder = OFFICIAL_PREFIX + remainder;
  return [domain, remainder];
}

/** Registry and repository without tag or digest: 'docker.io/library/nginx'. */
export function repositoryName(ref: ImageReference): string {
  return ref.domain === '' ? ref.path : `${ref.domain}/${ref.path}`;
}

function withSuffixes(name: string, ref: ImageReference): string {
  let out = name;
  if (ref.tag !== undefined) out += `:${ref.tag}`;
  if (ref.digest !== undefined) out += `@${ref.digest}`;
  return out;
}

/** Full form: 'docker.io/library/nginx:1.27', '…@sha256:…' or '…:tag@sha256:…'. */
export function referenceString(ref: ImageReference): string {
  return withSuffixes(repositoryName(ref), ref);
}

/** Short form people write: Docker Hub's domain and `library/` dropped ('nginx:1.27', 'acme/web:stable'). */
export function familiarString(ref: ImageReference): string {
  let name = repositoryName(ref);
  if (ref.domain === DOCKER_HUB) {
    name = ref.path;
    const rest = ref.path.slice(OFFICIAL_PREFIX.length);
    // Only 'library/x' is an official image; 'library/x/y' keeps its prefix, as upstream.
    if (ref.path.startsWith(OFFICIAL_PREFIX) && !rest.includes('/')) name = rest;
  }
  return withSuffixes(name, ref);
}

/**
 * Whether two written references run the same repository and tag, ignoring digests, so a container
 * pinned to 'nginx:1.27@sha256:…' still matches a WatchedImage for 'nginx:1.27'. Invalid input is no match.
 */
export function sameImage(a: string, b: string): boolean {
  const left = imageKey(a);
  return left !== undefined && left === imageKey(b);
}

/**
 * Normalised repository and tag of a written reference ('docker.io/library/nginx:1.27'; '…@' when only a
 * digest is written), undefined when invalid. Memoised: a controller compares the same few hundred
 * container images against every WatchedImage on each event, and parsing is ~3 µs where a Map lookup is
 * ~0.1 µs. The memo is dropped whole when it reaches MAX_MEMO entries, so it stays small.
 */
function imageKey(input: string): string | undefined {
  const memo = imageKeys.get(input);
  if (memo !== undefined || imageKeys.has(input)) return memo;
  let key: string | undefined;
  try {
    const ref = normalizeReference(input);
    key = `${ref.domain}/${ref.path}${ref.tag === undefined ? '@' : `:${ref.tag}`}`;
  } catch (error) {
    if (!(error instanceof InvalidReferenceError)) throw error;
  }
  if (imageKeys.size >= MAX_MEMO) imageKeys.clear();
  imageKeys.set(input, key);
  return key;
}
const MAX_MEMO = 10_000;
const imageKeys = new Map<string, string | undefined>();

/** Host that serves the registry API: Docker Hub's canonical name is not where its API lives. */
export function registryApiHost(domain: string): string {
  return domain === DOCKER_HUB ? 'registry-1.docker.io' : domain;
}

/**
 * Keys under which a docker config may hold this registry's credentials, most specific first. Docker
 * Hub logins are stored under the legacy v1 index URL by `docker login`, and under the others by hand.
 */
export function dockerConfigKeys(domain: string): string[] {
  if (domain === DOCKER_HUB) {
    return [DOCKER_HUB, DOCKER_HUB_LEGACY, 'https://index.docker.io/v1/', 'registry-1.docker.io'];
  }
  return [domain];
}

/** The reference pinned to `digest`, in familiar form, as written into a workload: 'nginx:1.27@sha256:…'. */
export function withDigest(ref: ImageReference, digest: string): string {
  const pinned: ImageReference = { ...ref, digest };
  const reason = digestProblem(digest);
  if (reason !== undefined) throw new InvalidReferenceError(familiarString(pinned), reason);
  return familiarString(pinned);
}
