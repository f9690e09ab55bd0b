import type { KubernetesListObject, KubernetesObject, V1ConfigMap } from '@kubernetes/client-node';
import { objectKey, splitKey } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { ManualClock } from './clock.ts';
import {
  enqueueTo,
  Informer,
  type InformerOptions,
  type ListWatchSource,
  type RestartReason,
  resourcePath,
  transformedSource,
  withoutManagedFields,
} from './informer.ts';
import { WorkQueue } from './workqueue.ts';

/** Lets the informer's promise chains (list → watch) run. */
async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

const RESOURCE = { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps' };

interface FakeWatch {
  path: string;
  resourceVersion: unknown;
  callback: (phase: string, obj: unknown) => void;
  done: (err: unknown) => void;
  ended: boolean;
}

/** An in-memory API server for one resource: list, watch, and faults on demand. */
class FakeServer implements ListWatchSource {
  readonly objects = new Map<string, V1ConfigMap>();
  readonly listCalls: string[] = [];
  readonly watches: FakeWatch[] = [];
  /** `hold`: lists wait for `releaseLists()`. */
  listFault: 'none' | 'fail' | 'hang' | 'hold' = 'none';
  #held: (() => void)[] = [];
  #rv = 1;
  /** Watches from a resourceVersion below this get `410 Gone`, as after an etcd compaction. */
  #compactedBelow = 0;

  put(namespace: string, name: string, data: Record<string, string> = {}): V1ConfigMap {
    const obj: V1ConfigMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { namespace, name, resourceVersion: String(++this.#rv) },
      data,
    };
    const key = `${namespace}/${name}`;
    const existed = this.objects.has(key);
    this.objects.set(key, obj);
    this.#broadcast(namespace, existed ? 'MODIFIED' : 'ADDED', obj);
    return obj;
  }

  /** Changes an object without telling any watch: what a silently dead watch looks like. */
  putQuietly(namespace: string, name: string, data: Record<string, string> = {}): void {
    this.objects.set(`${namespace}/${name}`, {
      metadata: { namespace, name, resourceVersion: String(++this.#rv) },
      data,
    });
  }

  remove(namespace: string, name: string, quietly = false): void {
    const key = `${namespace}/${name}`;
    const obj = this.objects.get(key);
    if (!obj) return;
    this.objects.delete(key);
    if (!quietly)
      this.#broadcast(namespace, 'DELETED', {
        ...obj,
        metadata: { ...obj.metadata, resourceVersion: String(++this.#rv) },
      });
  }

  /** Ends every open watch with an error, as a dropped connection does. */
  breakWatches(err: unknown = Object.assign(new Error('connection reset'), { statusCode: 500 })): void {
    for (const w of this.openWatches()) this.#end(w, err);
  }

  /**
   * Compacts the history: every open watch ends as the server ends it (without an error), and a watch
   * from a version older than the current one gets an ERROR event with a 410 Status, then ends.
   */
  compact(): void {
    this.#compactedBelow = this.#rv;
    for (const w of this.openWatches()) this.#end(w, null);
  }

  /** Lets the held lists answer, with what the server holds by then. */
  releaseLists(): void {
    const held = this.#held;
    this.#held = [];
    for (const resolve of held) resolve();
  }

  openWatches(): FakeWatch[] {
    return this.watches.filter((w) => !w.ended);
  }

  async list(path: string): Promise<KubernetesListObject<KubernetesObject>> {
    this.listCalls.push(path);
    if (this.listFault === 'fail') throw Object.assign(new Error('list failed'), { statusCode: 503 });
    if (this.listFault === 'hang') return new Promise(() => undefined);
    if (this.listFault === 'hold') await new Promise<void>((resolve) => this.#held.push(resolve));
    const ns = namespaceOf(path);
    // Like the API server: list items carry neither apiVersion nor kind.
    const items = [...this.objects.values()]
      .filter((o) => ns === undefined || o.metadata?.namespace === ns)
      .map(({ apiVersion: _a, kind: _k, ...rest }) => structuredClone(rest));
    return {
      apiVersion: 'v1',
      kind: 'ConfigMapList',
      metadata: { resourceVersion: String(this.#rv) },
      items,
    };
  }

  watch = async (
    path: string,
    params: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, obj: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> => {
    const controller = new AbortController();
    const w: FakeWatch = { path, resourceVersion: params.resourceVersion, callback, done, ended: false };
    this.watches.push(w);
    controller.signal.addEventListener('abort', () =>
      this.#end(w, new DOMException('aborted', 'AbortError')),
    );
    if (Number(params.resourceVersion) < this.#compactedBelow) {
      setImmediate(() => {
        const gone = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', reason: 'Expired' };
        if (!w.ended) w.callback('ERROR', { ...gone, code: 410, message: 'too old resource version' });
        this.#end(w, null);
      });
    }
    return controller;
  };

  #end(w: FakeWatch, err: unknown): void {
    if (w.ended) return;
    w.ended = true;
    w.done(err);
  }

  #broadcast(namespace: string, phase: string, obj: V1ConfigMap): void {
    for (const w of this.openWatches()) {
      const ns = namespaceOf(w.path);
      if (ns === undefined || ns === namespace) w.callback(phase, structuredClone(obj));
    }
  }
}

function namespaceOf(path: string): string | undefined {
  return /\/namespaces\/([^/]+)\//.exec(path)?.[1];
}

/** `wrap`: what the informer lists and watches through, over the fake server. */
function setup(
  opts: Partial<InformerOptions<V1ConfigMap>> = {},
  wrap: (server: ListWatchSource) => ListWatchSource = (server) => server,
) {
  const clock = new ManualClock(1_000_000);
  const server = new FakeServer();
  const restarts: RestartReason[] = [];
  const events: string[] = [];
  const informer = new Informer<V1ConfigMap>({
    resource: RESOURCE,
    source: wrap(server),
    clock,
    random: () => 0,
    onRestart: (r) => restarts.push(r),
    ...opts,
  });
  informer.addEventHandler({
    add: (o) => events.push(`add ${objectKey(o)}`),
    update: (old, o) => events.push(`update ${objectKey(o)} ${old.data?.v ?? ''}->${o.data?.v ?? ''}`),
    delete: (o) => events.push(`delete ${objectKey(o)}`),
  });
  return { clock, server, informer, restarts, events };
}

describe('helpers', () => {
  it('builds API paths for core and grouped resources', () => {
    expect(resourcePath(RESOURCE)).toBe('/api/v1/configmaps');
    expect(resourcePath({ apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments' }, 'team-a')).toBe(
      '/apis/apps/v1/namespaces/team-a/deployments',
    );
  });

  it('keys objects as namespace/name, or name when cluster-scoped', () => {
    expect(objectKey({ metadata: { namespace: 'a', name: 'b' } })).toBe('a/b');
    expect(objectKey({ metadata: { name: 'node-1' } })).toBe('node-1');
    expect(splitKey('a/b')).toEqual({ namespace: 'a', name: 'b' });
    expect(splitKey('node-1')).toEqual({ name: 'node-1' });
  });
});

describe('Informer', () => {
  it('lists, syncs, then follows watch events', async () => {
    const { server, informer, events } = setup();
    server.put('a', 'one', { v: '1' });
    expect(informer.hasSynced()).toBe(false);
    informer.start();
    await flush();
    expect(informer.hasSynced()).toBe(true);
    expect(await informer.waitForSync()).toBe(true);
    // List items get apiVersion and kind back.
    expect(informer.get('a/one')).toMatchObject({ apiVersion: 'v1', kind: 'ConfigMap', data: { v: '1' } });
    expect(server.openWatches()).toHaveLength(1);

    server.put('a', 'two', { v: '1' });
    server.put('a', 'one', { v: '2' });
    server.remove('a', 'two');
    expect(events).toEqual(['add a/one', 'add a/two', 'update a/one 1->2', 'delete a/two']);
    expect(informer.keys()).toEqual(['a/one']);
    informer.stop();
  });

  it('hands out deep-frozen objects', async () => {
    const { server, informer } = setup();
    server.put('a', 'one', { v: '1' });
    informer.start();
    await flush();
    const obj = informer.get('a/one')!;
    expect(Object.isFrozen(obj)).toBe(true);
    expect(() => {
      (obj.data as Record<string, string>).v = 'changed';
    }).toThrow(TypeError);
    expect(() => {
      obj.metadata!.name = 'x';
    }).toThrow(TypeError);
    informer.stop();
  });

  it('restarts after a watch error with a fresh list, and the diff catches what it missed', async () => {
    const { clock, server, informer, events, restarts } = setup();
    server.put('a', 'keep', { v: '1' });
    server.put('a', 'gone', { v: '1' });
    informer.start();
    await flush();
    events.length = 0;

    server.breakWatches();
    // Changes while the informer is down.
    server.putQuietly('a', 'keep', { v: '2' });
    server.remove('a', 'gone', true);
    server.putQuietly('a', 'new', { v: '1' });
    expect(restarts).toEqual(['error']);
    await flush();
    expect(server.listCalls).toHaveLength(1);

    clock.advance(999);
    await flush();
    expect(server.listCalls).toHaveLength(1);
    clock.advance(1);
    await flush();
    expect(server.listCalls).toHaveLength(2);
    expect(events.sort()).toEqual(['add a/new', 'delete a/gone', 'update a/keep 1->2']);
    expect(informer.keys().sort()).toEqual(['a/keep', 'a/new']);
    expect(server.openWatches()).toHaveLength(1);
    informer.stop();
  });

  it('serves its whole cache, synced, through a restart, until the relist replaces it at once', async () => {
    const { clock, server, informer, events } = setup();
    server.put('a', 'keep', { v: '1' });
    server.put('a', 'gone', { v: '1' });
    informer.start();
    await flush();
    events.length = 0;
    // A reader in a handler (as the reconcilers' key functions are) sees the cache mid-relist.
    const keptDuringEvents: boolean[] = [];
    informer.addEventHandler({
      add: () => keptDuringEvents.push(informer.get('a/keep') !== undefined),
      delete: () => keptDuringEvents.push(informer.get('a/keep') !== undefined),
    });
    keptDuringEvents.length = 0; // the replayed adds

    server.breakWatches();
    server.remove('a', 'gone', true);
    server.putQuietly('a', 'new', { v: '1' });
    server.listFault = 'hold';
    const cached = () => ({ synced: informer.hasSynced(), keys: informer.keys().sort() });
    // Waiting out the restart backoff, then with the relist in flight: the old content, still synced.
    expect(cached()).toEqual({ synced: true, keys: ['a/gone', 'a/keep'] });
    clock.advance(1000);
    await flush();
    expect(server.listCalls).toHaveLength(2);
    expect(cached()).toEqual({ synced: true, keys: ['a/gone', 'a/keep'] });
    expect(events).toEqual([]);

    server.listFault = 'none';
    server.releaseLists();
    await flush();
    expect(cached()).toEqual({ synced: true, keys: ['a/keep', 'a/new'] });
    expect(events.sort()).toEqual(['add a/new', 'delete a/gone']);
    expect(keptDuringEvents).toEqual([true, true]);
    informer.stop();
  });

  it('backs off exponentially while lists keep failing, capped at 30 s', async () => {
    const { clock, server, informer } = setup();
    server.listFault = 'fail';
    informer.start();
    await flush();
    const listsAt: number[] = [clock.now()];
    for (let i = 0; i < 8; i++) {
      const before = server.listCalls.length;
      const next = clock.nextTimerAt();
      if (next === undefined) break;
      clock.set(next);
      await flush();
      if (server.listCalls.length > before) listsAt.push(clock.now());
    }
    const gaps = listsAt.slice(1).map((t, i) => t - (listsAt[i] ?? 0));
    expect(gaps.slice(0, 6)).toEqual([1000, 2000, 4000, 8000, 16_000, 30_000]);
    expect(informer.hasSynced()).toBe(false);
    informer.stop();
  });

  // A projection like the controller's caches use (namespaceLabelsOnly, cachedWorkload): were it
  // applied to an ERROR event, the Status would lose its code and ListWatch would keep reopening the
  // watch from the expired version instead of listing again.
  const projection = (o: KubernetesObject) => ({
    apiVersion: o.apiVersion,
    kind: o.kind,
    metadata: o.metadata,
  });
  it.each([
    ['the server', (s: ListWatchSource) => s],
    ['a projection of the server', (s: ListWatchSource) => transformedSource(s, projection)],
    ['the server without managedFields', withoutManagedFields],
  ])(
    'relists when a watch through %s comes back 410 Gone, and the diff catches what it missed',
    async (_what, wrap) => {
      const { clock, server, informer, restarts } = setup({ relistIntervalMs: 0 }, wrap);
      server.put('a', 'keep', { v: '1' });
      server.put('a', 'gone', { v: '1' });
      informer.start();
      await flush();
      expect(informer.keys().sort()).toEqual(['a/gone', 'a/keep']);

      // Changes the informer never hears of, then the history is compacted: the watch it reopens from
      // its last version gets 410, which only a fresh list gets past.
      server.remove('a', 'gone', true);
      server.putQuietly('a', 'new', { v: '1' });
      const lists = server.listCalls.length;
      server.compact();
      // Bounded: ListWatch may wait (its reconnect delay, on the injected clock) between attempts.
      for (let i = 0; i < 5 && server.listCalls.length === lists; i++) {
        await flush();
        const next = clock.nextTimerAt();
        if (next !== undefined) clock.set(next);
        await flush();
      }
      expect(server.listCalls.length).toBe(lists + 1);
      expect(informer.keys().sort()).toEqual(['a/keep', 'a/new']);
      expect(server.openWatches()).toHaveLength(1);
      // ListWatch relisted by itself: no restart of the informer was needed.
      expect(restarts).toEqual([]);
      informer.stop();
    },
  );

  it('ignores events from a watch it has replaced', async () => {
    const { clock, server, informer, events } = setup();
    informer.start();
    await flush();
    const old = server.openWatches()[0]!;
    server.breakWatches();
    clock.advance(1000);
    await flush();
    old.callback('ADDED', { metadata: { namespace: 'a', name: 'ghost', resourceVersion: '999' } });
    expect(informer.get('a/ghost')).toBeUndefined();
    expect(events).toEqual([]);
    informer.stop();
  });

  it('relists on its timer, catching changes a silently dead watch missed', async () => {
    const { clock, server, informer, events, restarts } = setup({ relistIntervalMs: 300_000 });
    informer.start();
    await flush();
    server.putQuietly('a', 'missed', { v: '1' });
    clock.advance(299_999);
    await flush();
    expect(informer.get('a/missed')).toBeUndefined();
    clock.advance(1);
    await flush();
    expect(restarts).toEqual(['relist']);
    expect(events).toEqual(['add a/missed']);
    // The old watch was closed; exactly one is open.
    expect(server.openWatches()).toHaveLength(1);
    informer.stop();
  });

  it('reports a stall when nothing succeeds for stallTimeoutMs, and restarts', async () => {
    const { clock, server, informer, restarts } = setup({ stallTimeoutMs: 600_000, relistIntervalMs: 0 });
    informer.start();
    await flush();
    expect(informer.isStalled()).toBe(false);
    server.listFault = 'hang';
    server.breakWatches();
    clock.advance(1000);
    await flush();
    clock.advance(590_000);
    expect(informer.isStalled()).toBe(false);
    clock.advance(20_000);
    expect(informer.isStalled()).toBe(true);
    // The stall check runs every minute.
    clock.advance(60_000);
    await flush();
    expect(restarts).toEqual(['error', 'stall']);
    expect(informer.status()).toMatchObject({ synced: true, stalled: true });
    server.listFault = 'none';
    clock.advance(700_000);
    await flush();
    expect(restarts).toEqual(['error', 'stall', 'stall']);
    expect(informer.isStalled()).toBe(false);
    informer.stop();
  });

  it('watches several namespaces into one cache; a relist of one leaves the others alone', async () => {
    const { clock, server, informer, events } = setup({ namespaces: ['a', 'b'] });
    server.put('a', 'x');
    server.put('b', 'y');
    server.put('c', 'ignored');
    informer.start();
    await flush();
    expect(informer.keys().sort()).toEqual(['a/x', 'b/y']);
    expect(server.listCalls.sort()).toEqual([
      '/api/v1/namespaces/a/configmaps',
      '/api/v1/namespaces/b/configmaps',
    ]);
    expect(informer.listByNamespace('b').map(objectKey)).toEqual(['b/y']);

    // Break only namespace a's watch.
    server.openWatches()[0]!.done(new Error('reset'));
    clock.advance(1000);
    await flush();
    expect(informer.keys().sort()).toEqual(['a/x', 'b/y']);
    server.put('c', 'still-ignored');
    expect(events.filter((e) => e.includes('c/'))).toEqual([]);
    informer.stop();
  });

  it("lists one namespace's objects as watch events and relists change them", async () => {
    const { clock, server, informer } = setup();
    server.put('a', 'x', { v: '1' });
    server.put('b', 'z');
    informer.start();
    await flush();
    server.put('a', 'y');
    server.put('a', 'x', { v: '2' });
    await flush();
    const inA = () => informer.listByNamespace('a').map((o) => `${objectKey(o)} ${o.data?.v ?? ''}`);
    expect(inA()).toEqual(['a/x 2', 'a/y ']);
    server.remove('a', 'x');
    await flush();
    expect(inA()).toEqual(['a/y ']);
    // Gone without a watch event: the relist (every 5 min) removes it.
    server.remove('a', 'y', true);
    clock.advance(300_000);
    await flush();
    expect(inA()).toEqual([]);
    expect(informer.listByNamespace('b').map(objectKey)).toEqual(['b/z']);
    expect(informer.listByNamespace('c')).toEqual([]);
    informer.stop();
  });

  it('does not sync until every namespace has listed', async () => {
    const { server, informer } = setup({ namespaces: ['a', 'b'] });
    let calls = 0;
    const list = server.list.bind(server);
    server.list = async (path) => {
      calls++;
      if (path.includes('/b/')) return new Promise(() => undefined);
      return list(path);
    };
    informer.start();
    await flush();
    expect(calls).toBe(2);
    expect(informer.hasSynced()).toBe(false);
    const controller = new AbortController();
    const waiting = informer.waitForSync(controller.signal);
    controller.abort();
    expect(await waiting).toBe(false);
    informer.stop();
    expect(await informer.waitForSync()).toBe(false);
  });

  it('indexes objects by custom functions and keeps the index current', async () => {
    const { server, informer } = setup({
      indexers: { byApp: (cm) => (cm.metadata?.labels?.app ? [cm.metadata.labels.app] : []) },
    });
    const put = (name: string, app?: string) => {
      const obj = server.put('a', name);
      obj.metadata!.labels = app ? { app } : {};
      server.objects.set(`a/${name}`, obj);
    };
    put('one', 'web');
    put('two', 'web');
    informer.start();
    await flush();
    expect(informer.byIndex('byApp', 'web').map(objectKey).sort()).toEqual(['a/one', 'a/two']);
    server.objects.get('a/two');
    // A label change moves the object between index values.
    const moved = {
      ...server.objects.get('a/two')!,
      metadata: { ...server.objects.get('a/two')!.metadata, labels: { app: 'api' } },
    };
    server
      .openWatches()[0]!
      .callback('MODIFIED', { ...moved, metadata: { ...moved.metadata, resourceVersion: '500' } });
    expect(informer.byIndex('byApp', 'web').map(objectKey)).toEqual(['a/one']);
    expect(informer.byIndex('byApp', 'api').map(objectKey)).toEqual(['a/two']);
    server.remove('a', 'one');
    expect(informer.byIndex('byApp', 'web')).toEqual([]);
    expect(() => informer.byIndex('nope', 'x')).toThrow(/no indexer/);
    informer.stop();
  });

  it('replays the cache to a late handler, and enqueueTo queues old and new keys', async () => {
    const { server, informer } = setup();
    server.put('a', 'one');
    informer.start();
    await flush();
    const queue = new WorkQueue({ clock: new ManualClock() });
    const owners = (cm: V1ConfigMap) => [`owner/${cm.data?.owner ?? 'none'}`];
    informer.addEventHandler(enqueueTo(queue, owners));
    expect(await queue.get()).toBe('owner/none');
    queue.done('owner/none');
    server.put('a', 'one', { owner: 'x' });
    expect(queue.len()).toBe(2);
    const keys = [await queue.get(), await queue.get()];
    expect(keys.sort()).toEqual(['owner/none', 'owner/x']);
    informer.stop();
  });

  it('keeps working when a handler throws', async () => {
    const { server, informer } = setup();
    informer.addEventHandler({
      add: () => {
        throw new Error('bad handler');
      },
    });
    informer.start();
    await flush();
    server.put('a', 'one');
    server.put('a', 'two');
    expect(informer.keys()).toEqual(['a/one', 'a/two']);
    informer.stop();
  });

  it('stops watching and timing on stop', async () => {
    const { clock, server, informer } = setup();
    informer.start();
    await flush();
    informer.stop();
    await flush();
    expect(server.openWatches()).toHaveLength(0);
    clock.advance(3_600_000);
    await flush();
    expect(server.listCalls).toHaveLength(1);
    expect(clock.pending()).toBe(0);
  });
});

describe('kubeConfigSource', () => {
  it('ends a watch that sends nothing for watchTimeoutMs, with a TimeoutError', async () => {
    const { createServer } = await import('node:http');
    const { KubeConfig } = await import('@kubernetes/client-node');
    const { kubeConfigSource } = await import('./informer.ts');
    const requests: string[] = [];
    // An API server whose watches answer 200 and then stay silent.
    const server = createServer((req, res) => {
      requests.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as { port: number };
      const kc = new KubeConfig();
      kc.loadFromOptions({
        // Plain HTTP: client-node allows it only with skipTLSVerify (there is no TLS to verify).
        clusters: [{ name: 'c', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
        users: [{ name: 'u' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      const source = kubeConfigSource(kc, { watchTimeoutMs: 300 });
      const ended = new Promise<unknown>((resolve) => {
        source.watch('/api/v1/configmaps', {}, () => {}, resolve).catch(resolve);
      });
      const err = (await ended) as { name?: string } | null;
      expect(requests).toEqual(['/api/v1/configmaps?watch=true']);
      expect(err?.name).toBe('TimeoutError');
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
