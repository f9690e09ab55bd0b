import { defineConfig } from 'vitest/config';

// Two layers: unit tests of pure functions (no cluster) and integration tests that run against the
// real local control plane and registries, started once per run by the global setup.
const conditions = ['@kubewatcher/source'];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: conditions } },
  test: {
    reporters: ['default'],
    // The components under test log as they would in production (JSON lines, through the console).
    // Vitest keeps each test's console output with the test and prints it only when the test fails,
    // so a passing run shows the summary and a failing test shows what it logged.
    // KUBEWATCHER_TEST_VERBOSE=1 prints everything as it happens.
    silent: process.env.KUBEWATCHER_TEST_VERBOSE === '1' ? false : 'passed-only',
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['packages/*/src/**/*.test.ts', 'scripts/**/*.test.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
          globalSetup: ['scripts/lib/test-global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
