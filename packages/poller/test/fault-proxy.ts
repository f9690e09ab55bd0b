/**
 * A fault-injecting HTTP proxy for integration tests: listens on 127.0.0.1 (plain HTTP), forwards every
 * request to one real registry (HTTP or HTTPS with a given CA) and, depending on a mode switchable at any
 * time, damages the exchange the way real registries and networks do. It records every request.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

export type FaultMode =
  /** Forward untouched. */
  | { kind: 'pass' }
  /** Forward, but drop Docker-Content-Digest from the answer (Artifactory, S3-backed registries). */
  | { kind: 'stripDigest' }
  /** Answer `status` to the next `times` requests (of `method`, if given), then forward. */
  | { kind: 'status'; status: number; times: number; method?: string; headers?: Record<string, string> }
  /** Answer 429 to every request, with `Retry-After` when given. */
  | { kind: 'rateLimit'; retryAfter?: string }
  /**
   * A registry with a pull budget, as Docker Hub reports one: each manifest request (HEAD or GET)
   * spends one of `remaining`; answers carry `ratelimit-limit: L;w=W` and `ratelimit-remaining: R;w=W`.
   * With nothing left, manifest requests get 429 (with `Retry-After` when given). `remaining` counts
   * down in this object; set a new mode to refill it.
   */
  | { kind: 'budget'; limit: number; remaining: number; windowSeconds: number; retryAfter?: string }
  /**
   * Redirect manifest requests with 307 to the same path under `to` (another proxy). With
   * `onlyAuthorized`, only requests that carry Authorization are redirected, so the 401 dance happens first.
   */
  | { kind: 'redirect'; to: string; onlyAuthorized?: boolean }
  /** Read the request and never answer. */
  | { kind: 'hang' }
  /** Forward after a delay (to see concurrency). */
  | { kind: 'delay'; ms: number };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** Status sent back (0 while hanging). */
  status: number;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** `127.0.0.1:PORT`, as used in image references. */
  host: string;
  mode: FaultMode;
  readonly requests: RecordedRequest[];
  /** Most requests ever in flight at once. */
  readonly maxInFlight: number;
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** Base URL of the real registry, e.g. `https://127.0.0.1:5001`. */
  target: string;
  /** PEM of the CA that signed the target's certificate. */
  ca?: string;
  /** Headers added to every forwarded request (e.g. the storage side's own Authorization). */
  injectHeaders?: Record<string, string>;
  /** Host name to advertise in `url`/`host` instead of 127.0.0.1 (e.g. `localhost`). */
  advertiseHost?: string;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target);
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  let inFlight = 0;
  let maxInFlight = 0;
  let mode: FaultMode = { kind: 'pass' };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    record: RecordedRequest,
    stripDigest: boolean,
    addHeaders: Record<string, string> = {},
  ) => {
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    Object.assign(headers, options.injectHeaders ?? {});
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const upstream = send(
      {
        protocol: target.protocol,
        hostname: target.hostname,
        port: target.port,
        method: req.method,
        path: req.url,
        headers,
        ...(options.ca ? { ca: options.ca } : {}),
      },
      (up) => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(up.headers))
          if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
        if (stripDigest) delete out['docker-content-digest'];
        Object.assign(out, addHeaders);
        record.status = up.statusCode ?? 502;
        res.writeHead(record.status, out);
        up.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      record.status = 502;
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`fault-proxy: upstream error ${err.message}`);
    });
    req.pipe(upstream);
  };

  const server = createServer((req, res) => {
    const record: RecordedRequest = {
      method: req.method ?? '',
      path: req.url ?? '',
      headers: req.headers,
      status: 0,
    };
    requests.push(record);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    res.on('close', () => inFlight--);
    const m = mode;
    const answer = (status: number, headers: Record<string, string> = {}, body = '') => {
      record.status = status;
      req.resume();
      res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    switch (m.kind) {
      case 'pass':
        return forward(req, res, record, false);
      case 'stripDigest':
        return forward(req, res, record, true);
      case 'status':
        if (m.times > 0 && (m.method === undefined || m.method === req.method)) {
          m.times--;
          return answer(
            m.status,
            m.headers,
            JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'fault-proxy' }] }),
          );
        }
        return forward(req, res, record, false);
      case 'rateLimit':
        return answer(
          429,
          { 'content-type': 'application/json', ...(m.retryAfter ? { 'retry-after': m.retryAfter } : {}) },
          JSON.stringify({
            errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit.' }],
          }),
        );
      case 'budget': {
        if (!/\/manifests\//.test(req.url ?? '')) return forward(req, res, record, false);
        const quota = (n: number) => `${n};w=${m.windowSeconds}`;
        if (m.remaining <= 0) {
          return answer(
            429,
            {
              'content-type': 'application/json',
              'ratelimit-limit': quota(m.limit),
              'ratelimit-remaining': quota(0),
              ...(m.retryAfter ? { 'retry-after': m.retryAfter } : {}),
            },
            JSON.stringify({
              errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit.' }],
            }),
          );
        }
        m.remaining--;
        return forward(req, res, record, false, {
          'ratelimit-limit': quota(m.limit),
          'ratelimit-remaining': quota(m.remaining),
        });
      }
      case 'redirect':
        if (/\/manifests\//.test(req.url ?? '') && (!m.onlyAuthorized || req.headers.authorization)) {
          return answer(307, { location: new URL(req.url ?? '/', m.to).href });
        }
        return forward(req, res, record, false);
      case 'hang':
        req.resume();
        return;
      case 'delay':
        setTimeout(() => forward(req, res, record, false), m.ms);
        return;
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = `${options.advertiseHost ?? '127.0.0.1'}:${port}`;

  return {
    url: `http://${host}`,
    host,
    get mode() {
      return mode;
    },
    set mode(next: FaultMode) {
      mode = next;
    },
    requests,
    get maxInFlight() {
      return maxInFlight;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
