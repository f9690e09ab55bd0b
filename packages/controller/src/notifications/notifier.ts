/**
 * The notifier: sends each ImageUpdate's events to the configured endpoints, beside the reconcilers
 * and never in their way (its own bounded queue and workers; informer handlers only enqueue keys;
 * every request has a timeout). What was delivered is recorded on the ImageUpdate's
 * status.notifications, so a restart sends only what is still owed. Delivery is at least once: a
 * crash between a send and its record sends that one again.
 */
import { readFileSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import { applyStatus, FIELD_MANAGER, IMAGE_UPDATE, type ImageUpdate, type Logger } from '@kubewatcher/shared';
import {
  type Clock,
  done,
  enqueueTo,
  ItemExponentialBackoff,
  type Outcome,
  retry,
  runWorker,
  systemClock,
  WorkQueue,
} from '../machinery/index.ts';
import type { Cache } from '../reconcilers.ts';
import { type Endpoint, factsOf, messageBody, parseEndpoints, pendingDeliveries } from './plan.ts';

/** Outcome of one POST, with nothing of the URL in it. */
export type DeliveryResult =
  | { ok: true }
  /** Worth trying again: network error, timeout, 408, 429, 5xx. */
  | { ok: false; retry: true; reason: string }
  /** The endpoint refuses this for good (4xx): logged, not retried, not recorded. */
  | { ok: false; retry: false; reason: string };

export const DELIVERY_TIMEOUT_MS = 10_000;

/** POSTs one message. The URL and headers are secrets: only the endpoint's name may reach a log. */
export async function deliver(
  endpoint: Endpoint,
  body: unknown,
  timeoutMs = DELIVERY_TIMEOUT_MS,
): Promise<DeliveryResult> {
  let res: Response;
  try {
    res = await fetch(endpoint.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'user-agent': 'kubewatcher',
        ...(endpoint.headers ?? {}),
      },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      redirect: 'error',
    });
  } catch (err) {
    // fetch's errors can carry the URL in their message: keep only the cause's code.
    const e = err as { name?: string; cause?: { code?: string } };
    const reason = e.name === 'TimeoutError' ? 'timed out' : (e.cause?.code ?? 'network error');
    return { ok: false, retry: true, reason };
  }
  // Drain the body so the connection is reused; what it says may echo the request.
  await res.arrayBuffer().catch(() => undefined);
  if (res.ok) return { ok: true };
  const reason = `HTTP ${res.status}`;
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  return { ok: false, retry: retryable, reason };
}

type NotificationRecords = NonNullable<NonNullable<ImageUpdate['status']>['notifications']>;

export interface NotifierOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** The endpoints file (YAML: `endpoints: [...]`), mounted from a Secret. */
  endpointsFile: string;
  updates: Cache<ImageUpdate>;
  clock?: Clock;
  /** Keys waiting at most; more are dropped and found again by the sweep. */
  maxQueue?: number;
  /** How often every update is looked at again (catches dropped keys and missed events). */
  sweepIntervalMs?: number;
  /** First and last retry delay of an endpoint that fails. */
  retryBaseMs?: number;
  retryMaxMs?: number;
  workers?: number;
  onDelivery?: (endpoint: string, result: 'sent' | 'failed' | 'refused') => void;
  onDropped?: () => void;
}

export class Notifier {
  readonly #opts: NotifierOptions;
  readonly #clock: Clock;
  #endpoints: readonly Endpoint[];
  /**
   * Records written but maybe not yet in the cache (the watch event comes a moment later): a sweep in
   * between must not send them again. Dropped once the cache has them.
   */
  readonly #recorded = new Map<string, NotificationRecords>();
  #running:
    | { queue: WorkQueue; unsubscribe: () => void; workers: Promise<void>[]; sweep: NodeJS.Timeout }
    | undefined;

  constructor(opts: NotifierOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    try {
      this.#endpoints = parseEndpoints(readFileSync(opts.endpointsFile, 'utf8'));
    } catch (err) {
      throw new Error(`notifications file ${opts.endpointsFile}: ${(err as Error).message}`);
    }
    opts.logger.info('notification endpoints loaded', {
      endpoints: this.#endpoints.map((e) => `${e.name} (${e.type}: ${e.events.join(', ')})`),
    });
  }

