import { describe, expect, it } from 'vitest';
import { ManualClock } from './clock.ts';
import { ItemExponentialBackoff, MaxOfRateLimiter, TokenBucket, WorkQueue } from './workqueue.ts';

/** Lets pending promise callbacks run. */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Resolves the promise's state without waiting for it. */
async function state<T>(p: Promise<T>): Promise<{ settled: boolean; value?: T }> {
  let settled = false;
  let value: T | undefined;
  p.then((v) => {
    settled = true;
    value = v;
  });
  await flush();
  return settled ? { settled, value } : { settled };
}

describe('WorkQueue: dedup and processing', () => {
  it('queues a key once while it waits, in first-added order', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.add('ns/a');
    q.add('ns/b');
    q.add('ns/a');
    expect(q.len()).toBe(2);
    expect(await q.get()).toBe('ns/a');
    expect(await q.get()).toBe('ns/b');
    expect(q.len()).toBe(0);
  });

  it('never hands out a key being processed; a re-add is processed again after done', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.add('k');
    expect(await q.get()).toBe('k');
    q.add('k');
    q.add('k');
    expect(q.len()).toBe(0);
    const next = q.get();
    expect((await state(next)).settled).toBe(false);
    q.done('k');
    expect(await next).toBe('k');
    q.done('k');
    expect(q.len()).toBe(0);
    expect(q.processingLen()).toBe(0);
  });

  it('without a re-add, done does not queue the key again', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.add('k');
    await q.get();
    q.done('k');
    expect(q.len()).toBe(0);
  });

  it('hands keys to waiting workers in the order they asked', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    const first = q.get();
    const second = q.get();
    q.add('a');
    q.add('b');
    expect(await first).toBe('a');
    expect(await second).toBe('b');
  });

  it('ignores done for keys it never handed out', () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.done('nope');
    expect(q.processingLen()).toBe(0);
  });
});

describe('rate limiters', () => {
  it('per-key backoff doubles from 5 ms and caps at 1000 s', () => {
    const b = new ItemExponentialBackoff();
    const delays = Array.from({ length: 5 }, () => b.when('k'));
    expect(delays).toEqual([5, 10, 20, 40, 80]);
    for (let i = 0; i < 30; i++) b.when('k');
    expect(b.when('k')).toBe(1_000_000);
    expect(b.numRequeues('k')).toBe(36);
    expect(b.when('other')).toBe(5);
  });

  it('forget resets a key and only that key', () => {
    const b = new ItemExponentialBackoff();
    b.when('a');
    b.when('a');
    b.when('b');
    b.forget('a');
    expect(b.numRequeues('a')).toBe(0);
    expect(b.when('a')).toBe(5);
    expect(b.numRequeues('b')).toBe(1);
  });

  it('stays finite for huge failure counts', () => {
    const b = new ItemExponentialBackoff(5, 1000);
    for (let i = 0; i < 2000; i++) b.when('k');
    expect(b.when('k')).toBe(1000);
  });

  it('token bucket: the burst passes at once, then one per 1/qps, refilling with time', () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(2, 3, clock);
    expect([bucket.when('a'), bucket.when('b'), bucket.when('c')]).toEqual([0, 0, 0]);
    expect(bucket.when('d')).toBe(500);
    expect(bucket.when('e')).toBe(1000);
    clock.advance(10_000);
    // Refilled to the burst, not beyond.
    expect([bucket.when('f'), bucket.when('g'), bucket.when('h')]).toEqual([0, 0, 0]);
    expect(bucket.when('i')).toBe(500);
  });

  it('token bucket tryTake: refusals cost nothing, so a flood leaves no debt behind', () => {
    const clock = new ManualClock();
    const bucket = new TokenBucket(2, 2, clock);
    expect([bucket.tryTake(), bucket.tryTake()]).toEqual([true, true]);
    for (let i = 0; i < 1000; i++) expect(bucket.tryTake()).toBe(false);
    clock.advance(500); // one token back, however long the flood was
    expect([bucket.tryTake(), bucket.tryTake()]).toEqual([true, false]);
  });

  it('max-of takes the longest delay and every limiter counts the retry', () => {
    const clock = new ManualClock();
    const limiter = new MaxOfRateLimiter(
      new ItemExponentialBackoff(5, 1_000_000),
      new TokenBucket(1, 1, clock),
    );
    expect(limiter.when('a')).toBe(5); // bucket had its one token
    expect(limiter.when('b')).toBe(1000); // bucket empty: 1 s beats 5 ms
    expect(limiter.numRequeues('a')).toBe(1);
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
  });

  it('rejects a bucket that could never refill', () => {
    expect(() => new TokenBucket(0, 10)).toThrow(/qps > 0/);
  });
});

