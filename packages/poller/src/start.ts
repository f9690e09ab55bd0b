import { mapStackTracesLazily } from '@kubewatcher/shared';
import { main } from './cli.ts';

/**
 * What a poller process does, from either entry point: main.ts (the ES module bundle, tsc's output, the
 * sources) or snapshot.ts (the start-up snapshot the image runs). `sourceMaps` as mapStackTracesLazily.
 */
export async function startPoller(argv: string[], sourceMaps: Record<string, string> = {}): Promise<void> {
  // Stack traces name the TypeScript sources, from the bundle's source map, read only when one is printed.
  mapStackTracesLazily(sourceMaps);

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

  process.exitCode = await main(argv);
}
