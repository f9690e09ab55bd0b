import { ApiException } from '@kubernetes/client-node';
import type { Logger } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { ManualClock } from './clock.ts';
import {
  applyOutcome,
  done,
  isConflict,
  type Outcome,
  type OutcomeReport,
  requeueAfter,
  retry,
  runWorker,
  stalled,
} from './outcome.ts';
import { WorkQueue } from './workqueue.ts';

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

function recordingLogger() {
  const lines: Array<{ level: string; message: string; meta?: Record<string, unknown> }> = [];
  const at =
    (level: string) =>
    (message: string, meta?: Record<string, unknown>): void => {
      lines.push({ level, message, meta });
    };
  const logger: Logger = {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
  };
  return { lines, logger };
}

const conflict = () =>
  new ApiException(409, 'Conflict', '{"kind":"Status","message":"the object has been modified"}', {});

describe('applyOutcome', () => {
  it('done forgets the backoff and does not requeue', () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.addRateLimited('k');
    expect(applyOutcome(q, 'k', done())).toBe('success');
    expect(q.numRequeues('k')).toBe(0);
  });

  it('requeueAfter forgets the backoff and queues the key after the delay', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    q.addRateLimited('k');
    clock.advance(5);
    expect(q.len()).toBe(1);
    const other = new WorkQueue({ clock });
    expect(applyOutcome(other, 'k', requeueAfter(60_000, 'rollout in progress'))).toBe('requeue');
    expect(other.numRequeues('k')).toBe(0);
    expect(other.delayedLen()).toBe(1);
    clock.advance(59_999);
    expect(other.len()).toBe(0);
    clock.advance(1);
    expect(other.len()).toBe(1);
  });

  it('stalled forgets the backoff and does not retry', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    q.addRateLimited('k');
    clock.advance(5);
    expect(applyOutcome(q, 'k', stalled('InvalidSpec', 'spec.image has a digest'))).toBe('stalled');
    expect(q.numRequeues('k')).toBe(0);
    expect(q.delayedLen()).toBe(0);
  });

  it('retry requeues with growing backoff', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    expect(applyOutcome(q, 'k', retry(new Error('boom')))).toBe('error');
    expect(applyOutcome(q, 'k', retry(new Error('boom')))).toBe('error');
    expect(q.numRequeues('k')).toBe(2);
    clock.advance(5);
    expect(q.len()).toBe(1);
  });

  it('a 409 Conflict is a rate-limited retry, reported as conflict', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    expect(isConflict(conflict())).toBe(true);
    expect(isConflict(new ApiException(404, 'Not Found', '', {}))).toBe(false);
    expect(applyOutcome(q, 'k', retry(conflict()))).toBe('conflict');
    expect(q.numRequeues('k')).toBe(1);
    clock.advance(5);
    expect(q.len()).toBe(1);
  });
});

describe('runWorker', () => {
  async function runOne(reconcile: (key: string) => Promise<Outcome> | Outcome) {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    const reports: OutcomeReport[] = [];
    const { lines, logger } = recordingLogger();
    const worker = runWorker(q, reconcile, { logger, clock, onOutcome: (r) => reports.push(r) });
    q.add('ns/k');
    await flush();
    return { q, clock, reports, lines, worker };
  }

  it('maps each outcome and ends when the queue shuts down', async () => {
    const outcomes: Outcome[] = [
      done(),
      requeueAfter(1000, 'waiting'),
      stalled('Bad', 'bad spec'),
      retry(new Error('x')),
    ];
    const seen: string[] = [];
    const { q, clock, reports, worker } = await runOne((key) => {
      seen.push(key);
      return outcomes.shift() ?? done();
    });
    expect(reports.map((r) => r.result)).toEqual(['success']);
    q.add('ns/k');
    await flush();
    expect(reports.map((r) => r.result)).toEqual(['success', 'requeue']);
    clock.advance(1000);
    await flush();
    expect(reports.map((r) => r.result)).toEqual(['success', 'requeue', 'stalled']);
    clock.advance(60_000);
    await flush();
    expect(reports.length).toBe(3);
    q.add('ns/k');
    await flush();
    expect(reports.map((r) => r.result)).toEqual(['success', 'requeue', 'stalled', 'error']);
    clock.advance(5);
    await flush();
    expect(reports.map((r) => r.result)).toEqual(['success', 'requeue', 'stalled', 'error', 'success']);
    expect(q.numRequeues('ns/k')).toBe(0);
    q.shutDown();
    await worker;
    expect(seen.every((k) => k === 'ns/k')).toBe(true);
  });

  it('counts a thrown error as retry and keeps working', async () => {
    let calls = 0;
    const { q, clock, reports, lines, worker } = await runOne(() => {
      calls++;
      if (calls === 1) throw new Error('network down');
      return done();
    });
    expect(reports[0]?.result).toBe('error');
    expect(q.numRequeues('ns/k')).toBe(1);
    expect(lines.find((l) => l.level === 'error')?.meta).toMatchObject({
      key: 'ns/k',
      error: 'network down',
    });
    clock.advance(5);
    await flush();
    expect(reports[1]?.result).toBe('success');
    q.shutDown();
    await worker;
  });

  it('treats a rejected promise and a missing outcome as retry', async () => {
    let calls = 0;
    const { q, clock, reports, worker } = await runOne(async () => {
      calls++;
      if (calls === 1) throw conflict();
      return undefined as unknown as Outcome;
    });
    expect(reports[0]?.result).toBe('conflict');
    clock.advance(5);
    await flush();
    expect(reports[1]?.result).toBe('error');
    q.shutDown();
    await worker;
  });

  it('logs a conflict at info with the API message, not the raw exception', async () => {
    const { q, lines, worker } = await runOne(() => retry(conflict()));
    const line = lines.find((l) => l.level === 'info');
    expect(line?.meta).toMatchObject({ key: 'ns/k', code: 409, error: 'the object has been modified' });
    q.shutDown();
    await worker;
  });

  it('survives an onOutcome callback that throws, and still marks the key done', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    const { lines, logger } = recordingLogger();
    const worker = runWorker(q, () => done(), {
      logger,
      clock,
      onOutcome: () => {
        throw new Error('metrics broke');
      },
    });
    q.add('a');
    await flush();
    expect(q.processingLen()).toBe(0);
    expect(lines.some((l) => l.level === 'error' && l.meta?.error === 'metrics broke')).toBe(true);
    q.add('a');
    await flush();
    expect(q.processingLen()).toBe(0);
    q.shutDown();
    await worker;
  });

  it('parallel workers never reconcile one key at the same time', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    const running = new Set<string>();
    let overlaps = 0;
    let calls = 0;
    const gates: Array<() => void> = [];
    const reconcile = async (key: string) => {
      if (running.has(key)) overlaps++;
      running.add(key);
      calls++;
      await new Promise<void>((resolve) => gates.push(resolve));
      running.delete(key);
      return done();
    };
    const workers = [runWorker(q, reconcile), runWorker(q, reconcile), runWorker(q, reconcile)];
    q.add('a');
    q.add('b');
    await flush();
    q.add('a'); // while a is in flight
    q.add('a');
    await flush();
    expect(calls).toBe(2);
    while (gates.length > 0) {
      for (const open of gates.splice(0)) open();
      await flush();
    }
    expect(calls).toBe(3);
    expect(overlaps).toBe(0);
    const drained = q.shutDownWithDrain();
    q.shutDown();
    await drained;
    await Promise.all(workers);
  });
});
