/** Reading what a registry says about its limits: `Retry-After` and Docker Hub's `ratelimit-*` headers. */
import type { RateLimitInfo } from './types.ts';

/** Reads response headers by name, case-insensitively (fetch's Headers does). */
export interface HeaderSource {
  get(name: string): string | null;
}

/**
 * Milliseconds to wait from `Retry-After`: delay-seconds or an HTTP date (RFC 9110 §10.2.3), relative to
 * `nowMs`. A date in the past means 0. Undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | undefined {
  if (value == null) return undefined;
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  // An HTTP date names its day or month; Date.parse alone would also read '-5' as a year.
  if (!/[a-z]/i.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}

/** `100;w=21600` → { value: 100, window: 21600 }. */
function parseQuota(value: string | null): { value: number; window?: number } | undefined {
  if (value == null) return undefined;
  const [head, ...params] = value.split(';');
  const n = Number(head?.trim());
  if (head === undefined || head.trim() === '' || !Number.isFinite(n) || n < 0) return undefined;
  const out: { value: number; window?: number } = { value: n };
  for (const param of params) {
    const [k, v] = param.split('=').map((x) => x.trim());
    if (k?.toLowerCase() === 'w' && v !== undefined && /^\d+$/.test(v)) out.window = Number(v);
  }
  return out;
}

/**
 * Docker Hub's pull budget from `ratelimit-limit: 100;w=21600`, `ratelimit-remaining: 76;w=21600` and
 * `docker-ratelimit-source`. Undefined when the limit or the remainder is missing: no headers means
 * the registry sets no limit.
 */
export function parseRateLimit(headers: HeaderSource): RateLimitInfo | undefined {
  const limit = parseQuota(headers.get('ratelimit-limit'));
  const remaining = parseQuota(headers.get('ratelimit-remaining'));
  if (!limit || !remaining) return undefined;
  const info: RateLimitInfo = { limit: limit.value, remaining: remaining.value };
  const window = limit.window ?? remaining.window;
  if (window !== undefined) info.windowSeconds = window;
  const source = headers.get('docker-ratelimit-source')?.trim();
  if (source) info.source = source;
  return info;
}
