import { Counter, exponentialBuckets, Gauge, Histogram, type Registry } from 'prom-client';
import type { OutcomeReport } from './outcome.ts';
import type { WorkQueueHooks } from './workqueue.ts';

/**
 * The controller's Prometheus metrics, all prefixed `kubewatcher_`, registered on the registry given
 * (one object per registry, so tests use their own and never collide on the global one).
 */
export interface ControllerMetrics {
  /** `kubewatcher_reconcile_total{controller,result}`: reconciles by result (success, requeue, stalled, error, conflict). */
  reconcileTotal: Counter<'controller' | 'result'>;
  /** `kubewatcher_reconcile_errors_total{controller}`: reconciles that failed and will be retried. */
  reconcileErrors: Counter<'controller'>;
  /** `kubewatcher_reconcile_duration_seconds{controller}`. */
  reconcileDuration: Histogram<'controller'>;
  /** `kubewatcher_workqueue_depth{name}`: keys waiting for a worker. */
  workqueueDepth: Gauge<'name'>;
  /** `kubewatcher_workqueue_adds_total{name}`. */
  workqueueAdds: Counter<'name'>;
  /** `kubewatcher_workqueue_retries_total{name}`: rate-limited requeues. */
  workqueueRetries: Counter<'name'>;
  /** `kubewatcher_workqueue_queue_duration_seconds{name}`: time a key waits before a worker takes it. */
  workqueueQueueDuration: Histogram<'name'>;
  /** `kubewatcher_workqueue_work_duration_seconds{name}`: time from `get` to `done`. */
  workqueueWorkDuration: Histogram<'name'>;
  /** `kubewatcher_updates_applied_total{kind}`: workload patches applied, by workload kind. */
  updatesApplied: Counter<'kind'>;
  /** `kubewatcher_updates_failed_total{kind}`: workload patches or rollouts that failed, by workload kind. */
  updatesFailed: Counter<'kind'>;
  /** `kubewatcher_rollout_duration_seconds{kind,result}`: from patch to Succeeded or Failed. */
  rolloutDuration: Histogram<'kind' | 'result'>;
  /** `kubewatcher_leader`: 1 while this replica holds the leader Lease, else 0. */
  leader: Gauge;
  /** `kubewatcher_informer_restarts_total{informer,reason}`: informer restarts (error, stall, relist). */
  informerRestarts: Counter<'informer' | 'reason'>;
  /** `kubewatcher_generated_watchedimage_writes_total{action}`: auto-watch's writes (create, change, delete, release). */
  generatedWrites: Counter<'action'>;
  /** `kubewatcher_webhook_requests_total{receiver,code}`: webhook requests by the status answered. */
  webhookRequests: Counter<'receiver' | 'code'>;
  /** `kubewatcher_webhook_poller_runs_total{result}`: attempts to start a poller run for a webhook. */
  webhookPollerRuns: Counter<'result'>;
  /** `kubewatcher_notifications_total{endpoint,result}`: notification attempts. */
  notifications: Counter<'endpoint' | 'result'>;
  /** `kubewatcher_notifications_dropped_total`: keys the full notification queue refused. */
  notificationsDropped: Counter;
}

