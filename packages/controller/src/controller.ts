import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import {
  API_VERSION,
  type AutoWatchMode,
  apiVersionOf,
  DEFAULT_AUTO_WATCH_MODE,
  IMAGE_UPDATE,
  type ImageUpdate,
  type Logger,
  reuseConnections,
  SYSTEM_NAMESPACES,
  splitKey,
  WATCHED_IMAGE,
  type WatchedImage,
  WORKLOAD_KIND_NAMES,
  WORKLOAD_KINDS,
  type WorkloadKind,
} from '@kubewatcher/shared';
import type { Registry } from 'prom-client';
import { cachedWorkload } from './cached-workload.ts';
import { ControllerWriter } from './cluster.ts';
import {
  type ControllerMetrics,
  cachesSyncedOrStandby,
  createControllerMetrics,
  defaultIdentity,
  Informer,
  informersNotStalled,
  kubeConfigSource,
  type LeaderElectionOptions,
  LeaderElector,
  type ProbeServer,
  reconcileMetricsRecorder,
  runWorker,
  startProbeServer,
  WorkQueue,
  withoutManagedFields,
  workQueueHooks,
} from './machinery/index.ts';
import { Notifier } from './notifications/notifier.ts';
import type { AutoWatchScope, NamespaceLike } from './plan-auto-watch.ts';
import type { Workload } from './plan-update.ts';
import { PollerAccess, type PollerAccessGrant } from './poller-access.ts';
import { AutoWatchReconciler, namespaceLabelsOnly } from './reconcile-auto-watch.ts';
import {
  BY_WATCHED_IMAGE,
  type Caches,
  ImageUpdateReconciler,
  typedCache,
  WatchedImageReconciler,
  watchedImageKeyOf,
} from './reconcilers.ts';
import { WebhookReceiver, type WebhookReceiverOptions } from './webhook/receiver.ts';

export interface ControllerOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  registry: Registry;
  /** Namespaces to watch; all when empty. */
  namespaces?: readonly string[];
  /** Workers per queue. */
  concurrency?: number;
  /** `host:port` of /metrics, /healthz, /readyz; '0' or ':0' for a free port. */
  metricsAddress?: string;
  /** The Lease and its timings; the elector's client, logger and callbacks are the controller's. */
  leaderElection?: Pick<
    LeaderElectionOptions,
    'namespace' | 'name' | 'identity' | 'leaseDurationSeconds' | 'renewDeadlineMs' | 'retryPeriodMs'
  >;
  rolloutTimeoutMs?: number;
  relistIntervalMs?: number;
  /** Which workloads get generated WatchedImages (`--auto-watch`); default `opted-in`. */
  autoWatch?: AutoWatchMode;
  /** Kubewatcher's own namespace, which `--auto-watch=all` leaves out unless it is labelled. */
  ownNamespace?: string;
  /** The notification endpoints file; no notifications when absent. */
  notificationsFile?: string;
  /** The registry webhook receiver; off when absent. */
  webhook?: Pick<
    WebhookReceiverOptions,
    'address' | 'receiversFile' | 'namespace' | 'cronJobName' | 'debounceMs'
  >;
  /** The clock plans read (update windows, minimum age, timeouts); tests shift it. */
  now?: () => Date;
  /**
   * Bind this ClusterRole (get secrets) to the poller in each namespace that holds WatchedImages, and
   * unbind it when the last one goes. Absent: the install grants the poller its secrets itself.
   */
  pollerAccess?: PollerAccessGrant;
}

/**
 * The controller process: informers on WatchedImages, ImageUpdates, the workload kinds and (for
 * auto-watch) Namespaces, run on every replica so a standby is warm, and, while this replica leads,
 * one work queue per reconciler with its workers. Handlers only enqueue keys.
 */
