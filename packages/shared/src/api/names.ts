/** Derived names and short forms: deterministic, so every run of the poller computes the same ones. */
import { createHash } from 'node:crypto';
import { DIGEST_PATTERN } from '../reference.ts';

const digestRegExp = new RegExp(DIGEST_PATTERN);
const MAX_NAME_LENGTH = 253;
const NAME_DIGEST_LENGTH = 10;
const NAME_HASH_LENGTH = 8;

function digestHex(digest: string): string {
  if (!digestRegExp.test(digest)) {
    throw new TypeError(
      `not a sha256 digest: ${JSON.stringify(digest)} (want sha256: and 64 lowercase hex digits)`,
    );
  }
  return digest.slice('sha256:'.length);
}

/** The first 12 hex digits of a digest, as `docker images` shows it: `sha256:0123456789abcdef…` → `0123456789ab`. */
export function shortDigest(digest: string): string {
  return digestHex(digest).slice(0, 12);
}

/**
 * The ImageUpdate name for a change of `watchedImageName` to `toDigest`: `<name>-<first 10 hex>`.
 * Deterministic, so a retried or concurrent poller run meets AlreadyExists instead of a duplicate.
 * A WatchedImage name too long for the suffix is cut, and a hash of the full name keeps names
 * unique: `<cut name>-<8 hex of sha256(name)>-<10 hex>`, at most 253 characters, a valid DNS subdomain.
 */
export function imageUpdateName(watchedImageName: string, toDigest: string): string {
  const suffix = digestHex(toDigest).slice(0, NAME_DIGEST_LENGTH);
  const name = `${watchedImageName}-${suffix}`;
  if (name.length <= MAX_NAME_LENGTH) return name;
  const hash = createHash('sha256').update(watchedImageName).digest('hex').slice(0, NAME_HASH_LENGTH);
  const room = MAX_NAME_LENGTH - NAME_HASH_LENGTH - NAME_DIGEST_LENGTH - 2;
  // A label must not start with `-` (after a cut `.`) nor end with `.`: drop trailing separators.
  const cut = watchedImageName.slice(0, room).replace(/[-.]+$/, '');
  return `${cut}-${hash}-${suffix}`;
}

/** Longest label value. */
const MAX_LABEL_VALUE_LENGTH = 63;
/** Longest generated WatchedImage name: a label value (ImageUpdates carry it in LABEL.watchedImage). */
const GENERATED_NAME_MAX_LENGTH = MAX_LABEL_VALUE_LENGTH;

/**
 * The name of the WatchedImage the controller generates for a normalised `repository:tag`
 * (`docker.io/library/nginx:1.27` → `nginx-1.27-<8 hex>`): the last path segment and the tag, made
 * lowercase with anything but letters, digits and inner dots turned into `-`, cut to fit, then 8 hex digits of sha256 of the whole
 * reference so two images never share a name. At most 63 characters, a valid object name and label value.
 */
export function generatedWatchedImageName(repositoryAndTag: string): string {
  const hash = createHash('sha256').update(repositoryAndTag).digest('hex').slice(0, NAME_HASH_LENGTH);
  const colon = repositoryAndTag.lastIndexOf(':');
  const repository =
    colon > repositoryAndTag.lastIndexOf('/') ? repositoryAndTag.slice(0, colon) : repositoryAndTag;
  const tag = colon > repositoryAndTag.lastIndexOf('/') ? repositoryAndTag.slice(colon + 1) : '';
  const readable = `${repository.slice(repository.lastIndexOf('/') + 1)}-${tag}`
    .toLowerCase()
    .replace(/[^a-z0-9.]+/g, '-')
    // Dots stay (`1.27` reads better than `1-27`) but only between alphanumerics, as a name needs.
    .replace(/[-.]*\.[-.]*/g, '.')
    .slice(0, GENERATED_NAME_MAX_LENGTH - NAME_HASH_LENGTH - 1)
    .replace(/^[-.]+|[-.]+$/g, '');
  return readable ? `${readable}-${hash}` : hash;
}

/**
 * An object name as a label value: the name itself when it fits (63 characters), else its first
 * characters and 8 hex digits of its SHA-256, `<cut>-<hash>`, so every name still has one value of
 * its own. Names of Kubewatcher's kinds are DNS subdomains, whose characters labels accept.
 */
export function nameLabelValue(name: string): string {
  if (name.length <= MAX_LABEL_VALUE_LENGTH) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, NAME_HASH_LENGTH);
  // A label value must begin and end with an alphanumeric character.
  const cut = name.slice(0, MAX_LABEL_VALUE_LENGTH - NAME_HASH_LENGTH - 1).replace(/[-.]+$/, '');
  return `${cut}-${hash}`;
}
