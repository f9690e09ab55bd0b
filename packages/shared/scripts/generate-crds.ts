/**
 * Writes crds/*.yaml from the TypeBox schemas in packages/shared/src/api (`pnpm crds`).
 * With --check, writes nothing and exits 1 when a committed file differs from what it would write.
 *
 * Usage: node packages/shared/scripts/generate-crds.ts [--check]
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { crdFiles } from '../src/api/crd.ts';
import { writeOrCheck } from './generated-files.ts';

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

const stale = writeOrCheck(root, crdFiles(), {
  check: options.check,
  staleWord: 'differs from the schemas',
});
if (stale > 0) {
  console.error(`${stale} CRD file(s) out of date: run \`pnpm crds\` and commit the result`);
  process.exit(1);
}
