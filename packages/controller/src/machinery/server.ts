import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorFields, type Logger, silentLogger } from '@kubewatcher/shared';
import type { Registry } from 'prom-client';

/** One named probe check: `true` when fine, otherwise why not. */
export interface HealthCheck {
  name: string;
  check(): true | string;
}

export interface ProbeServerOptions {
  /** `host:port`, `:port` (all interfaces) or `port`; port 0 picks a free one. Default `:8080`. */
  address?: string;
  /** Served at `/metrics`. */
  registry: Registry;
  /** `/healthz` (liveness): fails when any fails. The process answering at all is the base check. */
  liveness?: readonly HealthCheck[];
  /** `/readyz` (readiness): fails when any fails. */
  readiness?: readonly HealthCheck[];
  logger?: Logger;
}

export type ProbeServer = ListeningServer;

/** Splits `host:port`, `:port`, `[::1]:port` or `port`. An empty host means all interfaces. */
export function parseAddress(address: string): { host: string | undefined; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(address) ?? /^()()(\d+)$/.exec(address);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new Error(`invalid listen address "${address}": use host:port, :port or port`);
  }
  const host = m[1] || m[2] || undefined;
  return { host, port };
}

/**
 * The controller's HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` and `/readyz`.
 * Probes answer 200 `ok` or 500 with the failing checks; `?verbose` lists every check, like the API
 * server's probes.
 */
export async function startProbeServer(opts: ProbeServerOptions): Promise<ProbeServer> {
  const logger = opts.logger ?? silentLogger;
  const { host, port } = parseAddress(opts.address ?? ':8080');

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://probe');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(res, 405, 'method not allowed\n', { allow: 'GET, HEAD' });
      return;
    }
    switch (url.pathname) {
      case '/metrics': {
        const body = await opts.registry.metrics();
        send(res, 200, body, { 'content-type': opts.registry.contentType });
        return;
      }
      case '/healthz':
      case '/livez':
        probe(res, opts.liveness ?? [], url.searchParams.has('verbose'));
        return;
      case '/readyz':
        probe(res, opts.readiness ?? [], url.searchParams.has('verbose'));
        return;
      default:
        send(res, 404, 'not found\n');
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error('probe server: request failed', { path: req.url, ...errorFields(err) });
      if (!res.headersSent) send(res, 500, 'internal error\n');
      else res.destroy();
    });
  });
  // Probes and scrapes are short; a stuck client must not hold a socket open for ever.
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;

  return listen(server, host, port, 'probe server', logger);
}

/** A listening HTTP server: where, and how to stop it. */
export interface ListeningServer {
  /** Where it listens, e.g. `http://127.0.0.1:41234`. */
  url: string;
  port: number;
  /** Stops accepting connections, lets requests in flight finish (at most `timeoutMs`), then resolves. */
  close(timeoutMs?: number): Promise<void>;
}

/** Listens on `host:port` (from parseAddress) and logs where, as `what`; the one way the controller serves HTTP. */
export async function listen(
  server: Server,
  host: string | undefined,
  port: number,
  what: string,
  logger: Logger,
): Promise<ListeningServer> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger.error(`${what} error`, errorFields(err)));
  const bound = server.address() as AddressInfo;
  const shownHost = !host ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  logger.info(`${what} listening`, { address: `${host ?? ''}:${bound.port}` });

  return {
    url: `http://${shownHost}:${bound.port}`,
    port: bound.port,
    close(timeoutMs = 5000) {
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => server.closeAllConnections(), timeoutMs);
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
    },
  };
}

function probe(res: ServerResponse, checks: readonly HealthCheck[], verbose: boolean): void {
  const lines: string[] = [];
  let failed = false;
  for (const { name, check } of checks) {
    let result: true | string;
    try {
      result = check();
    } catch (err) {
      result = `check threw: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (result === true) {
      if (verbose) lines.push(`[+]${name} ok`);
    } else {
      failed = true;
      lines.push(`[-]${name} failed: ${result}`);
    }
  }
  lines.push(failed ? 'check failed' : 'ok');
  send(res, failed ? 500 : 200, `${lines.join('\n')}\n`);
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

/** What the probes need of an informer. */
export interface InformerHealth {
  readonly name: string;
  hasSynced(): boolean;
  isStalled(): boolean;
}

/** Liveness: fails while an informer is stalled (no event and no successful list for too long). */
export function informersNotStalled(informers: readonly InformerHealth[]): HealthCheck {
  return {
    name: 'informers',
    check: () => {
      const stalled = informers.filter((i) => i.isStalled()).map((i) => i.name);
      return stalled.length === 0 ? true : `stalled: ${stalled.join(', ')}`;
    },
  };
}

/**
 * Readiness: the informers' caches have synced. A standby replica (not the leader, per `elector`) is
 * ready too, so a rolling update of the Deployment can proceed while only one replica leads.
 */
export function cachesSyncedOrStandby(
  informers: readonly InformerHealth[],
  elector?: { isLeader(): boolean },
): HealthCheck {
  return {
    name: 'caches',
    check: () => {
      if (elector && !elector.isLeader()) return true;
      const pending = informers.filter((i) => !i.hasSynced()).map((i) => i.name);
      return pending.length === 0 ? true : `not synced: ${pending.join(', ')}`;
    },
  };
}
