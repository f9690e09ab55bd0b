#!/usr/bin/env node
import { startController } from './start.ts';

await startController(process.argv.slice(2));
