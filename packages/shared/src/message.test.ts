import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { boundMessage, MAX_MESSAGE_BYTES } from './message.ts';

describe('boundMessage', () => {
  it.each([
    ['plain text', 'registry x answered 500', 'registry x answered 500'],
    ['line breaks and tabs folded', 'a\n\tb\r\n  c', 'a b c'],
    ['bidirectional overrides and zero-width spaces dropped', 'ab\u202ecd\u200be', 'ab cd e'],
  ])('%s', (_name, input, expected) => {
    expect(boundMessage(input)).toBe(expected);
  });

  it('cuts on a character boundary and marks the cut', () => {
    const out = boundMessage('é'.repeat(1000), 11);
    expect(out).toBe('éééé…');
    expect(Buffer.byteLength(out)).toBeLessThanOrEqual(11);
  });

  it('refuses a limit too small for the mark', () => {
    expect(() => boundMessage('x', 2)).toThrow('boundMessage: maxBytes must be an integer ≥ 3, got 2');
  });

  it('always fits, is clean, keeps short clean messages, and is idempotent', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 1500 }),
        fc.integer({ min: 3, max: 2000 }),
        (text, max) => {
          const out = boundMessage(text, max);
          expect(Buffer.byteLength(out, 'utf8')).toBeLessThanOrEqual(max);
          // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for them is the point
          expect(out).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e]/);
          expect(boundMessage(out, max)).toBe(out);
        },
      ),
      { numRuns: 300 },
    );
    expect(Buffer.byteLength(boundMessage('x'.repeat(10_000)))).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });
});
