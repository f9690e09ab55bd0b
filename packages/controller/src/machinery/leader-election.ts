import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { type KubeConfig, type V1Lease, type V1LeaseSpec, V1MicroTime } from '@kubernetes/client-node';
import {
  apiStatusCode,
  createObject,
  errorFields,
  getObject,
  jitter,
  type Logger,
  namespacedKey,
  RESOURCE,
  replaceObject,
  silentLogger,
} from '@kubewatcher/shared';
import { type Clock, sleep, systemClock } from './clock.ts';

/** The Lease calls the elector makes; `coordinationLeaseClient` is the real one, tests may wrap it. */
export interface LeaseClient {
  /** The Lease, or undefined when it does not exist. */
  read(namespace: string, name: string): Promise<V1Lease | undefined>;
  /** Creates the Lease; fails with 409 when it exists. */
  create(namespace: string, lease: V1Lease): Promise<V1Lease>;
  /** Replaces the Lease; fails with 409 when `metadata.resourceVersion` is stale. */
  replace(namespace: string, name: string, lease: V1Lease): Promise<V1Lease>;
}

/**
 * A LeaseClient over coordination.k8s.io/v1, as plain JSON requests. Leases read back carry their times
 * as the server's strings (MicroTime, `2026-01-01T00:00:00.000000Z`), which the elector keeps as they are.
 */
export function coordinationLeaseClient(kc: KubeConfig): LeaseClient {
  return {
    read: (namespace, name) => getObject<V1Lease>(kc, RESOURCE.lease, namespace, name),
    create: (namespace, body) => createObject<V1Lease>(kc, RESOURCE.lease, namespace, body),
    replace: (namespace, name, body) => replaceObject<V1Lease>(kc, RESOURCE.lease, namespace, name, body),
  };
}

/** `hostname_` + 8 random hex digits: unique per process, readable in `kubectl get lease`. */
export function defaultIdentity(): string {
  return `${hostname()}_${randomBytes(4).toString('hex')}`;
}

export interface LeaderElectionOptions {
  /** Builds the default LeaseClient; not needed when `client` is given. */
  kubeConfig?: KubeConfig;
  client?: LeaseClient;
  /** Namespace and name of the Lease (e.g. the controller's namespace, `kubewatcher-controller`). */
  namespace: string;
  name: string;
  /** This candidate's identity. Default: hostname + random suffix. */
  identity?: string;
  /** How long a lease stays valid without renewal; standbys wait this long after the last renewal they saw. Default 15. */
  leaseDurationSeconds?: number;
  /** The leader gives up when it could not renew for this long. Default 10 s. Must be < lease duration. */
  renewDeadlineMs?: number;
  /**
   * Time between attempts to acquire, and between a leader's attempts to renew after one failed.
   * Default 2 s, jittered (shortened by up to 20 %) when acquiring.
   */
  retryPeriodMs?: number;
  /**
   * Time between a leader's renewals while they succeed. Default half the renew deadline (5 s), at
   * least `retryPeriodMs`; at most the renew deadline less a retry period, so a failed renewal is
   * retried before the deadline.
   */
  renewPeriodMs?: number;
  /**
   * Called once when this candidate becomes leader: start the workers here. `signal` aborts the
   * moment leadership ends (lost or stopped); work must stop then. When it throws or rejects, the
   * candidate stops leading, releases the Lease and `run` resolves `'failed'`: a leader without
   * workers must not keep the Lease from a standby that could work.
   */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /**
   * Called once when leadership ends, after `signal` aborted. On a graceful `stop()` the Lease is
   * released only after this settles, so drain the workers here (e.g. `queue.shutDownWithDrain()`).
   */
  onStoppedLeading?: () => void | Promise<void>;
  /** Called when the observed holder changes (including to this candidate, and to '' on release). */
  onNewLeader?: (identity: string) => void;
  clock?: Clock;
  random?: () => number;
  logger?: Logger;
}

/**
 * Why `run` ended: `stopped` by `stop()`, `lost` (renewal failed or another holder took over), or
 * `failed` (`onStartedLeading` failed; the Lease was released).
 */
export type LeaderElectionEnd = 'stopped' | 'lost' | 'failed';

type Attempt = 'acquired' | 'held' | 'conflict' | 'failed';

