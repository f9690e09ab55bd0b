import { describe, expect, it } from 'vitest';
import { BoundedWork, settleWithLimit } from './concurrency.ts';

/** A piece of work that ends when the test says so. */
function deferred() {
  let resolve!: () => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('settleWithLimit', () => {
  it('keeps at most `limit` in flight and starts the next as soon as one ends', async () => {
    const pieces = Array.from({ length: 5 }, deferred);
    const started: number[] = [];
    const run = settleWithLimit([0, 1, 2, 3, 4], 2, async (i) => {
      started.push(i);
      await pieces[i]!.promise;
      return i * 10;
    });
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    pieces[1]!.resolve();
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1, 2]);
    for (const p of pieces) p.resolve();
    const outcomes = await run;
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : o.reason))).toEqual([0, 10, 20, 30, 40]);
  });

  it('reports each outcome in the items order; a failure stops nothing', async () => {
    const outcomes = await settleWithLimit(['a', 'bad', 'c'], 1, async (item) => {
      if (item === 'bad') throw new Error(`refused ${item}`);
      return item.toUpperCase();
    });
    expect(outcomes).toEqual([
      { status: 'fulfilled', value: 'A' },
      { status: 'rejected', reason: new Error('refused bad') },
      { status: 'fulfilled', value: 'C' },
    ]);
  });

  it('treats a limit below 1 as 1 and an empty list as nothing to do', async () => {
    expect(await settleWithLimit([], 4, async () => 1)).toEqual([]);
    const order: number[] = [];
    await settleWithLimit([1, 2, 3], 0, async (i) => {
      order.push(i);
    });
    expect(order).toEqual([1, 2, 3]);
  });
});

describe('BoundedWork', () => {
  it('starts a piece at once while fewer than `limit` run, else when one ends', async () => {
    const work = new BoundedWork(2);
    const pieces = Array.from({ length: 3 }, deferred);
    const started: number[] = [];
    const piece = (i: number) => async () => {
      started.push(i);
      await pieces[i]!.promise;
    };
    await work.start(piece(0));
    await work.start(piece(1));
    let thirdStarted = false;
    const third = work.start(piece(2)).then(() => {
      thirdStarted = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1]);
    expect(thirdStarted).toBe(false);
    pieces[1]!.resolve();
    await third;
    expect(started).toEqual([0, 1, 2]);
    pieces[0]!.resolve();
    pieces[2]!.resolve();
    expect(await work.settle()).toEqual([]);
  });

  it('settle waits for every piece and returns the failures; a failure stops nothing', async () => {
    const work = new BoundedWork(1);
    const done: string[] = [];
    await work.start(async () => {
      throw new Error('refused a');
    });
    await work.start(async () => {
      done.push('b');
    });
    const slow = deferred();
    await work.start(async () => {
      await slow.promise;
      done.push('c');
    });
    const settled = work.settle();
    slow.resolve();
    expect(await settled).toEqual([new Error('refused a')]);
    expect(done).toEqual(['b', 'c']);
  });
});
