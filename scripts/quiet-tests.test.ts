/**
 * A passing test run prints the summary, not the logs of the components under test; a failing test
 * prints what it logged (vitest.config.ts, `silent: 'passed-only'`). Checked by running vitest with the
 * repository's setting on two probe tests that log through the project's logger, as the controller
 * and poller under test do.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = join(root, '.local', `quiet-tests-${process.pid}`);

const PROBE = `
import { expect, it } from 'vitest';
import { createLogger } from ${JSON.stringify(join(root, 'packages/shared/src/logging.ts'))};
const logger = createLogger({ component: 'probe', format: 'json' });
it('passes', () => {
  logger.info('logged by the passing test');
  expect(1).toBe(1);
});
it('fails', () => {
  logger.warn('logged by the failing test');
  expect(1).toBe(2);
});
`;

// The repository's setting, read from its config rather than repeated here.
const CONFIG = `
import { defineConfig } from 'vitest/config';
import repository from ${JSON.stringify(join(root, 'vitest.config.ts'))};
export default defineConfig({ test: { include: ['probe.test.ts'], silent: repository.test?.silent } });
`;

let output = '';

beforeAll(async () => {
  await mkdir(work, { recursive: true });
  await writeFile(join(work, 'probe.test.ts'), PROBE);
  await writeFile(join(work, 'vitest.config.ts'), CONFIG);
  const { KUBEWATCHER_TEST_VERBOSE: _verbose, ...env } = process.env;
  const vitest = join(root, 'node_modules/vitest/vitest.mjs');
  const result = await promisify(execFile)(
    process.execPath,
    [vitest, 'run', '--root', work, '--config', join(work, 'vitest.config.ts'), '--reporter=default'],
    { cwd: work, env: { ...env, NO_COLOR: '1' } },
  ).catch((err: { stdout?: string; stderr?: string }) => err);
  output = `${result.stdout ?? ''}${result.stderr ?? ''}`;
}, 60_000);

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

it('ran both probes', () => {
  expect(output).toMatch(/1 failed \| 1 passed/);
});

it("leaves out a passing test's logs", () => {
  expect(output).not.toContain('logged by the passing test');
});

it("prints a failing test's logs under its name", () => {
  expect(output).toMatch(/stderr \| probe\.test\.ts > fails\n.*"message":"logged by the failing test"/);
});
