import { ApiException } from '@kubernetes/client-node';

/**
 * What an error from the API server (client-node's generated clients, `requestJson`, a watch) says,
 * read the one way every caller reads it: its HTTP status, and its fields for a log line.
 */

/** HTTP status of an API error: client-node's `ApiException.code`, or a watch error's `statusCode`. */
export function apiStatusCode(err: unknown): number | undefined {
  if (err instanceof ApiException) return err.code;
  const e = err as { statusCode?: unknown; code?: unknown } | null | undefined;
  if (typeof e?.statusCode === 'number') return e.statusCode;
  // DOMException codes (AbortError is 20) are not HTTP statuses.
  if (typeof e?.code === 'number' && !(err instanceof DOMException) && e.code >= 100 && e.code < 600)
    return e.code;
  return undefined;
}

/**
 * An error as log fields: a one-line message and the HTTP status. For API errors the message is the
 * server's `Status.message`, not `ApiException`'s multi-line dump of the body and response headers.
 */
export function errorFields(err: unknown): Record<string, unknown> {
  const code = apiStatusCode(err);
  if (err instanceof ApiException) {
    return { error: statusMessage(err.body) ?? `HTTP ${err.code}`, code };
  }
  const fields: Record<string, unknown> = { error: err instanceof Error ? err.message : String(err) };
  const sysCode = (err as { code?: unknown } | null | undefined)?.code;
  if (code !== undefined) fields.code = code;
  else if (typeof sysCode === 'string') fields.code = sysCode; // ECONNREFUSED and friends
  // fetch failures say only "fetch failed"; the reason is in `cause`.
  const cause = (err as { cause?: unknown } | null | undefined)?.cause;
  if (cause instanceof Error) fields.cause = cause.message;
  return fields;
}

function statusMessage(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.length > 0 ? body.slice(0, 500) : undefined;
    }
  }
  const message = (parsed as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : undefined;
}
