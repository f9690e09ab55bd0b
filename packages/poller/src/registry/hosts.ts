/**
 * Per-host settings under the registry transport: which hosts speak plain HTTP, whose certificates to
 * trust, which token realms a registry may name, and one keep-alive agent per scheme and host that
 * carries those TLS settings.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { rootCertificates } from 'node:tls';
import { registryApiHost } from '@kubewatcher/shared';
import type { RegistryHostOptions } from './types.ts';

/** The registries-config key whose options apply to every registry without its own entry. */
export const ANY_HOST = '*';

/** Token services of registries whose realm is on another host, known without being configured. */
const KNOWN_REALM_HOSTS: Record<string, readonly string[]> = {
  [registryApiHost('docker.io')]: ['auth.docker.io'],
};

/** Transport settings that cannot be used (an unreadable CA file); reported, never retried. */
export class TransportConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TransportConfigError';
  }
}

/** Per-host options and agents. Options keyed by a Docker Hub name also apply to its API host. */
export class RegistryHosts {
  readonly #options = new Map<string, RegistryHostOptions>();
  readonly #agents = new Map<string, http.Agent>();
  readonly #maxSockets: number;
  /** The `*` entry's realm allow-list, for registries without their own. */
  #defaultRealmHosts: string[] | undefined;

  constructor(opts: { hosts?: Record<string, RegistryHostOptions>; maxSocketsPerHost: number }) {
    this.#maxSockets = opts.maxSocketsPerHost;
    for (const [host, options] of Object.entries(opts.hosts ?? {})) {
      if (host === ANY_HOST) this.#defaultRealmHosts = options.realmHosts?.map((h) => h.toLowerCase());
      else this.#options.set(host.toLowerCase(), options);
    }
    for (const [host, options] of Object.entries(opts.hosts ?? {})) {
      const api = registryApiHost(host.toLowerCase());
      if (!this.#options.has(api)) this.#options.set(api, options);
    }
  }

  /** Settings for a host (`host:port`); empty when none were given. */
  options(host: string): RegistryHostOptions {
    return this.#options.get(host.toLowerCase()) ?? {};
  }

  /**
   * Whether `registryHost` may send this poller to a token realm on `realmHost`. Without an allow-list
   * (the registry's own, else the `*` entry's) any realm is allowed, as docker and containerd allow.
   */
  realmAllowed(registryHost: string, realmHost: string): boolean {
    const allowed =
      this.options(registryHost).realmHosts?.map((h) => h.toLowerCase()) ?? this.#defaultRealmHosts;
    return allowed === undefined || allowed.includes(realmHost.toLowerCase());
  }

  /**
   * Whether `realmHost` is named as a token realm of `registryHost`: in its realmHosts allow-list (its
   * own, else the `*` entry's), or as Docker Hub's token service. Unlike realmAllowed, no list is no.
   */
  realmListed(registryHost: string, realmHost: string): boolean {
    const realm = realmHost.toLowerCase();
    if (KNOWN_REALM_HOSTS[registryHost.toLowerCase()]?.includes(realm)) return true;
    const listed =
      this.options(registryHost).realmHosts?.map((h) => h.toLowerCase()) ?? this.#defaultRealmHosts;
    return listed?.includes(realm) ?? false;
  }

  /** 'http' only when the host was named with plainHttp; HTTPS otherwise, localhost included. */
  scheme(host: string): 'http' | 'https' {
    return this.options(host).plainHttp ? 'http' : 'https';
  }

  /** The keep-alive agent for a URL's scheme and host, created on first use. */
  agent(url: URL): http.Agent {
    const id = `${url.protocol}//${url.host}`;
    let agent = this.#agents.get(id);
    if (agent) return agent;
    if (url.protocol === 'http:') {
      agent = new http.Agent({ keepAlive: true, maxSockets: this.#maxSockets });
    } else {
      const options = this.options(url.host);
      const extra = this.#extraCa(url.host, options);
      agent = new https.Agent({
        keepAlive: true,
        maxSockets: this.#maxSockets,
        rejectUnauthorized: options.insecureSkipVerify !== true,
        ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
      });
    }
    this.#agents.set(id, agent);
    return agent;
  }

  #extraCa(host: string, options: RegistryHostOptions): string[] {
    const extra: string[] = [];
    if (options.ca) extra.push(options.ca);
    if (options.caFile) {
      try {
        extra.push(readFileSync(options.caFile, 'utf8'));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
        throw new TransportConfigError(`cannot read caFile ${options.caFile} for registry ${host} (${code})`);
      }
    }
    return extra;
  }

  /** Closes every pooled connection. */
  close(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}
