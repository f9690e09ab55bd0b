import { describe, expect, it } from 'vitest';
import { parseDuration } from './duration.ts';

describe('parseDuration', () => {
  it.each([
    ['1m', 60_000],
    ['5m', 300_000],
    ['30s', 30_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['0.5m30s', 60_000],
    ['1500ms', 1500],
    ['60000000us', 60_000],
    ['60000000µs', 60_000],
    ['60000000μs', 60_000],
    ['1000000ns', 1],
  ])('reads %s as %d ms', (text, milliseconds) => {
    expect(parseDuration(text)).toBe(milliseconds);
  });

  it.each(['', '5', '5 minutes', '-1m', '1d', 'm', '.5m', '1m ', '9999999999h'])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});
