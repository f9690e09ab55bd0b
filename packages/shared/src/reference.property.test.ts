/**
 * Properties of the reference grammar over generated input: the one-pass reader agrees with the
 * grammar written as a RegExp, parsing throws nothing but InvalidReferenceError, normalising is
 * stable, and the work is linear in the input, counted in characters read.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type GrammarProbe,
  InvalidReferenceError,
  matchGrammar,
  normalizeReference,
  parseReference,
  REFERENCE_GRAMMAR_PATTERN,
  referenceString,
} from './reference.ts';

const grammar = new RegExp(REFERENCE_GRAMMAR_PATTERN);
const alnum = fc.constantFrom('a', 'b', 'z', '0', '9');
const component = fc
  .array(
    fc.tuple(
      fc.constantFrom('.', '_', '__', '-', '--'),
      fc.string({ unit: alnum, minLength: 1, maxLength: 3 }),
    ),
    {
      maxLength: 2,
    },
  )
  .chain((rest) =>
    fc
      .string({ unit: alnum, minLength: 1, maxLength: 4 })
      .map((head) => head + rest.map(([sep, part]) => sep + part).join('')),
  );
const domain = fc.oneof(
  fc.constantFrom(
    'localhost',
    'docker.io',
    'index.docker.io',
    'ghcr.io',
    '127.0.0.1',
    '[::1]',
    'Reg-1.Example.com',
  ),
  fc
    .array(fc.stringMatching(/^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,3}[a-zA-Z0-9])?$/), {
      minLength: 1,
      maxLength: 3,
    })
    .map((parts) => parts.join('.')),
);
const port = fc.option(fc.integer({ min: 0, max: 65535 }).map(String), { nil: undefined });
const tag = fc.stringMatching(/^[\w][\w.-]{0,8}$/);
const hex = fc.string({ unit: fc.constantFrom('0', '9', 'a', 'f', 'A'), minLength: 32, maxLength: 70 });
const digest = fc
  .tuple(fc.constantFrom('sha256', 'sha512', 'sha384', 'md5', 'tar+gz', 'x.y'), hex)
  .map(([a, h]) => `${a}:${h}`);
/** References the grammar accepts, built from its pieces (a RegExp-driven generator is far too slow here). */
const valid = fc
  .record({
    domain: fc.option(fc.tuple(domain, port), { nil: undefined }),
    path: fc.array(component, { minLength: 1, maxLength: 3 }),
    tag: fc.option(tag, { nil: undefined }),
    digest: fc.option(digest, { nil: undefined }),
  })
  .map(
    (r) =>
      `${r.domain ? `${r.domain[0]}${r.domain[1] === undefined ? '' : `:${r.domain[1]}`}/` : ''}${r.path.join('/')}${r.tag === undefined ? '' : `:${r.tag}`}${r.digest === undefined ? '' : `@${r.digest}`}`,
  );
const chars = fc.constantFrom('a', 'B', '0', 'f', '.', '_', '-', '/', ':', '@', '[', ']', 's', 'h');
/** Valid references with one character changed, inserted or dropped: the grammar's edges. */
const nearlyValid = fc
  .tuple(valid, fc.nat(), chars, fc.constantFrom('replace', 'insert', 'drop'))
  .map(([s, at, c, how]) => {
    const i = s.length === 0 ? 0 : at % s.length;
    if (how === 'replace') return s.slice(0, i) + c + s.slice(i + 1);
    if (how === 'insert') return s.slice(0, i) + c + s.slice(i);
    return s.slice(0, i) + s.slice(i + 1);
  });
const anyInput = fc.oneof(valid, nearlyValid, fc.string({ unit: chars, maxLength: 60 }), fc.string());

function parseOrError(parse: (s: string) => unknown, input: string): unknown {
  try {
    return parse(input);
  } catch (error) {
    if (error instanceof InvalidReferenceError) return error;
    throw error;
  }
}

describe('reference grammar (properties)', () => {
  it('reads what the grammar RegExp reads, groups included', () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const m = grammar.exec(input);
        const expected = m
          ? {
              name: m[1],
              ...(m[2] === undefined ? {} : { tag: m[2] }),
              ...(m[3] === undefined ? {} : { digest: m[3] }),
            }
          : undefined;
        expect(matchGrammar(input)).toEqual(expected);
      }),
      { numRuns: 5000 },
    );
  });

  it('throws nothing but InvalidReferenceError, from either parser', () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        parseOrError(parseReference, input);
        parseOrError(normalizeReference, input);
      }),
      { numRuns: 5000 },
    );
  });

  it('normalises to a fixed point: the full form parses back to itself', () => {
    fc.assert(
      fc.property(valid, (input) => {
        const first = parseOrError(normalizeReference, input);
        if (first instanceof InvalidReferenceError) return;
        const ref = first as ReturnType<typeof normalizeReference>;
        expect(normalizeReference(referenceString(ref))).toEqual(ref);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads a bounded number of characters per input character', () => {
    fc.assert(
      fc.property(anyInput, (input) => {
        const probe: GrammarProbe = { steps: 0 };
        matchGrammar(input, probe);
        expect(probe.steps).toBeLessThanOrEqual(6 * (input.length + 1));
      }),
      { numRuns: 3000 },
    );
  });

  it('stays linear on shapes that make a backtracking matcher work hard', () => {
    const shapes = [
      (n: number) => `${'a-'.repeat(n)}!`,
      (n: number) => `${'a.'.repeat(n)}a/b`,
      (n: number) => `${'a/'.repeat(n)}:`,
      (n: number) => `a${'__a'.repeat(n)}_`,
      (n: number) => `a@sha256:${'0'.repeat(n)}x`,
      (n: number) => `[${':'.repeat(n)}]:1/a`,
    ];
    for (const shape of shapes) {
      const steps = [1_000, 2_000, 4_000].map((n) => {
        const probe: GrammarProbe = { steps: 0 };
        matchGrammar(shape(n), probe);
        return probe.steps;
      });
      expect(steps[1]!).toBeLessThanOrEqual(2 * steps[0]! + 10);
      expect(steps[2]!).toBeLessThanOrEqual(2 * steps[1]! + 10);
    }
  });
});
