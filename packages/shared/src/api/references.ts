/**
 * The image reference and digest fields both kinds use (WatchedImage.spec.image, ImageUpdate's
 * digests, the short digests of printer columns), in a module of their own so that neither kind's
 * schema imports the other's.
 */
import { Type } from '@sinclair/typebox';
import { DIGEST_PATTERN, REFERENCE_PATTERN } from '../reference.ts';
import { type CelRule, celRule, celString } from './cel.ts';

/** Longest reference the pattern admits: a 255-character name, `:` and a 128-character tag. */
const REFERENCE_MAX_LENGTH = 384;
const NAME_MAX_LENGTH = 255;
const SHORT_DIGEST_PATTERN = '^[a-f0-9]{12}$';

/** The name part of a reference (everything before a tag), as the CEL rule computes it. */
function referenceName(reference: string): string {
  const colon = reference.lastIndexOf(':');
  return colon > reference.lastIndexOf('/') ? reference.slice(0, colon) : reference;
}

/** An image reference with an optional tag and no digest, e.g. `nginx:1.27` or `ghcr.io/acme/web`. */
const referencePattern = new RegExp(REFERENCE_PATTERN);

export function TagReference(description: string, rules: readonly CelRule[] = []) {
  return Type.String({
    description,
    minLength: 1,
    maxLength: REFERENCE_MAX_LENGTH,
    // The grammar is a CEL rule rather than a schema `pattern`: a failed pattern hides every CEL
    // message and prints the whole regular expression, which tells a user nothing.
    'x-kubernetes-validations': [
      celRule<string>(
        "!self.contains('@')",
        'must not contain a digest: watch a tag, e.g. nginx:1.27',
        (self) => !self.includes('@'),
      ),
      celRule<string>(
        `self.contains('@') || self.matches(${celString(REFERENCE_PATTERN)})`,
        'must be an image reference with an optional registry host and tag, e.g. nginx:1.27 or ghcr.io/acme/web:stable (repository names are lowercase)',
        (self) => self.includes('@') || referencePattern.test(self),
      ),
      celRule<string>(
        "(self.lastIndexOf(':') > self.lastIndexOf('/') ? self.substring(0, self.lastIndexOf(':')) : self).size() <= 255",
        `repository name must not be more than ${NAME_MAX_LENGTH} characters`,
        (self) => referenceName(self).length <= NAME_MAX_LENGTH,
      ),
      ...rules,
    ],
  });
}

/** A full digest, `sha256:` and 64 lowercase hex digits. */
export function Digest(description: string, rules: readonly CelRule[] = []) {
  return Type.String({
    description,
    pattern: DIGEST_PATTERN,
    maxLength: 71,
    ...(rules.length > 0 ? { 'x-kubernetes-validations': [...rules] } : {}),
  });
}

/** The first 12 hex digits of a digest, for printer columns. */
export function ShortDigest(description: string) {
  return Type.String({ description, pattern: SHORT_DIGEST_PATTERN, maxLength: 12 });
}
