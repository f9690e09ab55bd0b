/**
 * buildStartupSnapshot with a small script: the blob it builds starts the script's deserialize main
 * function with the program's own arguments (the programs' own blobs, and that they are reproducible:
 * scripts/bundle.test.ts and test/image.test.ts).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { buildStartupSnapshot, SNAPSHOT_SCRIPT, snapshotStartArgs } from './programs.ts';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'kubewatcher-snapshot-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

// What the programs' snapshot scripts do: evaluate at build time, read arguments and time at each start.
const SCRIPT = `const { startupSnapshot } = require('node:v8');
const built = { greeting: 'evaluated while the blob was built' };
startupSnapshot.setDeserializeMainFunction(() => {
  process.stdout.write(JSON.stringify({ built: built.greeting, argv: process.argv.slice(1) }));
  process.exitCode = 3;
});
`;

function scriptIn(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, SNAPSHOT_SCRIPT), SCRIPT);
  return dir;
}

describe('buildStartupSnapshot', () => {
  it('builds a blob that runs the deserialize main function with the arguments after --', async () => {
    const blob = await buildStartupSnapshot(scriptIn('one'));
    const started = run(process.execPath, [...snapshotStartArgs(blob), '--help', 'x']);
    const failed = await started.catch((err: Error & { code?: number; stdout?: string }) => err);
    expect(failed).toMatchObject({ code: 3 });
    expect(JSON.parse((failed as { stdout: string }).stdout)).toEqual({
      built: 'evaluated while the blob was built',
      argv: ['--help', 'x'],
    });
  }, 60_000);
});
