import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from '@kubernetes/client-node';
import {
  dropManagedFields,
  errorFields,
  exponentialDelay,
  jitter,
  type Logger,
  objectKey,
  type ResourceType,
  requestJson,
  resourcePath,
  silentLogger,
} from '@kubewatcher/shared';
import { type Clock, sleep, systemClock, type TimerHandle } from './clock.ts';

/** Which resource an informer watches, and its API path (one place for both: packages/shared). */
export { type ResourceType, resourcePath };

/**
 * What the machinery needs of an object: its identity and version. Looser than client-node's
 * `KubernetesObject` (whose metadata says `Date` where the JSON has strings), so the project's own
 * CRD types fit as they are.
 */
export interface ObjectWithMeta {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string };
}

export type ListQuery = { labelSelector?: string; fieldSelector?: string };
type WatchFn = Watch['watch'];

/**
 * Where an informer lists and watches. The default (`kubeConfigSource`) talks to the API server; tests
 * may wrap it to inject faults.
 */
export interface ListWatchSource {
  /** Lists everything under `path` (following `continue` tokens), as the server's JSON. */
  list(path: string, query: ListQuery): Promise<KubernetesListObject<KubernetesObject>>;
  /** client-node's `Watch.watch`: streams events to `callback`, calls `done` once when the watch ends. */
  watch: WatchFn;
}

/**
 * Lists and watches through `kc`. Lists are plain GETs of the server's JSON (like the watch events),
 * not client-node's typed list calls, so listed and watched objects have the same shape: timestamps are
 * RFC 3339 strings even where client-node's model types say `Date`.
 */
export function kubeConfigSource(
  kc: KubeConfig,
  opts: {
    pageSize?: number;
    listTimeoutMs?: number;
    watchTimeoutMs?: number;
    /**
     * Applied to every listed (page by page) and watched object before any cache sees it, e.g. to keep
     * only the fields read: a list then holds one page of whole objects at a time, never all of them.
     */
    transform?: (obj: KubernetesObject) => KubernetesObject;
  } = {},
): ListWatchSource {
  if (!kc.getCurrentCluster()) throw new Error('no current cluster in the kubeconfig');
  const watcher = new Watch(kc);
  // client-node ends a watch after 30 s without data, but the API server sends bookmarks about once a
  // minute: every quiet watch was re-opened twice a minute. 90 s outlasts a bookmark's interval and
  // still notices a dead connection long before the informer's stall check would. The field is
  // declared private in client-node 2.0's types but is the only way to set it (informer.test.ts checks
  // that it still takes effect).
  (watcher as unknown as { requestTimeoutMs: number }).requestTimeoutMs = opts.watchTimeoutMs ?? 90_000;
  const pageSize = opts.pageSize ?? 500;
  // A hung list must not hang the informer: time it out like the watch's inactivity timeout.
  const listTimeoutMs = opts.listTimeoutMs ?? 60_000;

  const listPage = async (path: string, query: ListQuery, cont?: string) =>
    (await requestJson(kc, {
      method: 'GET',
      path,
      query: {
        ...(query.labelSelector ? { labelSelector: query.labelSelector } : {}),
        ...(query.fieldSelector ? { fieldSelector: query.fieldSelector } : {}),
        limit: String(pageSize),
        ...(cont ? { continue: cont } : {}),
      },
      timeoutMs: listTimeoutMs,
    })) as KubernetesListObject<KubernetesObject>;

  const transform = opts.transform ?? ((obj: KubernetesObject) => obj);
  return {
    async list(path, query) {
      const first = await listPage(path, query);
      const items = (first.items ?? []).map(transform);
      // Raw JSON says `continue`; client-node's model type calls it `_continue`.
      for (let page = first, token = continueToken(page); token; token = continueToken(page)) {
        page = await listPage(path, query, token);
        for (const item of page.items ?? []) items.push(transform(item));
      }
      return { ...first, metadata: { resourceVersion: first.metadata?.resourceVersion }, items };
    },
    watch: opts.transform
      ? objectEventsThrough(watcher.watch.bind(watcher), transform)
      : watcher.watch.bind(watcher),
  };
}

