import { isDeepStrictEqual } from 'node:util';
import type { KubeConfig, KubernetesObject } from '@kubernetes/client-node';
import {
  API_VERSION,
  IMAGE_UPDATE,
  type ImageUpdate,
  type Logger,
  matchWorkloads,
  phaseOf,
  reuseConnections,
  TERMINAL_PHASES,
  WATCHED_IMAGE,
  type WatchedImage,
} from '@kubewatcher/shared';
import type { Registry } from 'prom-client';
import { ControllerWriter } from './cluster.ts';
import {
  type ControllerMetrics,
  cachesSyncedOrStandby,
  createControllerMetrics,
  defaultIdentity,
  type EventHandler,
  enqueueTo,
  Informer,
  informersNotStalled,
  kubeConfigSource,
  LeaderElector,
  type ProbeServer,
  reconcileMetricsRecorder,
  runWorker,
  startProbeServer,
  WorkQueue,
  withoutManagedFields,
  workQueueHooks,
} from './machinery/index.ts';
import type { Workload } from './plan-update.ts';
import {
  BY_WATCHED_IMAGE,
  type Caches,
  ImageUpdateReconciler,
  typedCache,
  WatchedImageReconciler,
  watchedImageKeyOf,
} from './reconcilers.ts';

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
  leaderElection?: {
    namespace: string;
    name: string;
    identity?: string;
    leaseDurationSeconds?: number;
    renewDeadlineMs?: number;
    retryPeriodMs?: number;
  };
  rolloutTimeoutMs?: number;
  relistIntervalMs?: number;
}

