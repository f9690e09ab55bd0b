import { describe, expect, it } from 'vitest';
import { exponentialDelay, jitter } from './backoff.ts';

describe('exponentialDelay', () => {
  it.each([
    [0, 1000, 30_000, 1000],
    [1, 1000, 30_000, 2000],
    [4, 1000, 30_000, 16_000],
    [5, 1000, 30_000, 30_000],
    [2000, 5, 1_000_000, 1_000_000],
  ])('attempt %i from %i ms capped at %i ms waits %i ms', (attempt, base, max, expected) => {
    expect(exponentialDelay(attempt, base, max)).toBe(expected);
  });
});

describe('jitter', () => {
  it('only ever shortens a delay, by up to `factor` of it', () => {
    expect(jitter(1000, 0.2, () => 0)).toBe(1000);
    expect(jitter(1000, 0.2, () => 0.5)).toBe(900);
    expect(jitter(1000, 0.2, () => 0.999)).toBeCloseTo(800.2);
    expect(jitter(1000, 1, () => 0.75)).toBe(250);
  });
});
