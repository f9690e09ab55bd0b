/**
 * The controller's generic machinery, under the reconcilers (kubernetes/sample-controller's shape):
 *
 *   Informer ──handlers only enqueue keys──▶ WorkQueue ──runWorker──▶ reconcile(key) → Outcome
 *
 * - `Informer`: list+watch cache of one resource, restarting on errors, relisting on a timer,
 *   reporting stalls; frozen objects; indexes. `enqueueTo(queue, keysOf)` is the usual handler.
 * - `WorkQueue`: deduplicated keys, never one key on two workers, per-key exponential backoff and an
 *   overall token bucket.
 * - `runWorker` + `done()` / `requeueAfter()` / `stalled()` / `retry()`: typed outcomes mapped to the
 *   queue; nothing a reconcile throws ends the process.
 * - `LeaderElector`: Lease-based leader election; start informers' workers in `onStartedLeading`.
 * - `startProbeServer` + `createControllerMetrics`: `/metrics`, `/healthz`, `/readyz`.
 * - `Clock` / `ManualClock`: every timer goes through an injected clock, so tests never sleep.
 *
 * Wiring, in short:
 *
 * ```ts
 * const metrics = createControllerMetrics(registry);
 * const queue = new WorkQueue({ hooks: workQueueHooks(metrics, 'watchedimage') });
 * const informer = new Informer<WatchedImage>({ kubeConfig, resource, logger, onRestart: (reason) =>
 *   metrics.informerRestarts.inc({ informer: 'watchedimages', reason }) });
 * informer.addEventHandler(enqueueTo(queue));
 * informer.start();
 * const elector = new LeaderElector({ kubeConfig, namespace, name: 'kubewatcher-controller',
 *   onStartedLeading: async (signal) => {
 *     metrics.leader.set(1);
 *     if (!(await informer.waitForSync(signal))) return;
 *     for (let i = 0; i < 4; i++) void runWorker(queue, reconcile, { logger,
 *       onOutcome: reconcileMetricsRecorder(metrics, 'watchedimage') });
 *   },
 *   onStoppedLeading: async () => { metrics.leader.set(0); await queue.shutDownWithDrain(); } });
 * const server = await startProbeServer({ address: ':8080', registry,
 *   liveness: [informersNotStalled([informer])], readiness: [cachesSyncedOrStandby([informer], elector)] });
 * if ((await elector.run()) === 'lost') process.exit(1);
 * ```
 */
export { type Clock, ManualClock, sleep, systemClock, type TimerHandle } from './clock.ts';
export {
  type EventHandler,
  enqueueTo,
  Informer,
  type InformerOptions,
  type InformerStatus,
  kubeConfigSource,
  type ListQuery,
  type ListWatchSource,
  type ResourceType,
  type RestartReason,
  resourcePath,
  transformedSource,
  withoutManagedFields,
} from './informer.ts';
export {
  coordinationLeaseClient,
  defaultIdentity,
  type LeaderElectionEnd,
  type LeaderElectionOptions,
  LeaderElector,
  type LeaseClient,
} from './leader-election.ts';
export {
  type ControllerMetrics,
  createControllerMetrics,
  reconcileMetricsRecorder,
  workQueueHooks,
} from './metrics.ts';
export {
  applyOutcome,
  done,
  isConflict,
  type Outcome,
  type OutcomeReport,
  type Reconcile,
  type ReconcileResult,
  type RunWorkerOptions,
  requeueAfter,
  retry,
  runWorker,
  stalled,
} from './outcome.ts';
export {
  cachesSyncedOrStandby,
  type HealthCheck,
  type InformerHealth,
  informersNotStalled,
  type ListeningServer,
  listen,
  type ProbeServer,
  type ProbeServerOptions,
  parseAddress,
  startProbeServer,
} from './server.ts';
export {
  defaultControllerRateLimiter,
  ItemExponentialBackoff,
  MaxOfRateLimiter,
  type RateLimiter,
  type RateLimiterOptions,
  TokenBucket,
  WorkQueue,
  type WorkQueueHooks,
  type WorkQueueOptions,
} from './workqueue.ts';
