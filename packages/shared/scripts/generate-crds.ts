/**
 * Writes crds/*.yaml from the TypeBox schemas in packages/shared/src/api (`pnpm crds`).
 * With --check, writes nothing and exits 1 when a committed file differs from what it would write.
 *
 * Usage: node packages/shared/scripts/generate-crds.ts [--check]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { crdFiles } from '../src/api/crd.ts';

// node:util's parseArgs rather than yargs: this script takes one flag and packages/shared does not
// depend on yargs.
const { values: options } = parseArgs({
  options: {
    check: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (options.help) {
  console.log('Usage: generate-crds [--check]\n  --check  exit 1 when crds/*.yaml differ from the schemas');
  process.exit(0);
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The first lines where `actual` and `expected` differ, in unified-diff style. */
function firstDifferences(actual: string, expected: string, max = 12): string[] {
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

let stale = 0;
for (const { path, content } of crdFiles()) {
  const file = join(root, path);
  const current = existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  if (current === content) {
    console.log(`${path}: up to date`);
    continue;
  }
  if (options.check) {
    stale++;
    console.error(`${path}: ${current === undefined ? 'missing' : 'differs from the schemas'}`);
    if (current !== undefined) {
      for (const line of firstDifferences(current, content)) console.error(`  ${line}`);
    }
    continue;
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content);
  console.log(`${relative(root, file)}: written`);
}
if (stale > 0) {
  console.error(`${stale} CRD file(s) out of date: run \`pnpm crds\` and commit the result`);
  process.exit(1);
}
