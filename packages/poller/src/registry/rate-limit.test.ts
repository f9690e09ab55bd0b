import { describe, expect, it } from 'vitest';
import { parseRateLimit, parseRetryAfter } from './rate-limit.ts';

const NOW = Date.parse('2026-03-01T12:00:00Z');

describe('parseRetryAfter', () => {
  const cases: Array<[string | null | undefined, number | undefined]> = [
    [null, undefined],
    [undefined, undefined],
    ['', undefined],
    ['0', 0],
    ['120', 120_000],
    [' 7 ', 7000],
    ['1.5', 1500],
    ['Sun, 01 Mar 2026 12:00:30 GMT', 30_000],
    ['Sunday, 01-Mar-26 12:01:00 GMT', 60_000],
    ['Sun, 01 Mar 2026 11:00:00 GMT', 0],
    ['soon', undefined],
    ['-5', undefined],
  ];
  it.each(cases)('%j → %j', (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });
});

function headers(h: Record<string, string>) {
  const lower = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
  return { get: (name: string) => lower[name.toLowerCase()] ?? null };
}

describe('parseRateLimit', () => {
  it('reads Docker Hub headers with window and source', () => {
    expect(
      parseRateLimit(
        headers({
          'RateLimit-Limit': '100;w=21600',
          'RateLimit-Remaining': '76;w=21600',
          'Docker-RateLimit-Source': '203.0.113.7',
        }),
      ),
    ).toEqual({ limit: 100, remaining: 76, windowSeconds: 21600, source: '203.0.113.7' });
  });
  it('reads bare numbers', () => {
    expect(parseRateLimit(headers({ 'ratelimit-limit': '200', 'ratelimit-remaining': '0' }))).toEqual({
      limit: 200,
      remaining: 0,
    });
  });
  it('takes the window from the remainder when the limit has none', () => {
    expect(parseRateLimit(headers({ 'ratelimit-limit': '200', 'ratelimit-remaining': '5; w=3600' }))).toEqual(
      {
        limit: 200,
        remaining: 5,
        windowSeconds: 3600,
      },
    );
  });
  it('is undefined without headers (unlimited)', () => {
    expect(parseRateLimit(headers({}))).toBeUndefined();
  });
  it('is undefined when one header is missing or unreadable', () => {
    expect(parseRateLimit(headers({ 'ratelimit-limit': '100;w=21600' }))).toBeUndefined();
    expect(
      parseRateLimit(headers({ 'ratelimit-limit': 'lots', 'ratelimit-remaining': '1' })),
    ).toBeUndefined();
  });
});
