/** What every room of the local environment (control plane, registries, kwok node, real node) shares. */
import { join } from 'node:path';
import type { LocalPki } from '../pki.ts';
import type { Supervisor } from './supervisor.ts';

export interface EnvironmentContext {
  /** Absolute working folder of the environment. */
  dir: string;
  /** Folder of the built binaries. */
  binDir: string;
  /** Longest wait for any one readiness step. */
  timeoutMs: number;
  log: (line: string) => void;
  /** Seconds since the start, for progress lines. */
  since: () => string;
  pki: LocalPki;
  /** The environment CA's certificate (PEM): trusted for the apiserver and the HTTPS registry. */
  caPem: string;
  sup: Supervisor;
}

/** `dir/name`. */
export const inDir = (ctx: { dir: string }, name: string) => join(ctx.dir, name);
/** `binDir/name`. */
export const inBin = (ctx: { binDir: string }, name: string) => join(ctx.binDir, name);

/** Hands out the free ports asked for at once (so they are distinct) to the rooms, in order. */
export class PortPool {
  private readonly ports: number[];
  constructor(ports: number[]) {
    this.ports = [...ports];
  }
  next(): number {
    const port = this.ports.shift();
    if (port === undefined) throw new Error('PortPool: more ports taken than were asked for');
    return port;
  }
}
