#!/usr/bin/env node
import { mapStackTracesLazily } from '@kubewatcher/shared';
import { main } from './cli.ts';

// Stack traces name the TypeScript sources, from the bundle's source map, read only when one is printed.
mapStackTracesLazily();

const code = await main(process.argv.slice(2));
// Informer sockets and timers are closed by stop(); exit explicitly so a stray handle never hangs a pod.
process.exit(code);
