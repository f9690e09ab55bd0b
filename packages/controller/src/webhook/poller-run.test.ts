import type { V1CronJob } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { jobFromCronJob, POLLER_RUN_TTL_SECONDS, STARTED_BY_ANNOTATION } from './poller-run.ts';

const cronJob: V1CronJob = {
  metadata: { name: 'kubewatcher-poller', namespace: 'kubewatcher-system', labels: { cron: 'only' } },
  spec: {
    schedule: '* * * * *',
    concurrencyPolicy: 'Forbid',
    jobTemplate: {
      metadata: { labels: { 'app.kubernetes.io/component': 'poller' }, annotations: { team: 'platform' } },
      spec: {
        backoffLimit: 0,
        activeDeadlineSeconds: 300,
        ttlSecondsAfterFinished: 86_400,
        template: {
          spec: {
            restartPolicy: 'Never',
            serviceAccountName: 'kubewatcher-poller',
            containers: [
              { name: 'poller', image: 'ghcr.io/kubewatcher/kubewatcher:0.1.0', args: ['--log-format=json'] },
            ],
          },
        },
      },
    },
  },
};

describe('jobFromCronJob', () => {
  it("is the CronJob's jobTemplate under the fixed name, removed soon after it ends", () => {
    const job = jobFromCronJob(cronJob, 'kubewatcher-poller-webhook', 'webhook');
    expect(job.metadata).toEqual({
      name: 'kubewatcher-poller-webhook',
      namespace: 'kubewatcher-system',
      labels: { 'app.kubernetes.io/component': 'poller' },
      annotations: {
        team: 'platform',
        'cronjob.kubernetes.io/instantiate': 'manual',
        [STARTED_BY_ANNOTATION]: 'webhook',
      },
    });
    expect(job.spec).toEqual({
      ...cronJob.spec!.jobTemplate.spec,
      ttlSecondsAfterFinished: POLLER_RUN_TTL_SECONDS,
    });
  });

  it('refuses a CronJob without a job template', () => {
    expect(() => jobFromCronJob({ metadata: { name: 'x' } } as V1CronJob, 'x-webhook', 'webhook')).toThrow(
      'CronJob x has no spec.jobTemplate.spec',
    );
  });
});
