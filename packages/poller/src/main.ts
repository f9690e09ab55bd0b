#!/usr/bin/env node
import { startPoller } from './start.ts';

await startPoller(process.argv.slice(2));
