/**
 * A loopback HTTP server standing in for the API server in unit tests of the request layer
 * (packages/shared's requestJson and kube-resources), with a KubeConfig that points at it. It records
 * each request and answers what `respond` returns; `undefined` leaves the request hanging (timeouts).
 */
import { createServer, type IncomingMessage } from 'node:http';
import { KubeConfig } from '@kubernetes/client-node';
import { reuseConnections } from '../../packages/shared/src/kube.ts';

export interface SeenRequest {
  method?: string;
  url?: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export interface LoopbackReply {
  status: number;
  /** Sent as it is. */
  body: string;
  headers?: Record<string, string>;
}

export interface LoopbackApi {
  kc: KubeConfig;
  seen: SeenRequest[];
  close(): Promise<void>;
}

export async function startLoopbackApi(
  respond: (req: SeenRequest) => LoopbackReply | undefined,
  token = 'secret-token',
): Promise<LoopbackApi> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      const request = { method: req.method, url: req.url, headers: req.headers, body };
      seen.push(request);
      const reply = respond(request);
      if (!reply) return;
      res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
      res.end(reply.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  const kc = new KubeConfig();
  kc.loadFromOptions({
    // Plain HTTP: client-node allows it only with skipTLSVerify (there is no TLS to verify).
    clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  reuseConnections(kc);
  return {
    kc,
    seen,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