/**
 * An informer source without `metadata.managedFields`: the controller never reads them, and they are half of
 * a Deployment's JSON (and more of an ImageUpdate's with 500 results), so the caches hold 5,000
 * Deployments in ~24 MB instead of ~38 MB (client-go controllers strip them the same way).
 */
export function withoutManagedFields(source: ListWatchSource): ListWatchSource {
  return transformedSource(source, dropManagedFields);
}

/**
 * `source` with `transform` applied to every listed object and to the object of every ADDED, MODIFIED
 * and DELETED event, e.g. to cache only the fields read. The one way to wrap a source: ERROR and
 * BOOKMARK events pass untouched, since ListWatch reads an ERROR's Status (a 410 `code` makes it list
 * again; a projection that dropped it left the watch reopening from an expired version until the
 * relist timer) and a BOOKMARK's resourceVersion.
 */
export function transformedSource(
  source: ListWatchSource,
  transform: (obj: KubernetesObject) => KubernetesObject,
): ListWatchSource {
  return {
    async list(path, query) {
      const list = await source.list(path, query);
      return { ...list, items: (list.items ?? []).map(transform) };
    },
    watch: objectEventsThrough(source.watch, transform),
  };
}

/** `watch` with `transform` applied to the objects of ADDED, MODIFIED and DELETED events only. */
function objectEventsThrough(
  watch: WatchFn,
  transform: (obj: KubernetesObject) => KubernetesObject,
): WatchFn {
  return (path, params, callback, done) =>
    watch(
      path,
      params,
      (phase, obj, raw) => callback(phase, OBJECT_PHASES.has(phase) ? transform(obj) : obj, raw),
      done,
    );
}

const OBJECT_PHASES = new Set(['ADDED', 'MODIFIED', 'DELETED']);

function continueToken(list: KubernetesListObject<KubernetesObject>): string | undefined {
  const meta = list.metadata as { continue?: string; _continue?: string } | undefined;
  return meta?.continue || meta?._continue || undefined;
}

/**
 * Reacts to cache changes. Runs synchronously inside the informer: only enqueue keys here
 * (see `enqueueTo`); reconcile in workers. Objects are frozen: never mutate them.
 */
export interface EventHandler<T> {
  add?(obj: T): void;
  update?(oldObj: T, newObj: T): void;
  delete?(obj: T): void;
}

/** Why an informer started over: a failed list or watch, no activity for too long, or the relist timer. */
export type RestartReason = 'error' | 'stall' | 'relist';

export interface InformerOptions<T extends ObjectWithMeta> {
  resource: ResourceType;
  /** Builds the default source; not needed when `source` is given. */
  kubeConfig?: KubeConfig;
  source?: ListWatchSource;
  /** Namespaces to watch, one list+watch each, merged into one cache. Empty or absent: all namespaces. */
  namespaces?: readonly string[];
  labelSelector?: string;
  fieldSelector?: string;
  /** Secondary indexes: name → the index values of an object (e.g. its owners' keys, a label value). */
  indexers?: Readonly<Record<string, (obj: T) => readonly string[]>>;
  /** Start over with a fresh list this often, jittered (shortened) by up to 20 %. Default 5 min. 0 disables. */
  relistIntervalMs?: number;
  /**
   * No watch event and no successful list for this long is a stall: the informer restarts and
   * `isStalled()` is true until something arrives. Default 15 min.
   */
  stallTimeoutMs?: number;
  /** Restart delay after an error: doubles from `initialMs` up to `maxMs`, jittered down by up to 20 %. Default 1 s → 30 s. */
  restartBackoff?: { initialMs?: number; maxMs?: number };
  /** Name in logs, health details and metrics. Default: the resource's plural. */
  name?: string;
  clock?: Clock;
  /** Source of randomness for jitter. Default `Math.random`. */
  random?: () => number;
  logger?: Logger;
  /** Called on each restart, e.g. to count it in `kubewatcher_informer_restarts_total`. */
  onRestart?: (reason: RestartReason) => void;
}