export class Controller {
  readonly metrics: ControllerMetrics;
  readonly caches: Caches;
  readonly identity: string;
  /** Every informer, for start/stop and the probes; `caches` are typed views of them. */
  readonly informers: Informer<KubernetesObject>[] = [];
  readonly #opts: ControllerOptions;
  readonly #writer: ControllerWriter;
  readonly #elector: LeaderElector | undefined;
  readonly #autoWatch: AutoWatchScope;
  #server: ProbeServer | undefined;
  readonly webhook: WebhookReceiver | undefined;
  readonly notifier: Notifier | undefined;
  #leading: { queues: WorkQueue[]; unsubscribe: (() => void)[]; workers: Promise<void>[] } | undefined;

  constructor(opts: ControllerOptions) {
    reuseConnections(opts.kubeConfig);
    this.#opts = opts;
    this.identity = opts.leaderElection?.identity ?? defaultIdentity();
    this.metrics = createControllerMetrics(opts.registry);
    this.#writer = new ControllerWriter(opts.kubeConfig, this.identity);
    this.#autoWatch = {
      mode: opts.autoWatch ?? DEFAULT_AUTO_WATCH_MODE,
      excludedNamespaces: new Set([...SYSTEM_NAMESPACES, ...(opts.ownNamespace ? [opts.ownNamespace] : [])]),
    };
    const limited = (opts.namespaces?.length ?? 0) > 0;
    const common = {
      source: withoutManagedFields(kubeConfigSource(opts.kubeConfig)),
      logger: opts.logger,
      ...(opts.namespaces && opts.namespaces.length > 0 ? { namespaces: opts.namespaces } : {}),
      ...(opts.relistIntervalMs !== undefined ? { relistIntervalMs: opts.relistIntervalMs } : {}),
    };
    const workloadSource = (kind: WorkloadKind) => ({
      source: kubeConfigSource(opts.kubeConfig, {
        transform: (o) => cachedWorkload(o, kind) as KubernetesObject,
      }),
    });
    const informer = (resource: { apiVersion: string; kind: string; plural: string }, extra: object = {}) => {
      const i = new Informer<KubernetesObject>({
        ...common,
        ...extra,
        resource,
        onRestart: (reason) => this.metrics.informerRestarts.inc({ informer: resource.plural, reason }),
      });
      this.informers.push(i);
      return i;
    };
    this.caches = {
      watchedImages: typedCache<WatchedImage>(
        informer({ apiVersion: API_VERSION, kind: WATCHED_IMAGE.kind, plural: WATCHED_IMAGE.plural }),
      ),
      updates: typedCache<ImageUpdate>(
        informer(
          { apiVersion: API_VERSION, kind: IMAGE_UPDATE.kind, plural: IMAGE_UPDATE.plural },
          {
            indexers: {
              [BY_WATCHED_IMAGE]: (u: KubernetesObject) => [watchedImageKeyOf(u as unknown as ImageUpdate)],
            },
          },
        ),
      ),
      // One informer per kind of the table in packages/shared. Workloads are the tenants' objects, of
      // any size: their caches keep only the fields read.
      workloads: Object.fromEntries(
        WORKLOAD_KIND_NAMES.map((kind) => [
          kind,
          typedCache<Workload>(
            informer(
              { apiVersion: apiVersionOf(kind), kind, plural: WORKLOAD_KINDS[kind].plural },
              workloadSource(kind),
            ),
          ),
        ]),
      ) as Caches['workloads'],
      // Namespaces are cluster-scoped: a controller limited to named namespaces has no grant to read
      // them, and reads only the workloads' own opt-in.
      ...(this.#autoWatch.mode !== 'off' && !limited
        ? {
            namespaces: typedCache<NamespaceLike>(
              informer(
                { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces' },
                { source: namespaceLabelsOnly(kubeConfigSource(opts.kubeConfig)) },
              ),
            ),
          }
        : {}),
    };
    if (opts.webhook) {
      this.webhook = new WebhookReceiver({
        ...opts.webhook,
        kubeConfig: opts.kubeConfig,
        logger: opts.logger,
        watchedImages: () =>
          this.caches.watchedImages.keys().flatMap((k) => this.caches.watchedImages.get(k) ?? []),
        watchedImagesSynced: () =>
          this.informers.find((i) => i.name === WATCHED_IMAGE.plural)?.hasSynced() === true,
        onResult: (receiver, code) => this.metrics.webhookRequests.inc({ receiver, code: String(code) }),
        onPollerRun: (result) => this.metrics.webhookPollerRuns.inc({ result }),
      });
    }
    if (opts.notificationsFile) {
      this.notifier = new Notifier({
        kubeConfig: opts.kubeConfig,
        logger: opts.logger,
        endpointsFile: opts.notificationsFile,
        updates: this.caches.updates,
        onDelivery: (endpoint, result) => this.metrics.notifications.inc({ endpoint, result }),
        onDropped: () => this.metrics.notificationsDropped.inc(),
      });
    }
    if (opts.leaderElection) {
      this.#elector = new LeaderElector({
        kubeConfig: opts.kubeConfig,
        ...opts.leaderElection,
        identity: this.identity,
        logger: opts.logger,
        onStartedLeading: (signal) => this.#startLeading(signal),
        onStoppedLeading: () => this.#stopLeading(),
        onNewLeader: (holder) =>
          opts.logger.info('leader observed', { leader: holder || '(none)', self: holder === this.identity }),
      });
    }
  }

  /** The probe server's URL once started. */
  get url(): string | undefined {
    return this.#server?.url;
  }

  isLeader(): boolean {
    return this.#elector ? this.#elector.isLeader() : this.#leading !== undefined;
  }

  /**
   * Starts the informers and the probe server, then leads (at once, or when elected). Resolves when
   * the controller stops: 'stopped' after `stop()`, 'lost' when leadership was lost, 'failed' when
   * starting to lead failed (the Lease is released, so a standby takes over).
   */
  async run(): Promise<'stopped' | 'lost' | 'failed'> {
    for (const i of this.informers) i.start();
    this.#server = await startProbeServer({
      address: this.#opts.metricsAddress ?? ':8080',
      registry: this.#opts.registry,
      liveness: [informersNotStalled(this.informers)],
      readiness: [cachesSyncedOrStandby(this.informers, this.#elector)],
      logger: this.#opts.logger,
    });
    await this.webhook?.start();
    this.#opts.logger.info('controller started', {
      identity: this.identity,
      metrics: this.#server.url,
      namespaces: this.#opts.namespaces?.length ? this.#opts.namespaces : 'all',
    });
    if (this.#elector) return this.#elector.run();
    const stopped = new Promise<'stopped'>((resolve) => {
      this.#resolveStopped = resolve;
    });
    await this.#startLeading(new AbortController().signal);
    return stopped;
  }

  #resolveStopped: ((v: 'stopped') => void) | undefined;

  /**
   * Graceful stop: finish the keys in progress, release the Lease, stop informers and the server.
   * Never rejects: a step that fails is logged and the others still run, so a shutdown that was asked
   * for ends as one ('stopped'), not as a crash.
   */
  async stop(): Promise<void> {
    const step = async (what: string, fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        this.#opts.logger.warn(`shutdown: ${what} failed`, { error: (err as Error).message });
      }
    };
    await step('stopping leadership', () => (this.#elector ? this.#elector.stop() : this.#stopLeading()));
    await step('stopping the webhook receiver', () => this.webhook?.stop());
    await step('stopping the informers', () => {
      for (const i of this.informers) i.stop();
    });
    await step('closing the probe server', () => this.#server?.close(5000));
    this.#resolveStopped?.('stopped');
  }

  async #startLeading(signal: AbortSignal): Promise<void> {
    const { logger } = this.#opts;
    this.metrics.leader.set(1);
    logger.info('leading: waiting for caches to sync');
    for (const i of this.informers) {
      if (!(await i.waitForSync(signal))) return;
    }
    if (signal.aborted) return;
    const { caches } = this;
    const pollerAccess = this.#opts.pollerAccess
      ? new PollerAccess(this.#opts.pollerAccess, this.#writer, logger)
      : undefined;
    // Bindings left from before (the last WatchedImage of a namespace deleted while no replica led): a
    // key of no WatchedImage in such a namespace makes its reconcile remove the binding. Only in the
    // namespaces this controller watches: elsewhere an empty cache says nothing.
    const watchedNamespaces = this.#opts.namespaces?.length ? new Set(this.#opts.namespaces) : undefined;
    const leftBindings = pollerAccess
      ? (await pollerAccess.bound())
          .filter((namespace) => watchedNamespaces?.has(namespace) ?? true)
          .filter((namespace) => caches.watchedImages.listByNamespace(namespace).length === 0)
          .map((namespace) => `${namespace}/${pollerAccess.role}`)
      : [];
    if (leftBindings.length > 0) {
      logger.info('checking poller access bindings left in namespaces without WatchedImages', {
        namespaces: leftBindings.map((key) => key.slice(0, key.indexOf('/'))),
      });
    }
    const deps = {
      caches,
      writer: this.#writer,
      logger,
      metrics: this.metrics,
      autoWatch: this.#autoWatch,
      ...(this.#opts.now ? { now: this.#opts.now } : {}),
      ...(pollerAccess ? { pollerAccess } : {}),
    };
    // Each reconciler says why its keys are queued (`watches`), beside the code that handles them.
    const reconcilers = [
      {
        name: 'watchedimage',
        reconciler: new WatchedImageReconciler(deps),
        keys: [...caches.watchedImages.keys(), ...leftBindings],
      },
      {
        name: 'imageupdate',
        reconciler: new ImageUpdateReconciler({
          ...deps,
          rolloutTimeoutMs: this.#opts.rolloutTimeoutMs ?? 600_000,
        }),
        keys: caches.updates.keys(),
      },
      { name: 'autowatch', reconciler: new AutoWatchReconciler(deps), keys: this.#namespacesInUse() },
    ];
    const queues: WorkQueue[] = [];
    const unsubscribe: (() => void)[] = [];
    const workers: Promise<void>[] = [];
    const n = Math.max(1, this.#opts.concurrency ?? 2);
    for (const { name, reconciler, keys } of reconcilers) {
      const queue = new WorkQueue({ hooks: workQueueHooks(this.metrics, name) });
      queues.push(queue);
      unsubscribe.push(...reconciler.watches(queue));
      for (const key of keys) queue.add(key);
      for (let i = 0; i < n; i++) {
        workers.push(
          runWorker(queue, reconciler.reconcile, {
            logger,
            onOutcome: reconcileMetricsRecorder(this.metrics, name),
          }),
        );
      }
    }
    this.#leading = { queues, unsubscribe, workers };
    // Its own queue and workers: a slow or broken endpoint never holds up a reconcile.
    this.notifier?.start();
    logger.info('leading: caches synced, workers started', {
      workersPerQueue: n,
      autoWatch: this.#autoWatch.mode,
    });
  }

  /** Every namespace with a workload or a WatchedImage: what auto-watch looks at after a (re)start. */
  #namespacesInUse(): string[] {
    const { caches } = this;
    const namespaces = new Set<string>();
    const add = (key: string) => namespaces.add(splitKey(key).namespace ?? '');
    for (const key of caches.watchedImages.keys()) add(key);
    for (const kind of WORKLOAD_KIND_NAMES) for (const key of caches.workloads[kind].keys()) add(key);
    return [...namespaces].sort();
  }

  async #stopLeading(): Promise<void> {
    this.metrics.leader.set(0);
    const leading = this.#leading;
    this.#leading = undefined;
    if (!leading) return;
    await this.notifier?.stop();
    for (const u of leading.unsubscribe) u();
    await Promise.all(leading.queues.map((q) => q.shutDownWithDrain()));
    await Promise.all(leading.workers);
    this.#opts.logger.info('stopped leading: workers drained');
  }
}
