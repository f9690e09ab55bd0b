/**
 * The webhook receiver's HTTP server, on its own port (off unless --webhook-bind-address is given).
 * `POST /hook/<receiver>[/<token>]`. A public endpoint, so: the token is checked before the body is
 * read, bodies are capped, slow clients are cut off, each receiver is rate-limited, and every refusal
 * is a bare status code (401 for any authentication failure, an unknown receiver included, so names
 * cannot be probed). Only an authenticated body that is not its format's shape gets a reason (400).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { errorFields, type Logger } from '@kubewatcher/shared';
import {
  type Clock,
  type ListeningServer,
  listen,
  parseAddress,
  systemClock,
  TokenBucket,
} from '../machinery/index.ts';
import { PayloadError, type Push, parsePayload } from './payloads.ts';
import { authenticate, pathTokenMatches, type Receiver, splitHookPath } from './receivers.ts';

/** 256 KiB: a registry's notification is a few KiB; a distribution envelope of many events stays well under. */
export const MAX_BODY_BYTES = 256 * 1024;

export interface WebhookServerOptions {
  /** `host:port`, `:port` or `port`. */
  address: string;
  /** The receivers as configured now (the file may be edited while running). */
  receivers: () => readonly Receiver[];
  /** Acts on an authenticated push; resolves to how many WatchedImages it made due. */
  onPushes: (receiver: Receiver, pushes: Push[]) => Promise<number>;
  logger: Logger;
  maxBodyBytes?: number;
  /** Per receiver: sustained requests per second and burst. */
  rateLimit?: { qps: number; burst: number };
  clock?: Clock;
  /** False while the answer could be wrong (the WatchedImage cache has not synced): 503. */
  ready?: () => boolean;
  /** Counts each request's outcome, e.g. for a metric. */
  onResult?: (receiver: string, code: number) => void;
}

export type WebhookServer = ListeningServer;

class BodyTooLarge extends Error {}

export async function startWebhookServer(opts: WebhookServerOptions): Promise<WebhookServer> {
  const { logger } = opts;
  const maxBody = opts.maxBodyBytes ?? MAX_BODY_BYTES;
  const clock = opts.clock ?? systemClock;
  const limiters = new Map<string, TokenBucket>();
  const { host, port } = parseAddress(opts.address);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = new URL(req.url ?? '/', 'http://webhook').pathname;
    const hook = splitHookPath(path);
    if (!hook) return send(res, 404);
    const receiver = opts.receivers().find((r) => r.name === hook.name);
    const result = (code: number) => {
      opts.onResult?.(receiver ? receiver.name : '(unknown)', code);
      send(res, code);
    };
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return result(405);
    }
    // The token first: nobody without it gets as far as making the server read a body.
    if (!receiver || !pathTokenMatches(receiver, hook.token)) return result(401);
    // Until the WatchedImage cache has synced a push could match nothing: the sender retries.
    if (opts.ready && !opts.ready()) return result(503);
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > maxBody) return result(413);

    let body: Buffer;
    try {
      body = await readBody(req, maxBody);
    } catch (err) {
      if (err instanceof BodyTooLarge) return result(413);
      throw err;
    }
    const ok = authenticate(receiver, {
      ...(hook.token !== undefined ? { pathToken: hook.token } : {}),
      ...(typeof req.headers.authorization === 'string' ? { authorization: req.headers.authorization } : {}),
      ...(typeof req.headers['x-hub-signature-256'] === 'string'
        ? { signature: req.headers['x-hub-signature-256'] }
        : {}),
      body,
    });
    if (!ok) return result(401);
    // Only authenticated requests count against a receiver's rate: others cannot starve it.
    let limiter = limiters.get(receiver.name);
    if (!limiter) {
      limiter = new TokenBucket(opts.rateLimit?.qps ?? 2, opts.rateLimit?.burst ?? 20, clock);
      limiters.set(receiver.name, limiter);
    }
    if (!limiter.tryTake()) return result(429);

    let pushes: Push[];
    try {
      pushes = parsePayload(receiver.format, body.toString('utf8'), {
        headers: req.headers,
        ...(receiver.registry ? { registry: receiver.registry } : {}),
      });
    } catch (err) {
      if (!(err instanceof PayloadError)) throw err;
      logger.info('webhook body refused', { receiver: receiver.name, error: err.message });
      opts.onResult?.(receiver.name, 400);
      return send(res, 400, `${err.message}\n`);
    }
    const due = pushes.length > 0 ? await opts.onPushes(receiver, pushes) : 0;
    logger.info('webhook received', {
      receiver: receiver.name,
      pushes: pushes.map((p) => p.image),
      watchedImagesDue: due,
    });
    result(202);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error('webhook: request failed', errorFields(err));
      if (!res.headersSent) send(res, 500);
      else res.destroy();
    });
  });
  // A sender posts a few KiB at once: a client trickling bytes is cut off.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 100;

  return listen(server, host, port, 'webhook receiver', logger);
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const REASONS: Record<number, string> = {
  202: 'accepted',
  401: 'unauthorized',
  404: 'not found',
  405: 'method not allowed',
  413: 'payload too large',
  429: 'too many requests',
  503: 'not ready',
  500: 'internal error',
};

function send(res: ServerResponse, code: number, body = `${REASONS[code] ?? ''}\n`): void {
  if (code === 413) res.setHeader('connection', 'close');
  res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  res.end(body);
}