const WORKLOAD_RESOURCES = {
  Deployment: { apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments' },
  StatefulSet: { apiVersion: 'apps/v1', kind: 'StatefulSet', plural: 'statefulsets' },
  DaemonSet: { apiVersion: 'apps/v1', kind: 'DaemonSet', plural: 'daemonsets' },
} as const;

/**
 * The controller process: informers on WatchedImages, ImageUpdates and the workload kinds (run on
 * every replica, so a standby is warm), and, while this replica leads, two work queues with their
 * workers. Handlers only enqueue keys.
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
  #server: ProbeServer | undefined;
  #leading: { queues: WorkQueue[]; unsubscribe: (() => void)[]; workers: Promise<void>[] } | undefined;

  constructor(opts: ControllerOptions) {
    reuseConnections(opts.kubeConfig);
    this.#opts = opts;
    this.identity = opts.leaderElection?.identity ?? defaultIdentity();
    this.metrics = createControllerMetrics(opts.registry);
    this.#writer = new ControllerWriter(opts.kubeConfig, this.identity);
    const common = {
      source: withoutManagedFields(kubeConfigSource(opts.kubeConfig)),
      logger: opts.logger,
      ...(opts.namespaces && opts.namespaces.length > 0 ? { namespaces: opts.namespaces } : {}),
      ...(opts.relistIntervalMs !== undefined ? { relistIntervalMs: opts.relistIntervalMs } : {}),
    };
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
      workloads: {
        Deployment: typedCache<Workload>(informer(WORKLOAD_RESOURCES.Deployment)),
        StatefulSet: typedCache<Workload>(informer(WORKLOAD_RESOURCES.StatefulSet)),
        DaemonSet: typedCache<Workload>(informer(WORKLOAD_RESOURCES.DaemonSet)),
      },
    };
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
   * the controller stops: 'stopped' after `stop()`, 'lost' when leadership was lost.
   */
  async run(): Promise<'stopped' | 'lost'> {
    for (const i of this.informers) i.start();
    this.#server = await startProbeServer({
      address: this.#opts.metricsAddress ?? ':8080',
      registry: this.#opts.registry,
      liveness: [informersNotStalled(this.informers)],
      readiness: [cachesSyncedOrStandby(this.informers, this.#elector)],
      logger: this.#opts.logger,
    });
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

  /** Graceful stop: finish the keys in progress, release the Lease, stop informers and the server. */
  async stop(): Promise<void> {
    if (this.#elector) await this.#elector.stop();
    else await this.#stopLeading();
    for (const i of this.informers) i.stop();
    await this.#server?.close(5000);
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
    const wiQueue = new WorkQueue({ hooks: workQueueHooks(this.metrics, 'watchedimage') });
    const iuQueue = new WorkQueue({ hooks: workQueueHooks(this.metrics, 'imageupdate') });
    const { caches } = this;
    // A workload event concerns only the WatchedImages that match the workload (enqueueTo looks at it
    // before and after a change) and the unfinished updates of those, or that list it in their results:
    // nothing else reads it (planWatchedImage, planUpdate). Enqueueing every WatchedImage and update of
    // the namespace made each status change of a rollout re-plan them all against every workload, which
    // kept the controller busy for minutes at 100 WatchedImages and 500 Deployments.
    const watchedImagesMatching = (w: Workload) =>
      caches.watchedImages
        .listByNamespace(w.metadata?.namespace ?? '')
        .filter((wi) => matchWorkloads(wi.spec, [w]).length > 0)
        .map((wi) => keyOf(wi));
    const unfinishedUpdatesConcerning = (w: Workload) => {
      const watchedImages = new Set(watchedImagesMatching(w));
      return caches.updates
        .listByNamespace(w.metadata?.namespace ?? '')
        .filter((u) => !TERMINAL_PHASES.includes(phaseOf(u)))
        .filter(
          (u) =>
            watchedImages.has(watchedImageKeyOf(u)) ||
            (u.status?.workloads ?? []).some((r) => r.kind === w.kind && r.name === w.metadata?.name),
        )
        .map((u) => keyOf(u));
    };

    const unsubscribe = [
      caches.watchedImages.addEventHandler(enqueueTo(wiQueue)),
      // A WatchedImage's policy or suspension decides what its updates do next.
      caches.watchedImages.addEventHandler(
        enqueueTo(iuQueue, (wi) => caches.updates.byIndex(BY_WATCHED_IMAGE, keyOf(wi)).map((u) => keyOf(u))),
      ),
      caches.updates.addEventHandler(enqueueTo(iuQueue)),
      // A new or finished update changes its WatchedImage's latestUpdate, history and its siblings.
      caches.updates.addEventHandler(enqueueTo(wiQueue, (u) => [watchedImageKeyOf(u)])),
      caches.updates.addEventHandler(
        enqueueTo(iuQueue, (u) =>
          caches.updates.byIndex(BY_WATCHED_IMAGE, watchedImageKeyOf(u)).map((s) => keyOf(s)),
        ),
      ),
      ...(Object.keys(caches.workloads) as Workload['kind'][]).flatMap((kind) => [
        // Objects of a list carry no kind: the informer's is theirs.
        // Status changes of a rollout (four or so per workload) change nothing a WatchedImage reads.
        caches.workloads[kind].addEventHandler(
          onlyWhen(
            matchingInputsChanged,
            enqueueTo(wiQueue, (w) => watchedImagesMatching({ ...w, kind })),
          ),
        ),
        caches.workloads[kind].addEventHandler(
          enqueueTo(iuQueue, (w) => unfinishedUpdatesConcerning({ ...w, kind })),
        ),
      ]),
    ];
    for (const key of caches.watchedImages.keys()) wiQueue.add(key);
    for (const key of caches.updates.keys()) iuQueue.add(key);

    const deps = { caches, writer: this.#writer, logger, metrics: this.metrics };
    const wiReconciler = new WatchedImageReconciler(deps);
    const iuReconciler = new ImageUpdateReconciler({
      ...deps,
      rolloutTimeoutMs: this.#opts.rolloutTimeoutMs ?? 600_000,
    });
    const workers: Promise<void>[] = [];
    const n = Math.max(1, this.#opts.concurrency ?? 2);
    for (let i = 0; i < n; i++) {
      workers.push(
        runWorker(wiQueue, wiReconciler.reconcile, {
          logger,
          onOutcome: reconcileMetricsRecorder(this.metrics, 'watchedimage'),
        }),
      );
      workers.push(
        runWorker(iuQueue, iuReconciler.reconcile, {
          logger,
          onOutcome: reconcileMetricsRecorder(this.metrics, 'imageupdate'),
        }),
      );
    }
    this.#leading = { queues: [wiQueue, iuQueue], unsubscribe, workers };
    logger.info('leading: caches synced, workers started', { workersPerQueue: n });
  }

  async #stopLeading(): Promise<void> {
    this.metrics.leader.set(0);
    const leading = this.#leading;
    this.#leading = undefined;
    if (!leading) return;
    for (const u of leading.unsubscribe) u();
    await Promise.all(leading.queues.map((q) => q.shutDownWithDrain()));
    await Promise.all(leading.workers);
    this.#opts.logger.info('stopped leading: workers drained');
  }
}

/** `handler` for adds and deletes, and for updates only when `changed(old, new)`. */
function onlyWhen<T>(changed: (a: T, b: T) => boolean, handler: EventHandler<T>): EventHandler<T> {
  return {
    add: (obj) => handler.add?.(obj),
    delete: (obj) => handler.delete?.(obj),
    update: (a, b) => {
      if (changed(a, b)) handler.update?.(a, b);
    },
  };
}

/**
 * Whether an update changed what matching a workload to WatchedImages reads (matchWorkloads): its
 * labels and the names and images of its containers and init containers. Without this, every status
 * change of the 500 Deployments of a rollout re-planned their WatchedImage against all 500: half the
 * controller's CPU, and patches waiting behind it on the one thread.
 */
function matchingInputsChanged(a: Workload, b: Workload): boolean {
  const inputs = (w: Workload) => {
    const pod = w.spec?.template?.spec;
    const images = (list: { name: string; image?: string }[] | undefined) =>
      (list ?? []).map((c) => [c.name, c.image]);
    return [w.metadata?.labels ?? {}, images(pod?.containers), images(pod?.initContainers)];
  };
  return !isDeepStrictEqual(inputs(a), inputs(b));
}

function keyOf(obj: { metadata: { name: string; namespace?: string } }): string {
  return `${obj.metadata.namespace}/${obj.metadata.name}`;
}