export interface InformerStatus {
  name: string;
  synced: boolean;
  stalled: boolean;
  objects: number;
  /** Milliseconds since the last watch event or successful list of the quietest namespace. */
  idleMs: number;
}

const JITTER = 0.2;

/**
 * A cache of one resource kept current by list+watch (client-node's `ListWatch`), made resilient:
 * - after an `error` (a failed list or watch; client-node's informer stops there) it starts over with a
 *   fresh list after a jittered exponential backoff (1 s → 30 s);
 * - it starts over on a jittered timer (default every 5 min), so a watch that died silently loses
 *   nothing for long; a relist diffs against the cache and emits add/update/delete for what changed;
 * - no watch event (bookmarks count) and no successful list for `stallTimeoutMs` counts as a stall:
 *   restart, and `isStalled()` reports it (for `/healthz`).
 * - `namespaces: ['a', 'b']` runs one list+watch per namespace (for RBAC limited to those namespaces),
 *   merged into one cache; each restarts on its own.
 *
 * Cached objects are deep-frozen: they are shared with every reader, so mutating one would corrupt the
 * cache. Copy with `structuredClone` to change one.
 *
 * Objects are the server's JSON (see `kubeConfigSource`). Keys are `namespace/name` (`objectKey`).
 */
export class Informer<T extends ObjectWithMeta> {
  readonly name: string;
  readonly #opts: InformerOptions<T>;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #logger: Logger;
  readonly #source: ListWatchSource;
  readonly #streams: NamespaceStream<T>[];

  readonly #objects = new Map<string, T>();
  /**
   * namespace → key → object, for `listByNamespace`: a WatchedImage's plan reads its namespace's
   * workloads on every reconcile, and filtering every cached object for it cost more than the plan.
   */
  readonly #byNamespace = new Map<string, Map<string, T>>();
  /** index name → index value → keys. */
  readonly #indices = new Map<string, Map<string, Set<string>>>();
  /** index name → key → the values it is filed under. */
  readonly #indexed = new Map<string, Map<string, readonly string[]>>();
  readonly #handlers = new Set<EventHandler<T>>();
  #syncWaiters: Array<(synced: boolean) => void> = [];
  #started = false;
  #stopped = false;
  #stallTimer: TimerHandle | undefined;

  constructor(opts: InformerOptions<T>) {
    this.#opts = opts;
    this.name = opts.name ?? opts.resource.plural;
    this.#clock = opts.clock ?? systemClock;
    this.#random = opts.random ?? Math.random;
    this.#logger = opts.logger ?? silentLogger;
    if (opts.source) this.#source = opts.source;
    else if (opts.kubeConfig) this.#source = kubeConfigSource(opts.kubeConfig);
    else throw new Error(`informer ${this.name}: needs a kubeConfig or a source`);
    for (const index of Object.keys(opts.indexers ?? {})) {
      this.#indices.set(index, new Map());
      this.#indexed.set(index, new Map());
    }
    const namespaces = opts.namespaces?.length ? [...new Set(opts.namespaces)] : [undefined];
    const context: StreamContext<T> = {
      informer: this.name,
      opts,
      clock: this.#clock,
      random: this.#random,
      logger: this.#logger,
      source: this.#source,
      stopped: () => this.#stopped,
      upsert: (obj) => this.#upsert(obj),
      remove: (obj) => this.#remove(obj),
      replace: (namespace, items) => this.#replace(namespace, items),
      onSynced: () => {
        if (this.hasSynced()) this.#resolveSyncWaiters(true);
      },
    };
    this.#streams = namespaces.map((ns) => new NamespaceStream(context, ns));
  }

