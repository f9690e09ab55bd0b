/**
 * Starting a poller run now, as `kubectl create job --from=cronjob/kubewatcher-poller` would: a Job
 * made from the CronJob's jobTemplate. Debounced (a burst of pushes gives one Job) and never beside
 * another run: the Job has one fixed name, so while it exists a second cannot be created, and none is
 * created while the CronJob's own run is active. The controller needs only `get` on the CronJob and
 * `create` on Jobs in its own namespace for this.
 */
import type { KubeConfig, V1CronJob, V1Job } from '@kubernetes/client-node';
import {
  apiStatusCode,
  createObject,
  errorFields,
  type Logger,
  RESOURCE,
  readObject,
} from '@kubewatcher/shared';
import { type Clock, systemClock, type TimerHandle } from '../machinery/index.ts';

/** Finished webhook Jobs are deleted this long after they end, so the fixed name frees up soon. */
export const POLLER_RUN_TTL_SECONDS = 10;
/** Marks a Job as started by Kubewatcher rather than by the CronJob's schedule. */
export const STARTED_BY_ANNOTATION = 'kubewatcher.io/started-by';

/** The Job a run is made of (pure): the CronJob's jobTemplate under `name`, cleaned up after it ends. */
export function jobFromCronJob(cronJob: V1CronJob, name: string, startedBy: string): V1Job {
  const template = cronJob.spec?.jobTemplate;
  if (!template?.spec) throw new Error(`CronJob ${cronJob.metadata?.name} has no spec.jobTemplate.spec`);
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: cronJob.metadata?.namespace,
      labels: { ...(template.metadata?.labels ?? {}) },
      annotations: {
        ...(template.metadata?.annotations ?? {}),
        // What kubectl create job --from=cronjob sets, so tooling tells it from a scheduled run.
        'cronjob.kubernetes.io/instantiate': 'manual',
        [STARTED_BY_ANNOTATION]: startedBy,
      },
      // No ownerReference to the CronJob: its controller warns (UnexpectedJob) about Jobs it did not
      // create, and the TTL cleans this one up anyway.
    },
    spec: { ...template.spec, ttlSecondsAfterFinished: POLLER_RUN_TTL_SECONDS },
  };
}

/** The two API calls a run needs, injectable for tests. */
export interface PollerRunApi {
  readCronJob(namespace: string, name: string): Promise<V1CronJob>;
  createJob(namespace: string, job: V1Job): Promise<void>;
}

/** The real PollerRunApi: plain JSON requests (the CronJob's jobTemplate is passed on as the server sent it). */
export function batchPollerRunApi(kc: KubeConfig): PollerRunApi {
  return {
    readCronJob: (namespace, name) => readObject<V1CronJob>(kc, RESOURCE.cronJob, namespace, name),
    createJob: async (namespace, body) => {
      await createObject(kc, RESOURCE.job, namespace, body);
    },
  };
}

export interface PollerRunStarterOptions {
  api: PollerRunApi;
  namespace: string;
  cronJobName: string;
  logger: Logger;
  clock?: Clock;
  /**
   * Requests within this window after the first give one Job. 500 ms: a registry announces one push
   * as a burst of events (an index and its platform manifests) within milliseconds, and every
   * millisecond here is added to push → rollout.
   */
  debounceMs?: number;
  /** How soon to try again while a run is active or the API failed. */
  retryMs?: number;
  /** Give up after this long: the WatchedImages stay due and the CronJob's next run checks them. */
  maxWaitMs?: number;
  /** Called after each attempt, for metrics and tests. */
  onAttempt?: (result: PollerRunAttempt) => void;
}

export type PollerRunAttempt = 'created' | 'busy' | 'failed' | 'gave-up';

/**
 * Turns "a check is due" into at most one poller Job at a time. `request()` may be called any number
 * of times; every request is covered by a Job created after it (a request made while a run is going
 * waits for that run to end, since the run may have listed WatchedImages before the request).
 */
export class PollerRunStarter {
  readonly #opts: Required<Omit<PollerRunStarterOptions, 'onAttempt'>> &
    Pick<PollerRunStarterOptions, 'onAttempt'>;
  #pendingSince: number | undefined;
  #timer: TimerHandle | undefined;
  #inFlight: Promise<void> | undefined;
  #stopped = false;

  constructor(opts: PollerRunStarterOptions) {
    this.#opts = { clock: systemClock, debounceMs: 500, retryMs: 3000, maxWaitMs: 120_000, ...opts };
  }

  get jobName(): string {
    return `${this.#opts.cronJobName}-webhook`;
  }

  /** Asks for a run; returns at once. */
  request(): void {
    if (this.#stopped) return;
    this.#pendingSince ??= this.#opts.clock.now();
    this.#schedule(this.#opts.debounceMs);
  }

  /** Cancels a waiting attempt and waits for one in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) this.#opts.clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight;
  }

  #schedule(ms: number): void {
    if (this.#timer || this.#inFlight || this.#stopped) return;
    this.#timer = this.#opts.clock.setTimeout(() => {
      this.#timer = undefined;
      this.#inFlight = this.#attempt().finally(() => {
        this.#inFlight = undefined;
        // Requests that came while this attempt ran need a Job of their own.
        if (this.#pendingSince !== undefined) this.#schedule(this.#opts.retryMs);
      });
    }, ms);
  }

  async #attempt(): Promise<void> {
    const { api, namespace, cronJobName, logger, clock } = this.#opts;
    const since = this.#pendingSince;
    if (since === undefined) return;
    // Cleared before the Job is created: requests from here on are for the next Job.
    this.#pendingSince = undefined;
    const report = (result: PollerRunAttempt) => this.#opts.onAttempt?.(result);
    const again = () => {
      if (clock.now() - since >= this.#opts.maxWaitMs) {
        logger.warn('poller run not started in time: the next scheduled run checks the due images', {
          cronJob: cronJobName,
        });
        report('gave-up');
        return;
      }
      this.#pendingSince = Math.min(since, this.#pendingSince ?? since);
    };
    try {
      const cronJob = await api.readCronJob(namespace, cronJobName);
      if ((cronJob.status?.active ?? []).length > 0) {
        logger.debug('poller run active: starting one after it', { cronJob: cronJobName });
        report('busy');
        again();
        return;
      }
      await api.createJob(namespace, jobFromCronJob(cronJob, this.jobName, 'webhook'));
      logger.info('poller run started', { job: this.jobName, waitedMs: clock.now() - since });
      report('created');
    } catch (err) {
      if (apiStatusCode(err) === 409) {
        logger.debug('poller run of a webhook still exists: starting one after it', { job: this.jobName });
        report('busy');
      } else {
        logger.warn('cannot start a poller run', { cronJob: cronJobName, ...errorFields(err) });
        report('failed');
      }
      again();
    }
  }
}