/**
 * Lease-based leader election (coordination.k8s.io/v1), after client-go's `leaderelection`:
 *
 * - A candidate takes the Lease when it does not exist, is released (no holder), or has not been
 *   renewed for `leaseDurationSeconds` as measured on this candidate's own clock from when it first
 *   saw that renewal (so clock skew between nodes does not matter).
 * - The leader renews every `renewPeriodMs` (half the renew deadline), and every `retryPeriodMs`
 *   after an attempt failed. client-go renews every retry period, but how fast a standby takes over
 *   depends only on the lease duration and the standby's own retry period, so renewing less often
 *   costs no failover time and saves 60 % of the Lease writes (an idle leader's main cost: ~2 ms of
 *   CPU here and an etcd write each). When it could not renew for `renewDeadlineMs`, or it sees
 *   another holder, it stops leading at once: `signal` aborts, `onStoppedLeading` runs and `run`
 *   resolves `'lost'`. The elector does not campaign again; the caller exits (the usual choice: the
 *   pod restarts and becomes a standby) or builds a new elector.
 * - Writes carry the resourceVersion read, so two candidates never both win: a 409 is a lost race.
 * - `stop()` ends leadership gracefully and releases the Lease (no holder, 1 s duration) so a standby
 *   takes over within a retry period instead of a lease duration.
 */
export class LeaderElector {
  readonly identity: string;
  readonly #opts: LeaderElectionOptions;
  readonly #client: LeaseClient;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #logger: Logger;
  readonly #leaseDurationMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryPeriodMs: number;
  readonly #renewPeriodMs: number;

  #leading = false;
  #stopping = false;
  #running: Promise<LeaderElectionEnd> | undefined;
  /** Aborted by `stop()` to cut sleeps short. */
  readonly #wake = new AbortController();
  #leadership: AbortController | undefined;

  /** The Lease as this candidate last wrote it (the server's answer to the write). */
  #written: V1Lease | undefined;
  /** The last Lease record seen, and when (local clock) it was first seen: expiry counts from there. */
  #observed: { holder: string; renewTime: string; durationMs: number; at: number } | undefined;

