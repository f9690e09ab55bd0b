/**
 * The webhook receiver as the controller runs it: the HTTP server, the receivers file (mounted from
 * a Secret, re-read when the kubelet updates it), the WatchedImages a push makes due, and the poller
 * run it starts.
 */
import { readFileSync, statSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import {
  errorFields,
  FIELD_MANAGER,
  type Logger,
  settleWithLimit,
  type WatchedImage,
} from '@kubewatcher/shared';
import { CheckRequester, watchedImagesToCheck } from './check-request.ts';
import { batchPollerRunApi, type PollerRunAttempt, PollerRunStarter } from './poller-run.ts';
import { parseReceivers, type Receiver } from './receivers.ts';
import { startWebhookServer, type WebhookServer } from './server.ts';

const MARK_CONCURRENCY = 8;

export interface WebhookReceiverOptions {
  kubeConfig: KubeConfig;
  logger: Logger;
  /** `host:port` the receiver listens on. */
  address: string;
  /** Path of the receivers file (YAML: `receivers: [...]`). */
  receiversFile: string;
  /** Kubewatcher's namespace and the poller CronJob in it. */
  namespace: string;
  cronJobName: string;
  /** The controller's WatchedImage cache, and whether it has synced. */
  watchedImages: () => readonly WatchedImage[];
  watchedImagesSynced?: () => boolean;
  onResult?: (receiver: string, code: number) => void;
  onPollerRun?: (result: PollerRunAttempt) => void;
  debounceMs?: number;
}

/**
 * The receivers file, re-read when its modification time changes (a Secret volume is updated in
 * place by the kubelet). A file that no longer parses keeps the previous receivers and is logged.
 */
export class ReceiversFile {
  readonly #path: string;
  readonly #logger: Logger;
  #mtimeMs = -1;
  #receivers: readonly Receiver[] = [];

  constructor(path: string, logger: Logger) {
    this.#path = path;
    this.#logger = logger;
    // At start an unusable file is fatal: the admin sees it at once.
    this.#load(true);
  }

  current(): readonly Receiver[] {
    this.#load(false);
    return this.#receivers;
  }

  #load(fatal: boolean): void {
    try {
      const mtime = statSync(this.#path).mtimeMs;
      if (mtime === this.#mtimeMs) return;
      this.#receivers = parseReceivers(readFileSync(this.#path, 'utf8'));
      this.#mtimeMs = mtime;
      this.#logger.info('webhook receivers loaded', {
        file: this.#path,
        receivers: this.#receivers.map((r) => `${r.name} (${r.format})`),
      });
    } catch (err) {
      const message = `webhook receivers file ${this.#path}: ${(err as Error).message}`;
      if (fatal) throw new Error(message);
      this.#logger.error('webhook receivers file unusable: keeping the previous receivers', {
        file: this.#path,
        error: (err as Error).message,
      });
      // Do not re-read a broken file on every request; the next edit changes its mtime.
      try {
        this.#mtimeMs = statSync(this.#path).mtimeMs;
      } catch {}
    }
  }
}

export class WebhookReceiver {
  readonly starter: PollerRunStarter;
  readonly #opts: WebhookReceiverOptions;
  readonly #file: ReceiversFile;
  readonly #checks: CheckRequester;
  #server: WebhookServer | undefined;

  constructor(opts: WebhookReceiverOptions) {
    this.#opts = opts;
    this.#file = new ReceiversFile(opts.receiversFile, opts.logger);
    this.#checks = new CheckRequester(opts.kubeConfig, FIELD_MANAGER.webhook);
    this.starter = new PollerRunStarter({
      api: batchPollerRunApi(opts.kubeConfig),
      namespace: opts.namespace,
      cronJobName: opts.cronJobName,
      logger: opts.logger,
      ...(opts.debounceMs !== undefined ? { debounceMs: opts.debounceMs } : {}),
      ...(opts.onPollerRun ? { onAttempt: opts.onPollerRun } : {}),
    });
  }

  get url(): string | undefined {
    return this.#server?.url;
  }

  async start(): Promise<void> {
    this.#server = await startWebhookServer({
      address: this.#opts.address,
      receivers: () => this.#file.current(),
      onPushes: (_receiver, pushes) => this.#makeDue(pushes),
      ...(this.#opts.watchedImagesSynced ? { ready: this.#opts.watchedImagesSynced } : {}),
      logger: this.#opts.logger,
      ...(this.#opts.onResult ? { onResult: this.#opts.onResult } : {}),
    });
  }

  async stop(): Promise<void> {
    await this.#server?.close(5000);
    await this.starter.stop();
  }

  /** Marks the pushed images' WatchedImages due, then asks for one poller run. */
  async #makeDue(pushes: Parameters<typeof watchedImagesToCheck>[0]): Promise<number> {
    const due = watchedImagesToCheck(pushes, this.#opts.watchedImages());
    if (due.length === 0) return 0;
    const now = new Date();
    // Marked before the Job is created, so the run is sure to see them due; a few writes at a time,
    // so a tag watched in many namespaces does not flood the API server.
    const outcomes = await settleWithLimit(due, MARK_CONCURRENCY, (wi) =>
      this.#checks.requestCheck(wi.metadata.namespace!, wi.metadata.name!, now),
    );
    let marked = 0;
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'fulfilled') marked++;
      else
        this.#opts.logger.warn('cannot mark WatchedImage due', {
          watchedImage: `${due[i]!.metadata.namespace}/${due[i]!.metadata.name}`,
          ...errorFields(outcome.reason),
        });
    });
    if (marked > 0) this.starter.request();
    return marked;
  }
}