  /** Starts listing and watching. Returns at once; see `waitForSync`. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    for (const stream of this.#streams) stream.launch();
    this.#scheduleStallCheck();
  }

  /**
   * Stops every watch and timer, for good (an informer does not start again). The cache keeps its last
   * content; pending `waitForSync` calls resolve false.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#stallTimer) this.#clock.clearTimeout(this.#stallTimer);
    for (const stream of this.#streams) stream.stop();
    this.#resolveSyncWaiters(false);
  }

  /** True once every namespace has been listed at least once (it stays true across restarts). */
  hasSynced(): boolean {
    return this.#streams.every((s) => s.synced);
  }

  /** Resolves true once synced, or false if the informer stops or `signal` aborts first. */
  waitForSync(signal?: AbortSignal): Promise<boolean> {
    if (this.hasSynced()) return Promise.resolve(true);
    if (this.#stopped || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onAbort = () => {
        this.#syncWaiters = this.#syncWaiters.filter((w) => w !== waiter);
        resolve(false);
      };
      const waiter = (synced: boolean) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(synced);
      };
      this.#syncWaiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** True when some namespace had no watch event and no successful list for `stallTimeoutMs`. */
  isStalled(): boolean {
    const now = this.#clock.now();
    return (
      this.#started &&
      !this.#stopped &&
      this.#streams.some((s) => now - s.lastActivity > this.#stallTimeoutMs)
    );
  }

