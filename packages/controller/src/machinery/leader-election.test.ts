import { ApiException, type V1Lease } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { ManualClock } from './clock.ts';
import { type LeaderElectionEnd, LeaderElector, type LeaseClient } from './leader-election.ts';

const flush = async () => {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve));
};

/** Moves the clock in small steps, letting the electors' requests complete between steps. */
async function elapse(clock: ManualClock, ms: number, step = 100): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(Math.min(step, ms - t));
    await flush();
  }
}

/** One Lease held like the API server does: JSON round trips and resourceVersion checks. */
class MemoryLease implements LeaseClient {
  stored: V1Lease | undefined;
  writes = 0;
  reads = 0;
  #rv = 0;

  async read(): Promise<V1Lease | undefined> {
    this.reads++;
    return this.#copy();
  }

  async create(_ns: string, lease: V1Lease): Promise<V1Lease> {
    if (this.stored) throw new ApiException(409, 'AlreadyExists', '{}', {});
    return this.#store(lease);
  }

  async replace(_ns: string, _name: string, lease: V1Lease): Promise<V1Lease> {
    if (lease.metadata?.resourceVersion !== this.stored?.metadata?.resourceVersion) {
      throw new ApiException(409, 'Conflict', '{}', {});
    }
    return this.#store(lease);
  }

  /** Another writer's change (an operator, a split brain): a new resourceVersion, as the API server gives. */
  overwrite(spec: V1Lease['spec']): void {
    void this.#store({ ...this.stored, spec });
  }

