/**
 * A Docker registry token server (https://distribution.github.io/distribution/spec/auth/token/) for the
 * local `token` registry: it checks Basic credentials, grants the actions each user may do on
 * repositories, and signs ES256 JWTs carrying its certificate in the `x5c` header, which the registry
 * verifies against the environment's CA. Anonymous callers get a token with no access, so the registry
 * answers 401 `insufficient_scope`, as public registries do for private repositories.
 *
 * In-process: `startTokenServer(options)`. Standalone (what `scripts/local-cluster up` runs, detached):
 * `node scripts/lib/token-server.ts CONFIG.json`, CONFIG being a `TokenServerConfig`.
 */
import {
  createHash,
  createPrivateKey,
  type KeyObject,
  randomUUID,
  sign,
  timingSafeEqual,
  X509Certificate,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TokenServerUser {
  username: string;
  password: string;
  /** Repository actions this user may get, e.g. `['pull', 'push']`. */
  actions: string[];
}

export interface TokenServerConfig {
  /** Port on 127.0.0.1 (0: any free port). */
  port: number;
  /** `iss` claim; the registry's `auth.token.issuer`. */
  issuer: string;
  /** `aud` claim; the registry's `auth.token.service`. */
  service: string;
  /** PEM files of the signing certificate and its EC P-256 private key. */
  certFile: string;
  keyFile: string;
  users: TokenServerUser[];
  /** Lifetime of issued tokens (default 300 s, as Docker Hub). */
  expiresInSeconds?: number;
}

export interface TokenServer {
  /** `http://localhost:PORT/token`: the registry's `auth.token.realm`. */
  realm: string;
  port: number;
  close(): Promise<void>;
}

interface ResourceAccess {
  type: string;
  name: string;
  actions: string[];
}

/** Parses `repository:team/app:pull,push` (the name may not contain `:`; the type and actions never do). */
export function parseScope(scope: string): ResourceAccess | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const actions = scope
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions };
}

/** What a user (undefined: anonymous) gets for the requested scopes: only repository actions it holds. */
export function grantAccess(user: TokenServerUser | undefined, scopes: string[]): ResourceAccess[] {
  if (!user) return [];
  const granted: ResourceAccess[] = [];
  for (const requested of scopes.flatMap((s) => s.split(' ')).filter((s) => s !== '')) {
    const access = parseScope(requested);
    if (access?.type !== 'repository') continue;
    const actions = access.actions.filter((a) => user.actions.includes(a));
    if (actions.length > 0) granted.push({ ...access, actions });
  }
  return granted;
}

function sameSecret(a: string, b: string): boolean {
  // Hash first so the comparison takes the same time whatever the lengths.
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

function basicCredentials(header: string | undefined): { username: string; password: string } | undefined {
  const [scheme, value] = header?.split(' ', 2) ?? [];
  if (scheme?.toLowerCase() !== 'basic' || !value) return undefined;
  const decoded = Buffer.from(value, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(JSON.stringify(body));
}

const registryError = (code: string, message: string) => ({ errors: [{ code, message }] });

export async function startTokenServer(
  config: TokenServerConfig,
  log: (line: string) => void = () => {},
): Promise<TokenServer> {
  const key: KeyObject = createPrivateKey(readFileSync(config.keyFile));
  const certDer = new X509Certificate(readFileSync(config.certFile)).raw.toString('base64');
  const expiresIn = config.expiresInSeconds ?? 300;
  const header = Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'ES256', x5c: [certDer] })).toString(
    'base64url',
  );

  const issue = (subject: string, access: ResourceAccess[]) => {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: config.issuer,
      sub: subject,
      aud: config.service,
      exp: now + expiresIn,
      nbf: now,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const signingInput = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`;
    // JWS wants the raw r||s signature (IEEE P1363), not DER.
    const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
    const token = `${signingInput}.${signature.toString('base64url')}`;
    return {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date(now * 1000).toISOString(),
    };
  };

  const authenticate = (username: string, password: string) =>
    config.users.find((u) => u.username === username && sameSecret(u.password, password));

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://token-server');
    if (url.pathname === '/healthz') return sendJson(res, 200, { ok: true });
    if (url.pathname !== '/token') return sendJson(res, 404, registryError('NOT_FOUND', 'no such endpoint'));

    let credentials: { username: string; password: string } | undefined;
    let service: string | null;
    let scopes: string[];
    if (req.method === 'GET') {
      credentials = basicCredentials(req.headers.authorization);
      service = url.searchParams.get('service');
      scopes = url.searchParams.getAll('scope');
    } else if (req.method === 'POST') {
      // OAuth2 password grant (what containerd and some clients use instead of GET + Basic).
      const form = new URLSearchParams(await readBody(req));
      if (form.get('grant_type') !== 'password') {
        return sendJson(res, 400, { error: 'unsupported_grant_type' });
      }
      credentials = { username: form.get('username') ?? '', password: form.get('password') ?? '' };
      service = form.get('service');
      scopes = form.getAll('scope');
    } else {
      return sendJson(res, 405, registryError('UNSUPPORTED', 'use GET or POST'), { allow: 'GET, POST' });
    }

    if (service !== null && service !== config.service) {
      log(`${req.method} /token service=${service}: unknown service`);
      return sendJson(
        res,
        400,
        registryError('INVALID_REQUEST', `unknown service ${JSON.stringify(service)}`),
      );
    }
    let user: TokenServerUser | undefined;
    if (credentials) {
      user = authenticate(credentials.username, credentials.password);
      if (!user) {
        log(`${req.method} /token user=${credentials.username}: invalid credentials`);
        return sendJson(res, 401, registryError('UNAUTHORIZED', 'invalid username or password'), {
          'www-authenticate': 'Basic realm="kubewatcher-token-server"',
        });
      }
    }
    const access = grantAccess(user, scopes);
    const grants = access.map((a) => `${a.name}:${a.actions.join(',')}`).join(' ') || 'nothing';
    log(
      `${req.method} /token user=${user?.username ?? '(anonymous)'} scope=${scopes.join(' ')} granted=${grants}`,
    );
    return sendJson(res, 200, issue(user?.username ?? '', access));
  };

  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      log(`error: ${err instanceof Error ? err.message : String(err)}`);
      if (!res.headersSent) sendJson(res, 500, registryError('UNKNOWN', 'token server error'));
      else res.end();
    });
  };
  const listen = (server: Server, port: number, host: string) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  const server = createServer(listener);
  await listen(server, config.port, '127.0.0.1');
  const port = (server.address() as AddressInfo).port;
  // The realm names `localhost`, which may resolve to ::1 first: serve there too when the host has IPv6.
  const servers = [server];
  const server6 = createServer(listener);
  await listen(server6, port, '::1').then(
    () => servers.push(server6),
    () => {},
  );
  for (const s of servers) s.keepAliveTimeout = 5_000;
  log(`listening on http://localhost:${port}/token (issuer ${config.issuer}, service ${config.service})`);
  return {
    realm: `http://localhost:${port}/token`,
    port,
    close: async () => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((resolve) => {
              s.close(() => resolve());
              s.closeAllConnections();
            }),
        ),
      );
    },
  };
}

if (import.meta.main) {
  const configFile = process.argv[2];
  if (!configFile) {
    console.error('usage: node scripts/lib/token-server.ts CONFIG.json');
    process.exit(2);
  }
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as TokenServerConfig;
  const log = (line: string) => console.log(`${new Date().toISOString()} ${line}`);
  const server = await startTokenServer(config, log);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log(`${signal}: shutting down`);
      server.close().then(() => process.exit(0));
    });
  }
}