  status(): InformerStatus {
    const now = this.#clock.now();
    const idleMs = Math.max(0, ...this.#streams.map((s) => now - s.lastActivity));
    return {
      name: this.name,
      synced: this.hasSynced(),
      stalled: this.isStalled(),
      objects: this.#objects.size,
      idleMs,
    };
  }

  /**
   * Registers a handler; existing objects are replayed to it as adds (client-go semantics), so a late
   * handler misses nothing. Returns a function that removes it.
   */
  addEventHandler(handler: EventHandler<T>): () => void {
    this.#handlers.add(handler);
    for (const obj of this.#objects.values()) this.#call('add', () => handler.add?.(obj));
    return () => this.#handlers.delete(handler);
  }

  /** The object with key `namespace/name` (or `name` when cluster-scoped). */
  get(key: string): T | undefined {
    return this.#objects.get(key);
  }

  /** Every cached object. */
  list(): T[] {
    return [...this.#objects.values()];
  }

  /** Cached objects of one namespace. */
  listByNamespace(namespace: string): T[] {
    const objects = this.#byNamespace.get(namespace);
    return objects ? [...objects.values()] : [];
  }

  /** Every cached key. */
  keys(): string[] {
    return [...this.#objects.keys()];
  }

  /** Objects filed under `value` by the indexer `index`. */
  byIndex(index: string, value: string): T[] {
    const byValue = this.#indices.get(index);
    if (!byValue) throw new Error(`informer ${this.name}: no indexer named ${index}`);
    const keys = byValue.get(value);
    if (!keys) return [];
    return [...keys].map((k) => this.#objects.get(k)).filter((o): o is T => o !== undefined);
  }

  get #stallTimeoutMs(): number {
    return this.#opts.stallTimeoutMs ?? 15 * 60_000;
  }

  #resolveSyncWaiters(synced: boolean): void {
    const waiters = this.#syncWaiters;
    this.#syncWaiters = [];
    for (const w of waiters) w(synced);
  }

  #scheduleStallCheck(): void {
    const interval = Math.max(1000, Math.min(this.#stallTimeoutMs / 4, 60_000));
    this.#stallTimer = this.#clock.setTimeout(() => {
      if (this.#stopped) return;
      const now = this.#clock.now();
      for (const stream of this.#streams) stream.checkStall(now, this.#stallTimeoutMs);
      this.#scheduleStallCheck();
    }, interval);
  }

  #upsert(raw: T): void {
    const key = objectKey(raw);
    const old = this.#objects.get(key);
    // Same resourceVersion: the same object again (a relist, or ListWatch replaying its list).
    const version = old?.metadata?.resourceVersion;
    if (version && version === raw.metadata?.resourceVersion) return;
    const obj = deepFreeze(raw);
    this.#objects.set(key, obj);
    this.#fileByNamespace(key, old, obj);
    this.#reindex(key, obj);
    if (old) this.#emit('update', (h) => h.update?.(old, obj));
    else this.#emit('add', (h) => h.add?.(obj));
  }

  #remove(raw: T): void {
    const key = objectKey(raw);
    const old = this.#objects.get(key);
    if (!old) return;
    this.#objects.delete(key);
    this.#fileByNamespace(key, old, undefined);
    this.#reindex(key, undefined);
    // The watch's DELETED object is the final state; a relist only knows the cached one.
    const last = raw === old ? old : deepFreeze(raw);
    this.#emit('delete', (h) => h.delete?.(last));
  }

  #replace(namespace: string | undefined, items: T[]): void {
    const seen = new Set<string>();
    for (const item of items) {
      seen.add(objectKey(item));
      this.#upsert(item);
    }
    for (const [key, obj] of [...this.#objects]) {
      if (seen.has(key)) continue;
      if (namespace !== undefined && obj.metadata?.namespace !== namespace) continue;
      this.#remove(obj);
    }
  }

  /** Moves `key` in `#byNamespace` from `old`'s namespace to `obj`'s (cluster-scoped objects are in none). */
  #fileByNamespace(key: string, old: T | undefined, obj: T | undefined): void {
    const before = old?.metadata?.namespace;
    const after = obj?.metadata?.namespace;
    if (before !== undefined && (obj === undefined || before !== after)) {
      const objects = this.#byNamespace.get(before);
      objects?.delete(key);
      if (objects?.size === 0) this.#byNamespace.delete(before);
    }
    if (after === undefined || obj === undefined) return;
    const objects = this.#byNamespace.get(after) ?? new Map<string, T>();
    objects.set(key, obj);
    this.#byNamespace.set(after, objects);
  }

  #reindex(key: string, obj: T | undefined): void {
    for (const [index, fn] of Object.entries(this.#opts.indexers ?? {})) {
      const byValue = this.#indices.get(index)!;
      const byKey = this.#indexed.get(index)!;
      for (const value of byKey.get(key) ?? []) {
        const keys = byValue.get(value);
        keys?.delete(key);
        if (keys?.size === 0) byValue.delete(value);
      }
      byKey.delete(key);
      if (!obj) continue;
      let values: readonly string[] = [];
      try {
        values = [...new Set(fn(obj))];
      } catch (err) {
        this.#logger.error('informer: indexer failed', {
          informer: this.name,
          index,
          key,
          ...errorFields(err),
        });
      }
      byKey.set(key, values);
      for (const value of values) {
        const keys = byValue.get(value) ?? new Set<string>();
        keys.add(key);
        byValue.set(value, keys);
      }
    }
  }

  #emit(event: keyof EventHandler<T>, call: (h: EventHandler<T>) => void): void {
    for (const handler of this.#handlers) this.#call(event, () => call(handler));
  }

  #call(event: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#logger.error('informer: event handler threw', {
        informer: this.name,
        event,
        ...errorFields(err),
      });
    }
  }
}

/** What a NamespaceStream needs of its Informer. */
interface StreamContext<T extends ObjectWithMeta> {
  informer: string;
  opts: InformerOptions<T>;
  clock: Clock;
  random: () => number;
  logger: Logger;
  source: ListWatchSource;
  stopped(): boolean;
  upsert(obj: T): void;
  remove(obj: T): void;
  /** Makes the cache's content of `namespace` (all when undefined) equal `items`. */
  replace(namespace: string | undefined, items: T[]): void;
  onSynced(): void;
}

