#!/usr/bin/env node
import { pluginMain } from './cli.ts';

process.exitCode = await pluginMain(process.argv.slice(2));
