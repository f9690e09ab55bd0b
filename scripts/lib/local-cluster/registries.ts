/**
 * The registries room: three distribution registries on loopback (open: plain HTTP, no auth; basic:
 * HTTPS with the environment's CA and htpasswd; token: plain HTTP with bearer tokens) and the project's
 * token server that signs those tokens.
 */
import { randomBytes } from 'node:crypto';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { hash as bcryptHash } from 'bcryptjs';
import { stringify as toYaml } from 'yaml';
import type { LocalClusterInfo } from '../cluster-info.ts';
import { startTokenServer, type TokenServerConfig } from '../token-server.ts';
import { type EnvironmentContext, inBin, inDir, type PortPool } from './context.ts';
import { httpRequest } from './processes.ts';

export const TOKEN_SERVICE = 'kubewatcher-local-registry';
const TOKEN_ISSUER = 'kubewatcher-local-token-server';
export const REGISTRY_NAMES = ['open', 'basic', 'token'] as const;
export type RegistryName = (typeof REGISTRY_NAMES)[number];
/** Ports the registries room takes from the pool. */
export const REGISTRY_PORTS = 4;

export interface Registries {
  ports: Record<RegistryName, number>;
  tokenServerPort: number;
  tokenServerConfig: TokenServerConfig;
  info: LocalClusterInfo['registries'];
}

interface RegistryConfigOptions {
  name: string;
  port: number;
  storageDir: string;
  tls?: { certificate: string; key: string };
  auth?: Record<string, unknown>;
}

/** A distribution (v3) configuration: filesystem storage, deletes allowed, loopback only. */
function registryConfigYaml(o: RegistryConfigOptions): string {
  return toYaml({
    version: 0.1,
    log: { level: 'info', formatter: 'text', fields: { registry: o.name } },
    storage: {
      filesystem: { rootdirectory: o.storageDir },
      delete: { enabled: true },
      cache: { blobdescriptor: 'inmemory' },
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: {
      addr: `127.0.0.1:${o.port}`,
      secret: randomBytes(16).toString('hex'),
      headers: { 'X-Content-Type-Options': ['nosniff'] },
      ...(o.tls ? { tls: o.tls } : {}),
    },
    ...(o.auth ? { auth: o.auth } : {}),
  });
}

/** Picks ports and users and writes the registries' and the token server's configuration. */
export async function configureRegistries(ctx: EnvironmentContext, pool: PortPool): Promise<Registries> {
  const { pki } = ctx;
  const ports = { open: pool.next(), basic: pool.next(), token: pool.next() };
  const tokenServerPort = pool.next();
  const basicUser = { username: 'kw-basic', password: randomBytes(12).toString('hex') };
  const tokenUser = { username: 'kw-token', password: randomBytes(12).toString('hex') };
  // Cost 4 (bcrypt's minimum): the registry checks the hash on every request, and these are throwaway secrets.
  const htpasswdLine = `${basicUser.username}:${await bcryptHash(basicUser.password, 4)}\n`;
  // `localhost`, not 127.0.0.1: crane (go-containerregistry >= 0.21) refuses a token realm on a loopback or
  // private IP literal unless it is the registry's own host:port (an SSRF guard); a name passes.
  const tokenRealm = `http://localhost:${tokenServerPort}/token`;
  const tokenServerConfig: TokenServerConfig = {
    port: tokenServerPort,
    issuer: TOKEN_ISSUER,
    service: TOKEN_SERVICE,
    certFile: pki.tokenSigningCert,
    keyFile: pki.tokenSigningKey,
    users: [{ ...tokenUser, actions: ['pull', 'push'] }],
  };
  const storage = (name: RegistryName) => inDir(ctx, `registry/${name}`);
  const configs: Record<RegistryName, string> = {
    open: registryConfigYaml({ name: 'open', port: ports.open, storageDir: storage('open') }),
    basic: registryConfigYaml({
      name: 'basic',
      port: ports.basic,
      storageDir: storage('basic'),
      tls: { certificate: pki.registryCert, key: pki.registryKey },
      auth: { htpasswd: { realm: 'kubewatcher-basic', path: inDir(ctx, 'config/htpasswd') } },
    }),
    token: registryConfigYaml({
      name: 'token',
      port: ports.token,
      storageDir: storage('token'),
      auth: {
        token: {
          realm: tokenRealm,
          service: TOKEN_SERVICE,
          issuer: TOKEN_ISSUER,
          rootcertbundle: pki.caCert,
        },
      },
    }),
  };
  await Promise.all([
    writeFile(inDir(ctx, 'config/htpasswd'), htpasswdLine, { mode: 0o600 }),
    writeFile(inDir(ctx, 'config/token-server.json'), JSON.stringify(tokenServerConfig, null, 2), {
      mode: 0o600,
    }),
    ...REGISTRY_NAMES.map(async (name) => {
      await mkdir(storage(name), { recursive: true, mode: 0o700 });
      await writeFile(inDir(ctx, `config/registry-${name}.yaml`), configs[name]);
    }),
  ]);
  const host = (port: number) => `127.0.0.1:${port}`;
  const info: LocalClusterInfo['registries'] = {
    open: { host: host(ports.open), url: `http://${host(ports.open)}` },
    basic: { host: host(ports.basic), url: `https://${host(ports.basic)}`, ...basicUser, caFile: pki.caCert },
    token: {
      host: host(ports.token),
      url: `http://${host(ports.token)}`,
      ...tokenUser,
      tokenRealm,
      tokenService: TOKEN_SERVICE,
    },
  };
  return { ports, tokenServerPort, tokenServerConfig, info };
}

/** Starts the three registries and the token server (a child process when detached, else in this process). */
export async function spawnRegistries(ctx: EnvironmentContext, reg: Registries): Promise<void> {
  const registryEnv = { OTEL_TRACES_EXPORTER: 'none' }; // distribution v3 would otherwise export traces to localhost:4318
  for (const name of REGISTRY_NAMES) {
    await ctx.sup.spawn(
      `registry-${name}`,
      inBin(ctx, 'registry'),
      ['serve', inDir(ctx, `config/registry-${name}.yaml`)],
      registryEnv,
    );
  }
  if (ctx.sup.detached) {
    await ctx.sup.spawn('token-server', process.execPath, [
      fileURLToPath(new URL('../token-server.ts', import.meta.url)),
      inDir(ctx, 'config/token-server.json'),
    ]);
  } else {
    const tokenLog = inDir(ctx, 'logs/token-server.log');
    ctx.sup.tokenServer = await startTokenServer(reg.tokenServerConfig, (line) => {
      void appendFile(tokenLog, `${new Date().toISOString()} ${line}\n`).catch(() => {});
    });
  }
}

/** Each registry answers `/v2/` (200 open, 401 with auth) and the token server its health check. */
export async function waitRegistriesReady(ctx: EnvironmentContext, reg: Registries): Promise<void> {
  await Promise.all([
    ...REGISTRY_NAMES.map((name) =>
      ctx.sup.waitFor(`registry ${name} /v2/`, [`registry-${name}`], ctx.timeoutMs, async () => {
        const res = await httpRequest(`${reg.info[name].url}/v2/`, { ca: ctx.caPem });
        return res.status === (name === 'open' ? 200 : 401);
      }),
    ),
    ctx.sup.waitFor('the token server', ['token-server'], ctx.timeoutMs, async () => {
      return (await httpRequest(`http://127.0.0.1:${reg.tokenServerPort}/healthz`)).status === 200;
    }),
  ]);
}
