/**
 * Writing generated files, or checking them (`--check`): shared by generate-crds.ts and
 * scripts/generate-docs.ts. Check mode writes nothing and prints, for each stale file, the first lines
 * that differ, so CI says what changed rather than only that something did.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface GeneratedFile {
  /** Relative to `root`. */
  path: string;
  content: string;
}

/** The first lines where `actual` and `expected` differ, in unified-diff style. */
export function firstDifferences(actual: string, expected: string, max = 12): string[] {
  const a = actual.split('\n');
  const b = expected.split('\n');
  const lines: string[] = [];
  for (let i = 0; i < Math.max(a.length, b.length) && lines.length < max; i++) {
    if (a[i] === b[i]) continue;
    lines.push(`@@ line ${i + 1}`);
    if (a[i] !== undefined) lines.push(`- ${a[i]}`);
    if (b[i] !== undefined) lines.push(`+ ${b[i]}`);
  }
  return lines;
}

/**
 * Writes each file whose content changed (or, with `check`, writes nothing and reports it as
 * `path: <staleWord>` with its first differences). Returns how many files are stale in check mode.
 */
export function writeOrCheck(
  root: string,
  files: Iterable<GeneratedFile>,
  opts: { check: boolean; staleWord: string },
): number {
  let stale = 0;
  for (const { path, content } of files) {
    const file = join(root, path);
    const current = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
    if (current === content) {
      console.log(`${path}: up to date`);
      continue;
    }
    if (opts.check) {
      stale++;
      console.error(`${path}: ${current === undefined ? 'missing' : opts.staleWord}`);
      if (current !== undefined) {
        for (const line of firstDifferences(current, content)) console.error(`  ${line}`);
      }
      continue;
    }
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content);
    console.log(`${path}: written`);
  }
  return stale;
}
