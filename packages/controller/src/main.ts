#!/usr/bin/env node
import { main } from './cli.ts';

const code = await main(process.argv.slice(2));
// Informer sockets and timers are closed by stop(); exit explicitly so a stray handle never hangs a pod.
process.exit(code);