/**
 * One namespace's (or all namespaces') list+watch: a client-node ListWatch, replaced by a fresh one on
 * every restart. Callbacks of a replaced ListWatch are ignored (`generation`), so a late event from an
 * old watch can never overwrite what a newer list said.
 */
class NamespaceStream<T extends ObjectWithMeta> {
  readonly #ctx: StreamContext<T>;
  readonly #namespace: string | undefined;
  synced = false;
  lastActivity: number;
  #generation = 0;
  #listWatch: ListWatch<KubernetesObject> | undefined;
  #timer: TimerHandle | undefined;
  #failures = 0;
  #launchedAt = 0;
  #lastStallRestart = Number.NEGATIVE_INFINITY;

  constructor(ctx: StreamContext<T>, namespace: string | undefined) {
    this.#ctx = ctx;
    this.#namespace = namespace;
    this.lastActivity = ctx.clock.now();
  }

  get #label(): Record<string, unknown> {
    return this.#namespace === undefined
      ? { informer: this.#ctx.informer }
      : { informer: this.#ctx.informer, namespace: this.#namespace };
  }

  launch(): void {
    const { opts, clock, random, source, logger } = this.#ctx;
    // New generation first: stopping the old ListWatch makes it report an abort error, to be ignored.
    const generation = ++this.#generation;
    this.#halt();
    const current = () => generation === this.#generation && !this.#ctx.stopped();
    this.#launchedAt = clock.now();

    const path = resourcePath(opts.resource, this.#namespace);
    const query: ListQuery = {};
    if (opts.labelSelector) query.labelSelector = opts.labelSelector;
    if (opts.fieldSelector) query.fieldSelector = opts.fieldSelector;

    const list = async (): Promise<KubernetesListObject<KubernetesObject>> => {
      const result = await source.list(path, query);
      // Superseded while listing: fail quietly so this ListWatch ends without starting a watch.
      if (!current()) throw new SupersededError();
      const kind = result.kind?.endsWith('List') ? result.kind.slice(0, -4) : opts.resource.kind;
      const items = (result.items ?? []).map((item) => ({
        ...item,
        apiVersion: item.apiVersion ?? result.apiVersion ?? opts.resource.apiVersion,
        kind: item.kind ?? kind,
      })) as T[];
      this.#ctx.replace(this.#namespace, items);
      this.lastActivity = clock.now();
      logger.debug('informer: listed', { ...this.#label, objects: items.length });
      if (!this.synced) {
        this.synced = true;
        this.#ctx.onSynced();
      }
      return { ...result, items } as KubernetesListObject<KubernetesObject>;
    };

    // The Watch ListWatch calls. It asks for bookmarks (fresher resourceVersions, so fewer 410 relists),
    // counts every event, bookmarks included, as a sign of life, and closes at once a watch that
    // connects after this stream moved on.
    const watch = {
      watch: async (...[watchPath, params, callback, done]: Parameters<WatchFn>) => {
        const counted: typeof callback = (phase, obj, raw) => {
          if (current() && phase !== 'ERROR') this.lastActivity = clock.now();
          callback(phase, obj, raw);
        };
        const controller = await source.watch(
          watchPath,
          { ...params, allowWatchBookmarks: true },
          counted,
          done,
        );
        if (!current()) controller.abort();
        return controller;
      },
    } as unknown as Watch;

    const lw = new ListWatch<KubernetesObject>(
      path,
      watch,
      list,
      false,
      opts.labelSelector,
      opts.fieldSelector,
      {
        delayFn: (ms) => sleep(clock, ms),
      },
    );
    // ListWatch is typed for client-node's KubernetesObject; what it passes on is the server's JSON.
    const onObject = (obj: KubernetesObject) => {
      if (!current()) return;
      this.lastActivity = clock.now();
      this.#ctx.upsert(obj as T);
    };
    lw.on('add', onObject);
    lw.on('update', onObject);
    lw.on('delete', (obj: KubernetesObject) => {
      if (!current()) return;
      this.lastActivity = clock.now();
      this.#ctx.remove(obj as T);
    });
    lw.on('error', (err?: unknown) => {
      if (current()) this.#onError(err);
    });
    this.#listWatch = lw;
    lw.start().catch((err: unknown) => {
      if (current()) this.#onError(err);
    });

    const relistMs = opts.relistIntervalMs ?? 5 * 60_000;
    if (relistMs > 0) {
      this.#timer = clock.setTimeout(() => this.#restart('relist'), jitter(relistMs, JITTER, random));
    }
  }

  stop(): void {
    this.#generation++;
    this.#halt();
  }

  checkStall(now: number, stallTimeoutMs: number): void {
    if (now - this.lastActivity <= stallTimeoutMs) return;
    if (now - this.#lastStallRestart <= stallTimeoutMs) return;
    this.#lastStallRestart = now;
    this.#ctx.logger.warn('informer: no event and no successful list for too long, restarting', {
      ...this.#label,
      idleSeconds: Math.round((now - this.lastActivity) / 1000),
    });
    this.#restart('stall');
  }

  #restart(reason: RestartReason): void {
    if (this.#ctx.stopped()) return;
    this.#ctx.opts.onRestart?.(reason);
    this.#ctx.logger.debug('informer: starting over', { ...this.#label, reason });
    this.launch();
  }

  #onError(err: unknown): void {
    const { opts, clock, random, logger } = this.#ctx;
    if (err instanceof SupersededError) return;
    this.#generation++;
    this.#halt();
    const initial = opts.restartBackoff?.initialMs ?? 1000;
    const max = opts.restartBackoff?.maxMs ?? 30_000;
    // A stream that ran fine for a while starts its backoff over; one failing at once keeps doubling,
    // so a persistent fault (RBAC, a missing CRD) never turns into a request storm.
    if (clock.now() - this.#launchedAt > 2 * max) this.#failures = 0;
    // Jitter shortens the delay (by up to 20 %) so that it never exceeds `max` yet spreads out even
    // informers that all sit at the cap.
    const delay = jitter(exponentialDelay(this.#failures, initial, max), JITTER, random);
    this.#failures++;
    logger.warn('informer: list/watch failed, restarting', {
      ...this.#label,
      retryInMs: Math.round(delay),
      ...errorFields(err),
    });
    opts.onRestart?.('error');
    this.#timer = clock.setTimeout(() => {
      if (!this.#ctx.stopped()) this.launch();
    }, delay);
  }

  /** Stops the current ListWatch and timer; callers bump the generation first when needed. */
  #halt(): void {
    const { clock } = this.#ctx;
    if (this.#timer) clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    const lw = this.#listWatch;
    this.#listWatch = undefined;
    lw?.stop().catch(() => undefined);
  }
}

class SupersededError extends Error {
  constructor() {
    super('list superseded by a newer one');
  }
}

/** Freezes an object graph in place; cached objects are shared and must never change. */
function deepFreeze<T>(obj: T): T {
  if (obj === null || typeof obj !== 'object' || Object.isFrozen(obj)) return obj;
  for (const value of Object.values(obj as object)) deepFreeze(value);
  return Object.freeze(obj);
}

/**
 * An event handler that only enqueues keys: `keysOf` maps an object to the keys to reconcile (default:
 * its own key). On update both the old and the new object's keys are queued, so a change that moves
 * an object from one owner to another reconciles both.
 */
export function enqueueTo<T extends ObjectWithMeta>(
  queue: { add(key: string): void },
  keysOf: (obj: T) => readonly string[] = (obj) => [objectKey(obj)],
): EventHandler<T> {
  const enqueue = (obj: T) => {
    for (const key of keysOf(obj)) queue.add(key);
  };
  return {
    add: enqueue,
    update: (oldObj, newObj) => {
      enqueue(oldObj);
      enqueue(newObj);
    },
    delete: enqueue,
  };
}
