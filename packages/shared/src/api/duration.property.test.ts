/** Properties of parseDuration: it accepts exactly DURATION_PATTERN, never throws, and reads each character once. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DURATION_PATTERN, parseDuration } from './duration.ts';

const pattern = new RegExp(DURATION_PATTERN);
const chars = fc.constantFrom('0', '1', '9', '.', 'n', 'u', 'µ', 'μ', 'm', 's', 'h', 'd', '-', ' ');
const term = fc
  .tuple(
    fc.nat({ max: 10_000 }),
    fc.option(fc.nat({ max: 999 }), { nil: undefined }),
    fc.constantFrom('ns', 'us', 'µs', 'μs', 'ms', 's', 'm', 'h'),
  )
  .map(([whole, fraction, unit]) => `${whole}${fraction === undefined ? '' : `.${fraction}`}${unit}`);

describe('parseDuration (properties)', () => {
  it('accepts exactly what the schema pattern accepts, and never throws', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: chars, maxLength: 30 }), fc.string({ maxLength: 30 })),
        (text) => {
          const ms = parseDuration(text);
          if (!pattern.test(text)) expect(ms).toBeUndefined();
          else expect(ms === undefined || Number.isFinite(ms)).toBe(true);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('reads every well-formed duration as the sum of its terms', () => {
    fc.assert(
      fc.property(fc.array(term, { minLength: 1, maxLength: 6 }), (terms) => {
        const text = terms.join('');
        const expected = terms.reduce((sum, t) => sum + (parseDuration(t) ?? Number.NaN), 0);
        const ms = parseDuration(text)!;
        // Sums of floats in another order: equal to a relative 1e-12.
        expect(Math.abs(ms - expected)).toBeLessThanOrEqual(1e-12 * Math.max(1, expected));
      }),
      { numRuns: 2000 },
    );
  });

  it('reads each character at most once, whatever the text', () => {
    fc.assert(
      fc.property(fc.string({ unit: chars, maxLength: 2_000 }), (text) => {
        const probe = { steps: 0 };
        parseDuration(text, probe);
        expect(probe.steps).toBeLessThanOrEqual(text.length);
      }),
      { numRuns: 1000 },
    );
    const probe = { steps: 0 };
    expect(parseDuration(`${'1s'.repeat(50_000)}x`, probe)).toBeUndefined();
    expect(probe.steps).toBeLessThanOrEqual(100_001);
  });
});
