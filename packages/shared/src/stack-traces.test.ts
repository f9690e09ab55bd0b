import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { sourceMappedStackTraces } from './stack-traces.ts';

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