describe('WorkQueue: delays', () => {
  it('addRateLimited holds a key back by its growing backoff', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    q.addRateLimited('k'); // 5 ms
    expect(q.len()).toBe(0);
    expect(q.delayedLen()).toBe(1);
    clock.advance(4);
    expect(q.len()).toBe(0);
    clock.advance(1);
    expect(q.len()).toBe(1);
    expect(await q.get()).toBe('k');
    q.addRateLimited('k'); // 10 ms, while processing
    q.done('k');
    clock.advance(9);
    expect(q.len()).toBe(0);
    clock.advance(1);
    expect(q.len()).toBe(1);
    expect(q.numRequeues('k')).toBe(2);
    q.forget('k');
    expect(q.numRequeues('k')).toBe(0);
  });

  it('addRateLimited is bounded by the overall token bucket', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock, rateLimiter: { qps: 1, burst: 2 } });
    q.addRateLimited('a');
    q.addRateLimited('b');
    q.addRateLimited('c'); // bucket empty: 1 s instead of 5 ms
    clock.advance(5);
    expect(q.len()).toBe(2);
    clock.advance(994);
    expect(q.len()).toBe(2);
    clock.advance(1);
    expect(q.len()).toBe(3);
  });

  it('addAfter releases keys in due order, whatever the order they were added', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    q.addAfter('c', 30);
    q.addAfter('a', 10);
    q.addAfter('b', 20);
    q.addAfter('b2', 20);
    clock.advance(15);
    expect(q.len()).toBe(1);
    clock.advance(100);
    const order = [];
    for (let i = 0; i < 4; i++) order.push(await q.get());
    expect(order).toEqual(['a', 'b', 'b2', 'c']);
  });

  it('addAfter keeps the earlier time of a key delayed twice', () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    q.addAfter('late-then-early', 100);
    q.addAfter('late-then-early', 10);
    q.addAfter('early-then-late', 10);
    q.addAfter('early-then-late', 100);
    expect(q.delayedLen()).toBe(2);
    clock.advance(10);
    expect(q.len()).toBe(2);
    expect(q.delayedLen()).toBe(0);
    clock.advance(100);
    expect(q.len()).toBe(2);
  });

  it('addAfter with no delay queues at once; a delayed key already queued is not doubled', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    q.addAfter('k', 0);
    expect(q.len()).toBe(1);
    q.addAfter('k', 5);
    clock.advance(5);
    expect(q.len()).toBe(1);
  });
});

describe('WorkQueue: shutdown', () => {
  it('shutDown releases waiting workers with undefined and ignores later adds', async () => {
    const clock = new ManualClock();
    const q = new WorkQueue({ clock });
    const waiting = q.get();
    q.addAfter('later', 10);
    q.shutDown();
    expect(await waiting).toBeUndefined();
    q.add('x');
    q.addRateLimited('y');
    clock.advance(1000);
    expect(q.len()).toBe(0);
    expect(await q.get()).toBeUndefined();
    expect(clock.pending()).toBe(0);
  });

  it('shutDown drops queued keys', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.add('a');
    q.shutDown();
    expect(q.len()).toBe(0);
    expect(await q.get()).toBeUndefined();
  });

  it('shutDownWithDrain resolves only when every key in flight is done, and does not requeue them', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    q.add('a');
    q.add('b');
    const a = await q.get();
    const b = await q.get();
    q.add('a'); // re-added while processing: dropped by the shutdown
    const drained = q.shutDownWithDrain();
    expect((await state(drained)).settled).toBe(false);
    q.done(a!);
    expect((await state(drained)).settled).toBe(false);
    q.done(b!);
    expect((await state(drained)).settled).toBe(true);
    expect(q.len()).toBe(0);
    expect(await q.get()).toBeUndefined();
  });

  it('shutDownWithDrain with nothing in flight resolves at once', async () => {
    const q = new WorkQueue({ clock: new ManualClock() });
    expect((await state(q.shutDownWithDrain())).settled).toBe(true);
  });
});

describe('WorkQueue: metric hooks', () => {
  it('reports depth, adds, retries, latency and work duration', async () => {
    const clock = new ManualClock();
    const seen = {
      depth: [] as number[],
      added: 0,
      retried: 0,
      latency: [] as number[],
      work: [] as number[],
    };
    const q = new WorkQueue({
      clock,
      hooks: {
        depth: (d) => seen.depth.push(d),
        added: () => seen.added++,
        retried: () => seen.retried++,
        queueLatency: (s) => seen.latency.push(s),
        workDuration: (s) => seen.work.push(s),
      },
    });
    q.add('a');
    q.add('a');
    q.add('b');
    clock.advance(2000);
    const key = await q.get();
    clock.advance(500);
    q.done(key!);
    q.addRateLimited('c');
    clock.advance(5);
    expect(seen.added).toBe(3);
    expect(seen.retried).toBe(1);
    expect(seen.depth).toEqual([1, 2, 1, 2]);
    expect(seen.latency).toEqual([2]);
    expect(seen.work).toEqual([0.5]);
  });
});
