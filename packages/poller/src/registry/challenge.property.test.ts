/**
 * Properties of the WWW-Authenticate parser over generated headers: it never throws, it reads back
 * what a well-formed challenge says, and its work is linear in the header, counted in steps.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseAuthChallenges } from './challenge.ts';

const headerChars = fc.constantFrom(
  'a',
  'B',
  '=',
  '"',
  '\\',
  ',',
  ' ',
  '\t',
  '/',
  '+',
  '-',
  '.',
  '~',
  '!',
  'é',
  '\n',
);
const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9._-]{0,10}$/);
const quotable = fc.string({ unit: fc.constantFrom('a', ' ', ',', '"', '\\', '=', '/', ':'), maxLength: 20 });

function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}

describe('parseAuthChallenges (properties)', () => {
  it('never throws and returns lower-cased schemes, for any header', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ unit: headerChars, maxLength: 200 }), fc.string({ maxLength: 200 })),
        (header) => {
          for (const c of parseAuthChallenges(header)) expect(c.scheme).toBe(c.scheme.toLowerCase());
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('reads back every parameter of well-formed challenges, quoted values included', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            scheme: token,
            params: fc.uniqueArray(fc.tuple(token, quotable), {
              minLength: 1,
              maxLength: 4,
              selector: ([name]) => name.toLowerCase(),
            }),
          }),
          { minLength: 1, maxLength: 4 },
        ),
        (challenges) => {
          const header = challenges
            .map((c) => `${c.scheme} ${c.params.map(([k, v]) => `${k}=${quote(v)}`).join(', ')}`)
            .join(', ');
          const parsed = parseAuthChallenges(header);
          expect(parsed.map((c) => c.scheme)).toEqual(challenges.map((c) => c.scheme.toLowerCase()));
          parsed.forEach((c, i) => {
            expect(c.params).toEqual(
              Object.fromEntries(challenges[i]!.params.map(([k, v]) => [k.toLowerCase(), v])),
            );
          });
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('does a bounded number of steps per character, whatever the header', () => {
    fc.assert(
      fc.property(fc.string({ unit: headerChars, maxLength: 400 }), (header) => {
        const probe = { steps: 0 };
        parseAuthChallenges(header, probe);
        expect(probe.steps).toBeLessThanOrEqual(6 * (header.length + 1));
      }),
      { numRuns: 2000 },
    );
  });

  it('stays linear on shapes that make a naive parser rescan (token68 runs, many challenges)', () => {
    const shapes = [
      (n: number) => `x ${'a/'.repeat(n)} y`,
      (n: number) => 'a '.repeat(n),
      (n: number) => `Bearer ${'k=v,'.repeat(n)}`,
      (n: number) => `Bearer realm="${'\\"'.repeat(n)}`,
      (n: number) => ','.repeat(n),
    ];
    for (const shape of shapes) {
      const steps = [1_000, 2_000, 4_000].map((n) => {
        const probe = { steps: 0 };
        parseAuthChallenges(shape(n), probe);
        return probe.steps;
      });
      expect(steps[1]!).toBeLessThanOrEqual(2 * steps[0]! + 10);
      expect(steps[2]!).toBeLessThanOrEqual(2 * steps[1]! + 10);
    }
  });
});
