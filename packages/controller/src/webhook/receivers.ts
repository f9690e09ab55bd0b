/**
 * Webhook receivers: which senders may call, under which path, proving themselves how. The cluster
 * admin writes them in a file (mounted from a Secret); `parseReceivers` checks it strictly and
 * `authenticate` decides a request. Pure functions, no I/O.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { isDnsLabel } from '@kubewatcher/shared';
import { parse as parseYaml } from 'yaml';
import { WEBHOOK_FORMATS, type WebhookFormat } from './payloads.ts';

export interface Receiver {
  /** Part of the URL path: `/hook/<name>/<token>`. */
  name: string;
  format: WebhookFormat;
  /** Secret token the URL path must carry. Required for senders that cannot sign (Docker Hub, Quay). */
  token?: string;
  /**
   * Shared secret of an HMAC-SHA256 signature of the raw body in `X-Hub-Signature-256: sha256=<hex>`
   * (GitHub; also accepted on the generic form, for CI jobs that sign).
   */
  hmacSecret?: string;
  /** Exact `Authorization` header value the sender sends (Harbor's Auth Header, distribution's headers). */
  authorization?: string;
  /** Registry host of this receiver's pushes where the payload names none or an internal one. */
  registry?: string;
}

/** The formats each way of proving applies to: only GitHub and generic senders sign bodies. */
const HMAC_FORMATS: readonly WebhookFormat[] = ['github', 'generic'];
const AUTHORIZATION_FORMATS: readonly WebhookFormat[] = ['harbor', 'distribution', 'generic'];
/** Below this a token can be guessed; 32 characters of base64 or hex are well above 128 bits. */
export const MIN_SECRET_LENGTH = 32;
const FIELDS = ['name', 'format', 'token', 'hmacSecret', 'authorization', 'registry'];

/** A receivers file that cannot be used; the message names the field and value (never a secret's value). */
export class ReceiverConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReceiverConfigError';
  }
}

/**
 * Reads a receivers file (YAML or JSON): `receivers: [{name, format, token?, hmacSecret?,
 * authorization?, registry?}]`. Every receiver must be authenticated by at least one secret, and a
 * sender that cannot sign needs the path token.
 */
export function parseReceivers(text: string): Receiver[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ReceiverConfigError(`receivers file is not YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { receivers?: unknown }).receivers)) {
    throw new ReceiverConfigError('receivers file must hold "receivers:", a list');
  }
  const seen = new Set<string>();
  return (doc as { receivers: unknown[] }).receivers.map((item, i) => {
    const at = `receivers[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new ReceiverConfigError(`${at} must be an object`);
    }
    const o = item as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      if (!FIELDS.includes(key))
        throw new ReceiverConfigError(`${at}.${key} is not a receiver field (${FIELDS.join(', ')})`);
    }
    for (const key of FIELDS) {
      if (o[key] !== undefined && typeof o[key] !== 'string')
        throw new ReceiverConfigError(`${at}.${key} must be a string`);
    }
    const name = o.name as string | undefined;
    if (!name || !isDnsLabel(name)) {
      throw new ReceiverConfigError(
        `${at}.name "${name ?? ''}" must be a DNS label (lower-case letters, digits, -)`,
      );
    }
    if (seen.has(name)) throw new ReceiverConfigError(`${at}.name "${name}" is used twice`);
    seen.add(name);
    const format = o.format as WebhookFormat;
    if (!WEBHOOK_FORMATS.includes(format)) {
      throw new ReceiverConfigError(
        `${at}.format "${o.format ?? ''}" must be one of ${WEBHOOK_FORMATS.join(', ')}`,
      );
    }
    const receiver: Receiver = { name, format };
    for (const key of ['token', 'hmacSecret', 'authorization'] as const) {
      const value = o[key] as string | undefined;
      if (value === undefined) continue;
      if (value.length < MIN_SECRET_LENGTH) {
        throw new ReceiverConfigError(`${at}.${key} must be at least ${MIN_SECRET_LENGTH} characters`);
      }
      receiver[key] = value;
    }
    if (o.registry !== undefined) receiver.registry = o.registry as string;
    if (receiver.hmacSecret && !HMAC_FORMATS.includes(format)) {
      throw new ReceiverConfigError(`${at}.hmacSecret: format ${format} does not sign its bodies; use token`);
    }
    if (receiver.authorization && !AUTHORIZATION_FORMATS.includes(format)) {
      throw new ReceiverConfigError(
        `${at}.authorization: format ${format} sends no Authorization header; use token`,
      );
    }
    if (!receiver.token && !receiver.hmacSecret && !receiver.authorization) {
      throw new ReceiverConfigError(`${at} (${name}) needs a token, an hmacSecret or an authorization`);
    }
    return receiver;
  });
}

/** `/hook/<name>` or `/hook/<name>/<token>`; undefined for any other path. */
export function splitHookPath(pathname: string): { name: string; token?: string } | undefined {
  const m = /^\/hook\/([a-z0-9-]{1,63})(?:\/([^/]{1,512}))?\/?$/.exec(pathname);
  if (!m) return undefined;
  if (!m[2]) return { name: m[1]! };
  try {
    return { name: m[1]!, token: decodeURIComponent(m[2]) };
  } catch {
    return undefined; // a malformed %-escape
  }
}

export interface RequestCredentials {
  pathToken?: string;
  authorization?: string;
  signature?: string;
  /** The raw body, for the signature. */
  body: Buffer;
}

/**
 * Whether a request proves it comes from the receiver's sender: every secret the receiver has must
 * be matched (a receiver with a token and an HMAC secret needs both). Constant-time comparisons.
 */
export function authenticate(receiver: Receiver, req: RequestCredentials): boolean {
  let ok = true;
  // Evaluate every check, so the time taken does not tell which one failed.
  if (receiver.token !== undefined) ok = sameSecret(receiver.token, req.pathToken) && ok;
  if (receiver.authorization !== undefined) ok = sameSecret(receiver.authorization, req.authorization) && ok;
  if (receiver.hmacSecret !== undefined)
    ok = validSignature(receiver.hmacSecret, req.body, req.signature) && ok;
  return ok;
}

/** Whether the path token alone is right (checked before the body is read, when the receiver has one). */
export function pathTokenMatches(receiver: Receiver, token: string | undefined): boolean {
  return receiver.token === undefined || sameSecret(receiver.token, token);
}

/** GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`. */
export function validSignature(secret: string, body: Buffer, header: string | undefined): boolean {
  const m = header ? /^sha256=([0-9a-f]{64})$/i.exec(header.trim()) : null;
  const expected = createHmac('sha256', secret).update(body).digest();
  // Compare against something of the right length even without a header, so timing says nothing.
  const given = m ? Buffer.from(m[1]!.toLowerCase(), 'hex') : Buffer.alloc(expected.length);
  return timingSafeEqual(expected, given) && m !== null;
}

/** The header value a sender computes: for tests and for documenting how to sign. */
export function signBody(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Constant-time equality of two secrets of any length (both hashed first). */
function sameSecret(expected: string, given: string | undefined): boolean {
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256')
    .update(given ?? '')
    .digest();
  return timingSafeEqual(a, b) && given !== undefined;
}
