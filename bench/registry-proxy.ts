/**
 * A counting reverse proxy in front of one registry and its token service, so that every request an
 * image updater makes is seen and classified, whatever its HTTP client. The updater is given image
 * references on the proxy's host; the proxy rewrites the `realm` of the registry's Bearer challenges to
 * its own `/token` path, so token requests pass through it too. Pushes go to the registry directly and
 * are not counted.
 */
import http, { type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * HEAD and GET of `/v2/<name>/manifests/<ref>`, token requests, everything else (ping, tags, blobs),
 * and TLS handshakes sent to this plain-HTTP proxy (a client that tries HTTPS first, as Keel does).
 */
export const REQUEST_KINDS = ['head', 'getManifest', 'token', 'other', 'tls'] as const;
export type RequestKind = (typeof REQUEST_KINDS)[number];

export interface ProxiedRequest {
  /** Arrival time (ms since the epoch). */
  at: number;
  kind: RequestKind;
  method: string;
  path: string;
  /** The upstream's status, or 502 when it could not be reached. */
  status: number;
}

export type RequestCounts = Record<RequestKind | 'total' | 'unauthorized', number>;

export interface CountingProxy {
  /** `127.0.0.1:PORT`, for image references. */
  host: string;
  /** Every request answered so far, in arrival order. */
  readonly requests: readonly ProxiedRequest[];
  /** Requests that arrived in [from, to). */
  countBetween(from: number, to: number): RequestCounts;
  close(): Promise<void>;
}

export interface CountingProxyOptions {
  /** Base URL of the registry, e.g. `http://127.0.0.1:5000`. */
  registryUrl: string;
  /** The registry's token realm, e.g. `http://localhost:5001/token`. */
  tokenRealm: string;
}

const MANIFEST_PATH = /^\/v2\/.+\/manifests\/[^/]+$/;

export function classify(method: string, path: string, tokenPath: string): RequestKind {
  if (path === tokenPath) return 'token';
  if (MANIFEST_PATH.test(path)) {
    if (method === 'HEAD') return 'head';
    if (method === 'GET') return 'getManifest';
  }
  return 'other';
}

export function emptyCounts(): RequestCounts {
  return { head: 0, getManifest: 0, token: 0, other: 0, tls: 0, total: 0, unauthorized: 0 };
}

export async function startCountingProxy(options: CountingProxyOptions): Promise<CountingProxy> {
  const registry = new URL(options.registryUrl);
  const realm = new URL(options.tokenRealm);
  if (registry.protocol !== 'http:' || realm.protocol !== 'http:') {
    throw new Error('the counting proxy forwards plain HTTP only (the local token registry)');
  }
  const requests: ProxiedRequest[] = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let ownRealm = '';

  const server = http.createServer((req, res) => {
    const at = Date.now();
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://proxy').pathname;
    const kind = classify(method, path, realm.pathname);
    const target = kind === 'token' ? realm : registry;
    const headers: IncomingHttpHeaders = { ...req.headers, host: target.host };
    const upstream = http.request(
      { host: target.hostname, port: target.port, method, path: req.url, headers, agent },
      (up) => {
        requests.push({ at, kind, method, path, status: up.statusCode ?? 0 });
        const out = { ...up.headers };
        const challenge = out['www-authenticate'];
        if (typeof challenge === 'string') {
          out['www-authenticate'] = challenge.replace(/realm="[^"]*"/i, `realm="${ownRealm}"`);
        }
        res.writeHead(up.statusCode ?? 502, up.statusMessage, out);
        up.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      requests.push({ at, kind, method, path, status: 502 });
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`counting proxy: ${err.message}\n`);
    });
    req.pipe(upstream);
  });
  // A TLS ClientHello (first byte 0x16, a handshake record) is no HTTP: count it and hang up.
  server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket) => {
    if (err.rawPacket?.[0] === 0x16) {
      requests.push({ at: Date.now(), kind: 'tls', method: '', path: '', status: 0 });
    }
    socket.destroy();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((done, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', done);
  });
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  ownRealm = `http://${host}${realm.pathname}`;

  return {
    host,
    requests,
    countBetween(from, to) {
      const counts = emptyCounts();
      for (const r of requests) {
        if (r.at < from || r.at >= to) continue;
        counts[r.kind]++;
        counts.total++;
        if (r.status === 401) counts.unauthorized++;
      }
      return counts;
    },
    close: () =>
      new Promise<void>((done) => {
        server.close(() => done());
        server.closeAllConnections();
        agent.destroy();
      }),
  };
}
