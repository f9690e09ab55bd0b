/**
 * A hostile registry for tests: a plain-HTTP server on 127.0.0.1 whose every answer is written by the
 * test (redirects elsewhere, challenges naming other hosts, endless bodies), recording what reached it
 * and whether the client hung up before an answer was complete.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface HostileRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  /** The client closed the connection before the answer was fully written. */
  abandoned: boolean;
}

export interface HostileRegistry {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** `127.0.0.1:PORT`, as used in image references. */
  host: string;
  readonly requests: HostileRequest[];
  close(): Promise<void>;
}

export type HostileHandler = (req: HostileRequest, res: ServerResponse) => void | Promise<void>;

export async function startHostileRegistry(handler: HostileHandler): Promise<HostileRegistry> {
  const requests: HostileRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const record: HostileRequest = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        abandoned: false,
      };
      requests.push(record);
      res.on('close', () => {
        if (!res.writableFinished) record.abandoned = true;
      });
      Promise.resolve(handler(record, res)).catch(() => res.destroy());
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Writes `total` bytes of `fill` in 64 KiB chunks, respecting back-pressure, and stops as soon as the
 * client hangs up; resolves to the bytes written.
 */
export async function writeBody(res: ServerResponse, total: number, fill = 'x'): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, fill);
  let written = 0;
  while (written < total && !res.destroyed) {
    const piece = chunk.subarray(0, Math.min(chunk.length, total - written));
    written += piece.length;
    if (!res.write(piece)) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    }
  }
  if (!res.destroyed) res.end();
  return written;
}