  /** Starts sending (on the leader, once the caches have synced). */
  start(): void {
    if (this.#running) return;
    const { updates, logger } = this.#opts;
    const queue = new WorkQueue({
      clock: this.#clock,
      rateLimiter: new ItemExponentialBackoff(
        this.#opts.retryBaseMs ?? 1000,
        this.#opts.retryMaxMs ?? 300_000,
      ),
    });
    const max = this.#opts.maxQueue ?? 1000;
    // enqueueTo only needs add(): a queue that refuses keys beyond `max` (the sweep finds them again).
    const bounded = {
      add: (key: string) => {
        if (queue.len() + queue.delayedLen() >= max) {
          this.#opts.onDropped?.();
          return;
        }
        queue.add(key);
      },
    };
    const unsubscribe = updates.addEventHandler(enqueueTo(bounded));
    const sweepAll = () => {
      for (const key of updates.keys()) bounded.add(key);
    };
    sweepAll();
    const sweep = setInterval(sweepAll, this.#opts.sweepIntervalMs ?? 60_000);
    sweep.unref();
    const workers = Array.from({ length: this.#opts.workers ?? 2 }, () =>
      runWorker(queue, (key) => this.#notify(key), { logger }),
    );
    this.#running = { queue, unsubscribe, workers, sweep };
  }

  async stop(): Promise<void> {
    const running = this.#running;
    this.#running = undefined;
    if (!running) return;
    clearInterval(running.sweep);
    running.unsubscribe();
    running.queue.shutDown();
    await Promise.all(running.workers);
  }

  async #notify(key: string): Promise<Outcome> {
    const { logger } = this.#opts;
    const cached = this.#opts.updates.get(key);
    if (!cached) {
      this.#recorded.delete(key);
      return done();
    }
    const update = this.#withRecorded(key, cached);
    const now = new Date(this.#clock.now());
    const pending = pendingDeliveries(update, this.#endpoints, now);
    if (!pending) return done();
    const facts = factsOf(update, pending.event);
    const results = await Promise.all(
      pending.endpoints.map(async (endpoint) => ({
        endpoint,
        result: await deliver(endpoint, messageBody(endpoint.type, facts)),
      })),
    );
    const sent = results.filter((r) => r.result.ok).map((r) => r.endpoint.name);
    for (const { endpoint, result } of results) {
      if (result.ok) {
        this.#opts.onDelivery?.(endpoint.name, 'sent');
        logger.info('notification sent', { endpoint: endpoint.name, event: pending.event, imageUpdate: key });
      } else {
        this.#opts.onDelivery?.(endpoint.name, result.retry ? 'failed' : 'refused');
        (result.retry ? logger.warn : logger.error).call(logger, 'notification not delivered', {
          endpoint: endpoint.name,
          event: pending.event,
          imageUpdate: key,
          reason: result.reason,
          willRetry: result.retry,
        });
      }
    }
    if (sent.length > 0) {
      const time = now.toISOString().replace(/\.\d+Z$/, 'Z');
      const records = [
        ...(update.status?.notifications ?? []),
        ...sent.map((endpoint) => ({ endpoint, event: pending.event, time })),
      ];
      await this.#record(update, records);
      this.#recorded.set(key, records);
    }
    const failed = results.find((r) => !r.result.ok && r.result.retry);
    return failed
      ? retry(new Error(`endpoint ${failed.endpoint.name}: ${failed.result.ok ? '' : failed.result.reason}`))
      : done();
  }

  #withRecorded(key: string, update: ImageUpdate): ImageUpdate {
    const mine = this.#recorded.get(key);
    if (!mine) return update;
    const inCache = new Set((update.status?.notifications ?? []).map((n) => `${n.endpoint}/${n.event}`));
    const missing = mine.filter((n) => !inCache.has(`${n.endpoint}/${n.event}`));
    if (missing.length === 0) {
      this.#recorded.delete(key);
      return update;
    }
    return {
      ...update,
      status: { ...update.status, notifications: [...(update.status?.notifications ?? []), ...missing] },
    };
  }

  /** status.notifications with the notifier's own field manager: nothing else of the status is touched. */
  async #record(update: ImageUpdate, notifications: NotificationRecords): Promise<void> {
    await applyStatus(this.#opts.kubeConfig, {
      resource: IMAGE_UPDATE,
      namespace: update.metadata.namespace!,
      name: update.metadata.name!,
      fieldManager: FIELD_MANAGER.notifier,
      status: { notifications },
    });
  }
}
