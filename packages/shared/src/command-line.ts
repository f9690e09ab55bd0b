import yargs, { type InferredOptionTypes, type Options } from 'yargs';
import { createLogger, LOG_LEVELS, type LogFormat, type Logger, type LogLevel } from './logging.ts';

/** The logging flags every Kubewatcher command takes. */
export const LOG_OPTIONS = {
  'log-level': {
    choices: LOG_LEVELS,
    default: 'info' as LogLevel,
    describe: 'least severe level logged',
  },
  'log-format': {
    choices: ['json', 'text'] as const,
    describe: 'log format; default text on a terminal, JSON otherwise',
  },
} satisfies Record<string, Options>;

/**
 * Parses a command line the one way every Kubewatcher command does: strict flags, `--help`, no
 * version flag, and usage errors printed as one line. Resolves undefined on a usage error (the caller
 * exits 2); `help` is true when `--help` was printed (the caller exits 0).
 */
export async function parseCommandLine<O extends Record<string, Options>>(
  name: string,
  usage: string,
  options: O,
  argv: readonly string[],
): Promise<(InferredOptionTypes<O> & { help?: boolean }) | undefined> {
  // yargs reports some usage errors by throwing synchronously from parseAsync: run it inside a
  // promise so every usage error reaches the catch below.
  return Promise.resolve()
    .then(() =>
      yargs([...argv])
        .scriptName(name)
        .usage(usage)
        .options(options)
        .strict()
        .help()
        .version(false)
        .exitProcess(false)
        .fail((msg, err) => {
          throw err ?? new Error(msg);
        })
        .parseAsync(),
    )
    .then((args) => args as unknown as InferredOptionTypes<O> & { help?: boolean })
    .catch((err: Error) => {
      process.stderr.write(`${name}: ${err.message}\n`);
      return undefined;
    });
}

/** The logger a command's `--log-level` and `--log-format` ask for. */
export function commandLogger(
  component: string,
  args: { 'log-level'?: string; 'log-format'?: string },
): Logger {
  return createLogger({
    component,
    level: (args['log-level'] ?? 'info') as LogLevel,
    ...(args['log-format'] ? { format: args['log-format'] as LogFormat } : {}),
  });
}