  #store(lease: V1Lease): V1Lease {
    this.writes++;
    this.stored = JSON.parse(
      JSON.stringify({ ...lease, metadata: { ...lease.metadata, resourceVersion: String(++this.#rv) } }),
    );
    return this.#copy() as V1Lease;
  }

  #copy(): V1Lease | undefined {
    return this.stored ? JSON.parse(JSON.stringify(this.stored)) : undefined;
  }
}

/** Wraps a client so it can be cut off, like a partitioned node. */
function cuttable(client: LeaseClient) {
  let cut = false;
  const guard = <T>(fn: () => Promise<T>) => (cut ? Promise.reject(new Error('network unreachable')) : fn());
  return {
    cut: () => {
      cut = true;
    },
    mend: () => {
      cut = false;
    },
    client: {
      read: (ns, name) => guard(() => client.read(ns, name)),
      create: (ns, lease) => guard(() => client.create(ns, lease)),
      replace: (ns, name, lease) => guard(() => client.replace(ns, name, lease)),
    } satisfies LeaseClient,
  };
}

function candidate(
  clock: ManualClock,
  client: LeaseClient,
  identity: string,
  start: () => Promise<void> = async () => {},
) {
  const log: string[] = [];
  let signal: AbortSignal | undefined;
  const elector = new LeaderElector({
    client,
    namespace: 'kube-system',
    name: 'kubewatcher',
    identity,
    clock,
    random: () => 0,
    onStartedLeading: async (s) => {
      signal = s;
      log.push('started');
      await start();
    },
    onStoppedLeading: () => {
      log.push(`stopped (signal aborted: ${signal?.aborted})`);
    },
  });
  let end: LeaderElectionEnd | undefined;
  const running = elector.run().then((e) => {
    end = e;
  });
  return { elector, log, running, end: () => end };
}

describe('LeaderElector', () => {
  it('lets exactly one of two candidates lead, and hands over quickly on release', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const a = candidate(clock, lease, 'a');
    await flush();
    const b = candidate(clock, lease, 'b');
    await elapse(clock, 10_000);
    expect(a.elector.isLeader()).toBe(true);
    expect(b.elector.isLeader()).toBe(false);
    expect(b.elector.observedLeader()).toBe('a');
    expect(lease.stored?.spec?.holderIdentity).toBe('a');

    const stopping = a.elector.stop();
    await flush();
    await stopping;
    expect(a.log).toEqual(['started', 'stopped (signal aborted: true)']);
    expect(a.end()).toBe('stopped');
    expect(lease.stored?.spec).toMatchObject({ holderIdentity: '', leaseDurationSeconds: 1 });

    // One retry period (2 s), not a lease duration (15 s).
    await elapse(clock, 2000);
    expect(b.elector.isLeader()).toBe(true);
    expect(lease.stored?.spec).toMatchObject({
      holderIdentity: 'b',
      leaseDurationSeconds: 15,
      leaseTransitions: 1,
    });
    await b.elector.stop();
  });

  it('a leader whose start fails gives the lease up at once and ends failed; a standby takes over', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const a = candidate(clock, lease, 'a', async () => {
      throw new Error('caches never synced');
    });
    await flush();
    const b = candidate(clock, lease, 'b');
    await elapse(clock, 200);
    expect(a.end()).toBe('failed');
    expect(a.elector.isLeader()).toBe(false);
    expect(a.log).toEqual(['started', 'stopped (signal aborted: true)']);
    const writesAfter = lease.writes;
    // Within one retry period the standby leads; the failed one never renews again.
    await elapse(clock, 2500);
    expect(b.elector.isLeader()).toBe(true);
    expect(lease.stored?.spec?.holderIdentity).toBe('b');
    expect(lease.writes).toBeLessThanOrEqual(writesAfter + 2);
    await b.elector.stop();
  });

  it('renews every half renew deadline while leading, with one write and no read each time, keeping acquireTime and the transition count', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const a = candidate(clock, lease, 'a');
    await elapse(clock, 100);
    const acquired = lease.stored?.spec?.acquireTime;
    const writes = lease.writes;
    const reads = lease.reads;
    // Acquired at 0: renewals at 5 s and 10 s.
    await elapse(clock, 10_000);
    expect(lease.writes).toBe(writes + 2);
    expect(lease.reads).toBe(reads);
    expect(lease.stored?.spec?.acquireTime).toEqual(acquired);
    expect(lease.stored?.spec?.leaseTransitions).toBe(0);
    expect(String(lease.stored?.spec?.renewTime)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    await a.elector.stop();
  });

  it('a leader that cannot renew stops leading at the renew deadline; a standby takes over after the lease duration', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const link = cuttable(lease);
    const a = candidate(clock, link.client, 'a');
    await flush();
    const b = candidate(clock, lease, 'b');
    await elapse(clock, 3000);
    expect(a.elector.isLeader()).toBe(true);
    const cutAt = clock.now();
    link.cut();
    const until = async (t: number) => {
      while (clock.now() < cutAt + t) {
        await elapse(clock, 100);
        expect(a.elector.isLeader() && b.elector.isLeader()).toBe(false);
      }
    };

    // a acquired at 0 and has not renewed since (its next renewal was due at 5 s): it retries every
    // retry period and gives up 10 s after that acquisition, 7 s after the cut.
    await until(6900);
    expect(a.elector.isLeader()).toBe(true);
    await until(7100);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.end()).toBe('lost');
    expect(a.log).toEqual(['started', 'stopped (signal aborted: true)']);

    // b saw that record at 0 and waits out 15 s from then, taking over at its next retry (16 s).
    await until(11_900);
    expect(b.elector.isLeader()).toBe(false);
    await until(13_100);
    expect(b.elector.isLeader()).toBe(true);
    expect(lease.stored?.spec?.holderIdentity).toBe('b');
    await b.elector.stop();
  });

  it('a leader whose Lease was written by someone else meanwhile reads it again and keeps leading if still its own', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const a = candidate(clock, lease, 'a');
    await elapse(clock, 100);
    // Same holder, new resourceVersion (e.g. a label added with kubectl): the renewal's write gets a 409.
    lease.overwrite({ ...lease.stored?.spec });
    const reads = lease.reads;
    await elapse(clock, 5000);
    expect(a.elector.isLeader()).toBe(true);
    expect(lease.reads).toBe(reads + 1);
    expect(lease.stored?.spec?.holderIdentity).toBe('a');
    await a.elector.stop();
  });

  it('a leader retries a failed renewal every retry period, so an outage shorter than the renew deadline keeps it leading', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const link = cuttable(lease);
    const a = candidate(clock, link.client, 'a');
    await elapse(clock, 4500);
    link.cut();
    // The renewal at 5 s and the retry at 7 s fail; the one at 9 s, within the 10 s deadline, succeeds.
    await elapse(clock, 4000);
    link.mend();
    const writes = lease.writes;
    await elapse(clock, 600);
    expect(lease.writes).toBe(writes + 1);
    expect(a.elector.isLeader()).toBe(true);
    await a.elector.stop();
  });

  it('a leader that sees another holder stops at once', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const a = candidate(clock, lease, 'a');
    await elapse(clock, 100);
    expect(a.elector.isLeader()).toBe(true);
    // Someone (an operator, a split brain) overwrites the Lease.
    lease.overwrite({ ...lease.stored?.spec, holderIdentity: 'intruder' });
    await elapse(clock, 5000);
    expect(a.elector.isLeader()).toBe(false);
    expect(a.end()).toBe('lost');
  });

  it('stopping a candidate that never led neither leads nor touches the lease', async () => {
    const clock = new ManualClock(1_000_000);
    const lease = new MemoryLease();
    const a = candidate(clock, lease, 'a');
    await flush();
    const b = candidate(clock, lease, 'b');
    await elapse(clock, 500);
    const writes = lease.writes;
    await b.elector.stop();
    expect(b.end()).toBe('stopped');
    expect(b.log).toEqual([]);
    expect(lease.writes).toBe(writes);
    await a.elector.stop();
  });

  it('rejects timings where a leader could outlive its lease', () => {
    const base = { client: new MemoryLease(), namespace: 'n', name: 'l', onStartedLeading: () => undefined };
    expect(() => new LeaderElector({ ...base, leaseDurationSeconds: 5, renewDeadlineMs: 5000 })).toThrow(
      /longer/,
    );
    expect(() => new LeaderElector({ ...base, renewDeadlineMs: 2000, retryPeriodMs: 2000 })).toThrow(/1.2/);
    expect(() => new LeaderElector({ ...base, renewPeriodMs: 9000 })).toThrow(/renewPeriodMs/);
  });
});
