import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { SourceMap, type SourceMapping } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { LineIndexedSourceMap, sourceMappedStackTraces } from './stack-traces.ts';

const dir = mkdtempSync(join(tmpdir(), 'kubewatcher-stack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The call sites V8 records for an error thrown by `fn`, with the error. */
function thrownBy(fn: () => void): { error: Error; frames: NodeJS.CallSite[] } {
  const saved = Error.prepareStackTrace;
  let frames: NodeJS.CallSite[] = [];
  Error.prepareStackTrace = (_error, callSites) => {
    frames = callSites;
    return '';
  };
  try {
    fn();
  } catch (error) {
    void (error as Error).stack; // formats the trace, which records the call sites
    return { error: error as Error, frames };
  } finally {
    Error.prepareStackTrace = saved;
  }
  throw new Error('fn did not throw');
}

describe('sourceMappedStackTraces', () => {
  it('names the original source, line and column of frames in a file with a map', async () => {
    // Line 2 of the generated file maps (one segment at column 0) to line 10, column 3 of src/cli.ts.
    const generated = join(dir, 'bundle.mjs');
    writeFileSync(generated, 'export function boom() {\n  throw new RangeError("bad --timeout");\n}\n');
    writeFileSync(
      `${generated}.map`,
      JSON.stringify({ version: 3, sources: ['packages/poller/src/cli.ts'], names: [], mappings: ';AASE' }),
    );
    const { boom } = (await import(pathToFileURL(generated).href)) as { boom: () => void };
    const { error, frames } = thrownBy(boom);

    const stack = sourceMappedStackTraces()(error, frames).split('\n');
    expect(stack[0]).toBe('RangeError: bad --timeout');
    expect(stack[1]).toMatch(/^ {4}at boom \(packages\/poller\/src\/cli\.ts:10:3\)$/);
    // Frames of files without a map stay as V8 wrote them.
    expect(stack[2]).toContain('stack-traces.test.ts:');
  });

  it('reads the map `mapFiles` names for a file (a script compiled into a start-up snapshot)', async () => {
    const generated = join(dir, 'snapshot.mjs');
    writeFileSync(generated, 'export function boom() {\n  throw new TypeError("no kubeconfig");\n}\n');
    const elsewhere = join(dir, 'beside-the-blob.map');
    writeFileSync(
      elsewhere,
      JSON.stringify({ version: 3, sources: ['packages/poller/src/start.ts'], names: [], mappings: ';AAIE' }),
    );
    const { boom } = (await import(pathToFileURL(generated).href)) as { boom: () => void };
    const { error, frames } = thrownBy(boom);

    const stack = sourceMappedStackTraces({ [generated]: elsewhere })(error, frames).split('\n');
    expect(stack[1]).toMatch(/^ {4}at boom \(packages\/poller\/src\/start\.ts:5:3\)$/);
  });
});

/** Base64 VLQ, as source maps write it. */
function vlq(n: number): string {
  const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  let v = n < 0 ? -n * 2 + 1 : n * 2;
  let out = '';
  do {
    let digit = v & 31;
    v >>>= 5;
    if (v > 0) digit |= 32;
    out += chars[digit];
  } while (v > 0);
  return out;
}

/** A random but valid mappings string: empty lines, generated-only segments, names, big jumps. */
function randomMappings(seed: number, lines: number): string {
  let x = seed;
  const rand = (n: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  let source = 0;
  let line = 0;
  let column = 0;
  const out: string[] = [];
  for (let l = 0; l < lines; l++) {
    const segments: string[] = [];
    const count = rand(4) === 0 ? 0 : 1 + rand(6);
    for (let s = 0; s < count; s++) {
      const step = 1 + rand(s === 0 ? 3 : 40);
      if (rand(5) === 0) {
        segments.push(vlq(step));
        continue;
      }
      const dSource = rand(3) === 0 ? rand(5) - source : 0;
      const dLine = Math.max(-line, rand(200) - 100);
      const dColumn = Math.max(-column, rand(60) - 30);
      source += dSource;
      line += dLine;
      column += dColumn;
      let segment = vlq(step) + vlq(dSource) + vlq(dLine) + vlq(dColumn);
      if (rand(2) === 0) {
        segment += vlq(rand(3));
      }
      segments.push(segment);
    }
    out.push(segments.join(','));
  }
  return out.join(';');
}

describe('LineIndexedSourceMap', () => {
  it("finds what Node's SourceMap finds, position by position", () => {
    for (const seed of [1, 7, 42]) {
      const payload = {
        version: 3,
        sources: ['a.ts', 'b.ts', 'c.ts', 'd.ts', 'e.ts'],
        names: Array.from({ length: 2000 }, (_, i) => `n${i}`),
        mappings: randomMappings(seed, 300),
        file: 'bundle.mjs',
        sourceRoot: '',
        sourcesContent: [],
      };
      const ours = new LineIndexedSourceMap(payload);
      const node = new SourceMap(payload);
      let mapped = 0;
      for (let line = 0; line < 302; line++) {
        for (let column = 0; column < 160; column += 3) {
          const entry = node.findEntry(line, column) as Partial<SourceMapping>;
          const expected =
            entry.originalSource === undefined
              ? undefined
              : { source: entry.originalSource, line: entry.originalLine, column: entry.originalColumn };
          if (expected) mapped++;
          expect(ours.find(line, column), `seed ${seed}, ${line}:${column}`).toEqual(expected);
        }
      }
      expect(mapped).toBeGreaterThan(1000);
    }
  });

  it('says which map is not one', () => {
    expect(() => new LineIndexedSourceMap({ sources: [], mappings: 'AA!A' })).toThrow(
      'mappings has "!" at 2',
    );
    expect(() => new LineIndexedSourceMap({} as never)).toThrow('mappings or sources missing');
  });
});
