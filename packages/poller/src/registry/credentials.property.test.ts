/**
 * Properties of credential matching over generated keys and hosts: it never throws, it agrees with a
 * plain dynamic-programming reading of path.Match, and its work grows linearly with the input, counted
 * in steps (a pull-secret key full of '*' once made matching exponential).
 */
import { normalizeReference } from '@kubewatcher/shared';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  findCredentials,
  globMatch,
  type Keyring,
  MAX_GLOB_LENGTH,
  type MatchProbe,
  parseConfigKey,
} from './credentials.ts';

/** path.Match over '*', '?' and literals by dynamic programming: slow, obviously right, an oracle. */
function oracle(glob: string, name: string): boolean {
  const g = [...glob];
  const n = [...name];
  // can[i][j]: g[i..] matches n[j..]
  const can = Array.from({ length: g.length + 1 }, () => new Array<boolean>(n.length + 1).fill(false));
  can[g.length]![n.length] = true;
  for (let i = g.length - 1; i >= 0; i--) {
    for (let j = n.length; j >= 0; j--) {
      const c = g[i];
      if (c === '*') can[i]![j] = can[i + 1]![j]! || (j < n.length && can[i]![j + 1]!);
      else can[i]![j] = j < n.length && (c === '?' || c === n[j]) && can[i + 1]![j + 1]!;
    }
  }
  return can[0]![0]!;
}

const globChars = fc.constantFrom('*', '?', 'a', 'b', '-');
const nameChars = fc.constantFrom('a', 'b', '-');

function keyring(servers: string[]): Keyring {
  return {
    source: 'team/regcred',
    entries: servers.map((server) => ({
      server,
      ...parseConfigKey(server),
      credential: { username: server, password: 'pw' },
    })),
  };
}

describe('globMatch (properties)', () => {
  it('agrees with the dynamic-programming oracle', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: globChars, maxLength: 12 }),
        fc.string({ unit: nameChars, maxLength: 16 }),
        (glob, name) => {
          expect(globMatch(glob, name)).toBe(oracle(glob, name));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('never throws, whatever the glob holds (classes, escapes, unicode)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }), (glob, name) => {
        expect(typeof globMatch(glob, name)).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('does work linear in the name, for every glob up to the length cap', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: globChars, minLength: 1, maxLength: MAX_GLOB_LENGTH }),
        fc.string({ unit: nameChars, minLength: 1, maxLength: 200 }),
        (glob, name) => {
          const probe: MatchProbe = { steps: 0 };
          globMatch(glob, name, probe);
          // Each name character is revisited at most once per glob token.
          expect(probe.steps).toBeLessThanOrEqual((MAX_GLOB_LENGTH + 1) * (name.length + 1) * 2);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('grows linearly on the star patterns that were exponential', () => {
    const glob = `${'*a'.repeat(20)}*b`;
    const steps = [1_000, 2_000, 4_000, 8_000].map((n) => {
      const probe: MatchProbe = { steps: 0 };
      expect(globMatch(glob, 'a'.repeat(n), probe)).toBe(false);
      return probe.steps;
    });
    for (let k = 1; k < steps.length; k++) {
      // Doubling the name at most doubles the work (plus a constant for the glob).
      expect(steps[k]!).toBeLessThanOrEqual(2 * steps[k - 1]! + 4 * glob.length);
    }
  });
});

describe('findCredentials (properties)', () => {
  it('never throws for any key, and its work is linear in keys × host length', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ unit: fc.constantFrom('*', '?', 'a', '.', ':', '/', '[', ']', '1'), maxLength: 60 }),
          {
            minLength: 1,
            maxLength: 8,
          },
        ),
        fc.integer({ min: 1, max: 60 }),
        (servers, repeat) => {
          const ref = normalizeReference(`${'a'.repeat(repeat)}.example:5000/acme/web:1`);
          const probe: MatchProbe = { steps: 0 };
          const found = findCredentials([keyring(servers)], ref, probe);
          expect(Array.isArray(found)).toBe(true);
          const hostLength = ref.domain.length;
          const keyLength = servers.reduce((sum, s) => sum + s.length, 0);
          expect(probe.steps).toBeLessThanOrEqual(
            2 * (MAX_GLOB_LENGTH + 1) * (hostLength + 1) * servers.length + 4 * keyLength,
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  it('matches a key made of many globs in steps proportional to the host', () => {
    // One Secret with such a key used to freeze every poller run.
    const key = `${'*'.repeat(30)}a${'*'.repeat(30)}.example.com`;
    const steps = [100, 200, 400].map((n) => {
      const probe: MatchProbe = { steps: 0 };
      findCredentials([keyring([key])], normalizeReference(`${'a'.repeat(n)}b.example.com/app`), probe);
      return probe.steps;
    });
    for (let k = 1; k < steps.length; k++) expect(steps[k]!).toBeLessThanOrEqual(2 * steps[k - 1]! + 200);
  });
});