/** Creates the controller's metrics on `registry`. Call once per registry. */
export function createControllerMetrics(registry: Registry): ControllerMetrics {
  const registers = [registry];
  const leader = new Gauge({
    name: 'kubewatcher_leader',
    help: '1 while this replica holds the leader Lease, else 0',
    registers,
  });
  leader.set(0);
  return {
    reconcileTotal: new Counter({
      name: 'kubewatcher_reconcile_total',
      help: 'Reconciles by controller and result (success, requeue, stalled, error, conflict)',
      labelNames: ['controller', 'result'],
      registers,
    }),
    reconcileErrors: new Counter({
      name: 'kubewatcher_reconcile_errors_total',
      help: 'Reconciles that failed and will be retried with backoff',
      labelNames: ['controller'],
      registers,
    }),
    reconcileDuration: new Histogram({
      name: 'kubewatcher_reconcile_duration_seconds',
      help: 'Duration of one reconcile',
      labelNames: ['controller'],
      buckets: exponentialBuckets(0.005, 2, 14),
      registers,
    }),
    workqueueDepth: new Gauge({
      name: 'kubewatcher_workqueue_depth',
      help: 'Keys waiting in the work queue for a worker',
      labelNames: ['name'],
      registers,
    }),
    workqueueAdds: new Counter({
      name: 'kubewatcher_workqueue_adds_total',
      help: 'Keys added to the work queue',
      labelNames: ['name'],
      registers,
    }),
    workqueueRetries: new Counter({
      name: 'kubewatcher_workqueue_retries_total',
      help: 'Rate-limited requeues of keys',
      labelNames: ['name'],
      registers,
    }),
    workqueueQueueDuration: new Histogram({
      name: 'kubewatcher_workqueue_queue_duration_seconds',
      help: 'Time a key waits in the work queue before a worker takes it',
      labelNames: ['name'],
      buckets: exponentialBuckets(0.001, 4, 10),
      registers,
    }),
    workqueueWorkDuration: new Histogram({
      name: 'kubewatcher_workqueue_work_duration_seconds',
      help: 'Time a worker spends on a key',
      labelNames: ['name'],
      buckets: exponentialBuckets(0.001, 4, 10),
      registers,
    }),
    updatesApplied: new Counter({
      name: 'kubewatcher_updates_applied_total',
      help: 'Workload image updates applied, by workload kind',
      labelNames: ['kind'],
      registers,
    }),
    updatesFailed: new Counter({
      name: 'kubewatcher_updates_failed_total',
      help: 'Workload image updates that failed to apply or to roll out, by workload kind',
      labelNames: ['kind'],
      registers,
    }),
    rolloutDuration: new Histogram({
      name: 'kubewatcher_rollout_duration_seconds',
      help: 'Time from patching a workload to its rollout succeeding or failing',
      labelNames: ['kind', 'result'],
      buckets: [5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600],
      registers,
    }),
    leader,
    webhookRequests: new Counter({
      name: 'kubewatcher_webhook_requests_total',
      help: 'Webhook requests by receiver and the HTTP status answered',
      labelNames: ['receiver', 'code'],
      registers,
    }),
    webhookPollerRuns: new Counter({
      name: 'kubewatcher_webhook_poller_runs_total',
      help: 'Attempts to start a poller run for a webhook, by result',
      labelNames: ['result'],
      registers,
    }),
    notifications: new Counter({
      name: 'kubewatcher_notifications_total',
      help: 'Notification attempts by endpoint and result',
      labelNames: ['endpoint', 'result'],
      registers,
    }),
    notificationsDropped: new Counter({
      name: 'kubewatcher_notifications_dropped_total',
      help: 'ImageUpdate keys not queued for notification because the queue was full',
      registers,
    }),
    informerRestarts: new Counter({
      name: 'kubewatcher_informer_restarts_total',
      help: 'Informer restarts by reason (error, stall, relist)',
      labelNames: ['informer', 'reason'],
      registers,
    }),
    generatedWrites: new Counter({
      name: 'kubewatcher_generated_watchedimage_writes_total',
      help: 'Writes of generated WatchedImages by auto-watch, by action (create, change, delete, release: a person edited it, so it is no longer generated)',
      labelNames: ['action'],
      registers,
    }),
  };
}

/** Work queue hooks that feed the `kubewatcher_workqueue_*` metrics of the queue `name`. */
export function workQueueHooks(metrics: ControllerMetrics, name: string): WorkQueueHooks {
  return {
    depth: (depth) => metrics.workqueueDepth.set({ name }, depth),
    added: () => metrics.workqueueAdds.inc({ name }),
    retried: () => metrics.workqueueRetries.inc({ name }),
    queueLatency: (seconds) => metrics.workqueueQueueDuration.observe({ name }, seconds),
    workDuration: (seconds) => metrics.workqueueWorkDuration.observe({ name }, seconds),
  };
}

/** A `runWorker` `onOutcome` callback that feeds the `kubewatcher_reconcile_*` metrics of `controller`. */
export function reconcileMetricsRecorder(
  metrics: ControllerMetrics,
  controller: string,
): (report: OutcomeReport) => void {
  return ({ result, durationSeconds }) => {
    metrics.reconcileTotal.inc({ controller, result });
    if (result === 'error' || result === 'conflict') metrics.reconcileErrors.inc({ controller });
    metrics.reconcileDuration.observe({ controller }, durationSeconds);
  };
}