  constructor(opts: LeaderElectionOptions) {
    this.#opts = opts;
    this.identity = opts.identity ?? defaultIdentity();
    this.#clock = opts.clock ?? systemClock;
    this.#random = opts.random ?? Math.random;
    this.#logger = opts.logger ?? silentLogger;
    if (opts.client) this.#client = opts.client;
    else if (opts.kubeConfig) this.#client = coordinationLeaseClient(opts.kubeConfig);
    else throw new Error('leader election needs a kubeConfig or a client');
    this.#leaseDurationMs = (opts.leaseDurationSeconds ?? 15) * 1000;
    this.#renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
    this.#retryPeriodMs = opts.retryPeriodMs ?? 2000;
    if (!(this.#leaseDurationMs > this.#renewDeadlineMs)) {
      throw new Error('leaseDurationSeconds must be longer than renewDeadlineMs');
    }
    if (!(this.#renewDeadlineMs > this.#retryPeriodMs * 1.2)) {
      throw new Error('renewDeadlineMs must be longer than 1.2 × retryPeriodMs');
    }
    this.#renewPeriodMs = opts.renewPeriodMs ?? Math.max(this.#retryPeriodMs, this.#renewDeadlineMs / 2);
    if (
      !(this.#renewPeriodMs >= this.#retryPeriodMs) ||
      !(this.#renewPeriodMs <= this.#renewDeadlineMs - this.#retryPeriodMs)
    ) {
      throw new Error('renewPeriodMs must be between retryPeriodMs and renewDeadlineMs - retryPeriodMs');
    }
  }

  /** True while this candidate holds the Lease and has not lost it. */
  isLeader(): boolean {
    return this.#leading;
  }

  /** The holder this candidate saw last ('' when released, undefined before the first read). */
  observedLeader(): string | undefined {
    return this.#observed?.holder;
  }

  /**
   * Campaigns, leads, and resolves when leadership ends or `stop()` is called. Call once; later calls
   * return the same promise.
   */
  run(): Promise<LeaderElectionEnd> {
    this.#running ??= this.#run();
    return this.#running;
  }

  /**
   * Stops campaigning or leading. When leading: aborts the signal, awaits `onStoppedLeading`, then
   * releases the Lease. Resolves when all that is done.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake.abort();
    if (this.#running) await this.#running;
  }

  async #run(): Promise<LeaderElectionEnd> {
    const { namespace, name } = this.#opts;
    this.#logger.info('leader election: campaigning', {
      lease: namespacedKey(namespace, name),
      identity: this.identity,
    });
    while (!this.#stopping) {
      if ((await this.#tryAcquireOrRenew()) === 'acquired') break;
      await this.#pause(jitter(this.#retryPeriodMs, 0.2, this.#random));
    }
    if (this.#stopping) {
      // Won the last attempt while being stopped: hand the Lease back without ever leading.
      if (this.#observed?.holder === this.identity) await this.#release();
      return 'stopped';
    }

    this.#leading = true;
    this.#leadership = new AbortController();
    this.#logger.info('leader election: leading', {
      lease: namespacedKey(namespace, name),
      identity: this.identity,
    });
    const signal = this.#leadership.signal;
    let startFailed = false;
    Promise.resolve()
      .then(() => this.#opts.onStartedLeading(signal))
      .catch((err: unknown) => {
        if (signal.aborted) return; // leadership already ended: the failure is the abort's
        this.#logger.error('leader election: onStartedLeading failed; giving the lease up', errorFields(err));
        startFailed = true;
        this.#wake.abort();
      });

    let lastRenew = this.#clock.now();
    let wait = this.#renewPeriodMs;
    let end: LeaderElectionEnd = 'stopped';
    while (!this.#stopping && !startFailed) {
      // Retries never sleep past the renew deadline: the leader gives up at it, not a retry later.
      await this.#pause(Math.min(wait, Math.max(0, lastRenew + this.#renewDeadlineMs - this.#clock.now())));
      if (this.#stopping || startFailed) break;
      const left = this.#renewDeadlineMs - (this.#clock.now() - lastRenew);
      const attempt = left > 0 ? await this.#withDeadline(this.#tryAcquireOrRenew(), left) : 'failed';
      if (this.#stopping) break;
      if (attempt === 'acquired') {
        lastRenew = this.#clock.now();
        wait = this.#renewPeriodMs;
        continue;
      }
      wait = this.#retryPeriodMs;
      const overdue = this.#clock.now() - lastRenew >= this.#renewDeadlineMs;
      if (attempt === 'held' || overdue) {
        this.#logger.error('leader election: lost the lease, stopping leading', {
          lease: namespacedKey(namespace, name),
          identity: this.identity,
          holder: this.#observed?.holder,
          reason: attempt === 'held' ? 'another holder' : 'renew deadline passed',
        });
        end = 'lost';
        break;
      }
    }
    if (startFailed) end = 'failed';
    await this.#stopLeading();
    if (end !== 'lost') await this.#release();
    return end;
  }

  async #stopLeading(): Promise<void> {
    this.#leading = false;
    this.#leadership?.abort(new Error('leadership ended'));
    try {
      await this.#opts.onStoppedLeading?.();
    } catch (err) {
      this.#logger.error('leader election: onStoppedLeading failed', errorFields(err));
    }
  }

  async #tryAcquireOrRenew(): Promise<Attempt> {
    const { namespace, name } = this.#opts;
    const durationSeconds = Math.round(this.#leaseDurationMs / 1000);
    try {
      // A leader renews the Lease it wrote last without reading it first (client-go does the same):
      // one request per renewal instead of two. Anyone else's write since then changed the
      // resourceVersion, so the replace gets a 409 and the attempt goes on as below, from a fresh read.
      const written = this.#leading ? this.#written : undefined;
      if (written?.spec?.holderIdentity === this.identity) {
        const renewed = await this.#renewWritten(written).catch((err: unknown) => {
          if (apiStatusCode(err) === 409) return undefined;
          throw err;
        });
        if (renewed) return 'acquired';
        this.#written = undefined;
      }
      const lease = await this.#client.read(namespace, name);
      const now = this.#clock.now();
      if (!lease) {
        const spec: V1LeaseSpec = {
          holderIdentity: this.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: new V1MicroTime(now),
          renewTime: new V1MicroTime(now),
          leaseTransitions: 0,
        };
        this.#written = await this.#client.create(namespace, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name, namespace },
          spec,
        });
        this.#observe(spec, now);
        return 'acquired';
      }
      const spec = lease.spec ?? {};
      this.#observe(spec, now);
      const holder = spec.holderIdentity ?? '';
      if (holder !== '' && holder !== this.identity && !this.#expired(now)) return 'held';

      const renewing = holder === this.identity;
      const next: V1LeaseSpec = {
        ...spec,
        holderIdentity: this.identity,
        leaseDurationSeconds: durationSeconds,
        acquireTime: renewing && spec.acquireTime ? spec.acquireTime : new V1MicroTime(now),
        renewTime: new V1MicroTime(now),
        leaseTransitions: renewing ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      };
      this.#written = await this.#client.replace(namespace, name, { ...lease, spec: next });
      this.#observe(next, now);
      return 'acquired';
    } catch (err) {
      if (apiStatusCode(err) === 409) {
        this.#logger.debug('leader election: lost a race for the lease', { identity: this.identity });
        return 'conflict';
      }
      this.#logger.warn('leader election: lease request failed', {
        identity: this.identity,
        ...errorFields(err),
      });
      return 'failed';
    }
  }

  /** Writes `lease` (as this leader last wrote it) again with a new renewTime; the server's answer, or a 409. */
  async #renewWritten(lease: V1Lease): Promise<V1Lease> {
    const { namespace, name } = this.#opts;
    const now = this.#clock.now();
    const next: V1LeaseSpec = { ...lease.spec, renewTime: new V1MicroTime(now) };
    const written = await this.#client.replace(namespace, name, { ...lease, spec: next });
    this.#written = written;
    this.#observe(next, now);
    return written;
  }

  /** Gives the Lease up: no holder, 1 s duration, so a standby need not wait out the lease duration. */
  async #release(): Promise<void> {
    this.#written = undefined;
    const { namespace, name } = this.#opts;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const lease = await this.#client.read(namespace, name);
        if (!lease || lease.spec?.holderIdentity !== this.identity) return;
        const now = this.#clock.now();
        await this.#client.replace(namespace, name, {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            acquireTime: new V1MicroTime(now),
            renewTime: new V1MicroTime(now),
          },
        });
        this.#logger.info('leader election: released the lease', {
          lease: namespacedKey(namespace, name),
          identity: this.identity,
        });
        return;
      } catch (err) {
        if (apiStatusCode(err) === 409) continue;
        this.#logger.warn(
          'leader election: releasing the lease failed; standbys take over when it expires',
          errorFields(err),
        );
        return;
      }
    }
  }

  #observe(spec: V1LeaseSpec, now: number): void {
    const record = {
      holder: spec.holderIdentity ?? '',
      renewTime: timeString(spec.renewTime),
      durationMs: (spec.leaseDurationSeconds ?? 0) * 1000,
    };
    const seen = this.#observed;
    if (
      seen &&
      seen.holder === record.holder &&
      seen.renewTime === record.renewTime &&
      seen.durationMs === record.durationMs
    ) {
      return;
    }
    this.#observed = { ...record, at: now };
    if (seen?.holder !== record.holder) {
      this.#logger.info('leader election: new leader observed', { holder: record.holder || '(released)' });
      try {
        this.#opts.onNewLeader?.(record.holder);
      } catch (err) {
        this.#logger.error('leader election: onNewLeader failed', errorFields(err));
      }
    }
  }

  #expired(now: number): boolean {
    const seen = this.#observed;
    return !seen || now >= seen.at + seen.durationMs;
  }

  /** Sleeps, cut short by `stop()`. */
  async #pause(ms: number): Promise<void> {
    try {
      await sleep(this.#clock, ms, this.#wake.signal);
    } catch {
      // stopped
    }
  }

  /** The attempt's result, or 'failed' when it takes longer than `ms` (a hung request must not keep us leading). */
  #withDeadline(attempt: Promise<Attempt>, ms: number): Promise<Attempt> {
    return new Promise((resolve) => {
      const timer = this.#clock.setTimeout(() => resolve('failed'), ms);
      attempt.then((result) => {
        this.#clock.clearTimeout(timer);
        resolve(result);
      });
    });
  }
}

function timeString(value: unknown): string {
  if (value instanceof Date) return value.toISOString();
  return value === undefined || value === null ? '' : String(value);
}
