import winston from 'winston';

export type LogFormat = 'json' | 'text';
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Keys whose values never reach a log line, whatever object carries them. */
const SECRET_KEYS = /^(authorization|password|token|access_token|identitytoken|auth|secret|registrytoken)$/i;

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (SECRET_KEYS.test(key)) info[key] = '[redacted]';
  }
  return info;
});

/**
 * The one logger factory: JSON lines by default in a container, a human format on a terminal.
 * `component` names the process (controller, poller) in every line.
 */
export function createLogger(opts: {
  component: string;
  level?: LogLevel;
  format?: LogFormat;
  stream?: NodeJS.WritableStream;
}): winston.Logger {
  const format = opts.format ?? (process.stderr.isTTY ? 'text' : 'json');
  const base = [redact(), winston.format.timestamp()];
  const shape =
    format === 'json'
      ? winston.format.json()
      : winston.format.printf(({ timestamp, level, message, component: _c, ...rest }) => {
          const extra = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          return `${timestamp} ${level.toUpperCase().padEnd(5)} ${message}${extra ? ` ${extra}` : ''}`;
        });
  return winston.createLogger({
    level: opts.level ?? 'info',
    defaultMeta: { component: opts.component },
    format: winston.format.combine(...base, shape),
    transports: [
      opts.stream
        ? new winston.transports.Stream({ stream: opts.stream })
        : new winston.transports.Console({ stderrLevels: [...LOG_LEVELS] }),
    ],
  });
}

/**
 * The logger every part of Kubewatcher takes: the four levels, a message and structured fields. The
 * winston logger from `createLogger` is one; tests pass `silentLogger` or a recorder.
 */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): unknown;
  warn(message: string, meta?: Record<string, unknown>): unknown;
  info(message: string, meta?: Record<string, unknown>): unknown;
  debug(message: string, meta?: Record<string, unknown>): unknown;
}

/** Drops every line. */
export const silentLogger: Logger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
};
