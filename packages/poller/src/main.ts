#!/usr/bin/env node
import { mapStackTracesLazily } from '@kubewatcher/shared';
import { main } from './cli.ts';

// Stack traces name the TypeScript sources, from the bundle's source map, read only when one is printed.
mapStackTracesLazily();

// A run is idempotent (ImageUpdates first, baselines second), so stopping mid-way loses nothing:
// exit at once on SIGTERM (the Job's deadline) instead of waiting out the grace period.
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    process.stderr.write(
      `kubewatcher-poller: ${signal}: stopping; the next run picks up where this one stopped\n`,
    );
    process.exit(signal === 'SIGTERM' ? 143 : 130);
  });
}

process.exitCode = await main(process.argv.slice(2));
