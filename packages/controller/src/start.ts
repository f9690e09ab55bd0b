import { mapStackTracesLazily } from '@kubewatcher/shared';
import { main } from './cli.ts';

/**
 * What a controller process does, from either entry point: main.ts (the ES module bundle, tsc's output,
 * the sources) or snapshot.ts (the start-up snapshot the image runs). `sourceMaps` as mapStackTracesLazily.
 */
export async function startController(
  argv: string[],
  sourceMaps: Record<string, string> = {},
): Promise<never> {
  // Stack traces name the TypeScript sources, from the bundle's source map, read only when one is printed.
  mapStackTracesLazily(sourceMaps);

  const code = await main(argv);
  // Informer sockets and timers are closed by stop(); exit explicitly so a stray handle never hangs a pod.
  process.exit(code);
}
