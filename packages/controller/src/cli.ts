import {
  createLogger,
  LOG_LEVELS,
  type LogFormat,
  type LogLevel,
  loadKubeConfig,
  parseDuration,
} from '@kubewatcher/shared';
import { Registry } from 'prom-client';
import yargs from 'yargs';
import { Controller } from './controller.ts';

/** Exit codes: 0 stopped on a signal, 1 could not start or lost leadership (the pod restarts as a standby), 2 bad flags. */
export async function main(argv: string[]): Promise<number> {
  const args = await yargs(argv)
    .scriptName('kubewatcher-controller')
    .usage(
      '$0 [options]\n\nReconciles WatchedImages and ImageUpdates: rolls the matching Deployments, StatefulSets and DaemonSets onto each approved digest and follows the rollout.',
    )
    .option('kubeconfig', {
      type: 'string',
      describe: 'kubeconfig file; default $KUBECONFIG, ~/.kube/config, then the in-cluster service account',
    })
    .option('namespace', {
      alias: 'n',
      type: 'string',
      array: true,
      describe: 'namespace to watch (repeatable); default all namespaces',
    })
    .option('leader-elect', {
      type: 'boolean',
      default: false,
      describe: 'take a coordination.k8s.io Lease before acting, so only one replica acts',
    })
    .option('leader-election-namespace', {
      type: 'string',
      default: process.env.POD_NAMESPACE ?? 'kubewatcher-system',
      describe: 'namespace of the leader Lease (default $POD_NAMESPACE)',
    })
    .option('leader-election-id', {
      type: 'string',
      default: 'kubewatcher-controller',
      describe: 'name of the leader Lease',
    })
    .option('lease-duration', {
      type: 'string',
      default: '15s',
      describe: 'how long a standby waits after the last renewal before taking over',
    })
    .option('metrics-addr', {
      type: 'string',
      default: ':8080',
      describe: 'address of /metrics, /healthz and /readyz (host:port, :port; :0 picks a free port)',
    })
    .option('concurrency', {
      type: 'number',
      default: 2,
      describe: 'workers per queue (WatchedImages, ImageUpdates)',
    })
    .option('rollout-timeout', {
      type: 'string',
      default: '10m',
      describe:
        'an update whose rollout has not finished this long after it was applied fails (Deployments also fail on their progressDeadlineSeconds)',
    })
    .option('log-level', {
      choices: LOG_LEVELS,
      default: 'info' as LogLevel,
      describe: 'least severe level logged',
    })
    .option('log-format', {
      choices: ['json', 'text'] as const,
      describe: 'log format; default text on a terminal, JSON otherwise',
    })
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .parseAsync()
    .catch((err: Error) => {
      process.stderr.write(`kubewatcher-controller: ${err.message}\n`);
      return undefined;
    });
  if (!args) return 2;
  if (args.help) return 0;

  const logger = createLogger({
    component: 'controller',
    level: args['log-level'] as LogLevel,
    ...(args['log-format'] ? { format: args['log-format'] as LogFormat } : {}),
  });
  const rolloutTimeoutMs = parseDuration(args['rollout-timeout']);
  const leaseMs = parseDuration(args['lease-duration']);
  if (rolloutTimeoutMs === undefined || leaseMs === undefined || leaseMs < 3000) {
    logger.error(
      '--rollout-timeout and --lease-duration take Go durations (10m, 15s); the lease at least 3s',
    );
    return 2;
  }

  let controller: Controller;
  try {
    const leaseSeconds = Math.round(leaseMs / 1000);
    controller = new Controller({
      kubeConfig: loadKubeConfig(args.kubeconfig),
      logger,
      registry: new Registry(),
      ...(args.namespace ? { namespaces: args.namespace } : {}),
      concurrency: args.concurrency,
      metricsAddress: args['metrics-addr'],
      rolloutTimeoutMs,
      ...(args['leader-elect']
        ? {
            leaderElection: {
              namespace: args['leader-election-namespace'],
              name: args['leader-election-id'],
              leaseDurationSeconds: leaseSeconds,
              // client-go's proportions: renew deadline 2/3 of the lease, retry period 2/15.
              renewDeadlineMs: Math.round((leaseSeconds * 1000 * 2) / 3),
              retryPeriodMs: Math.max(500, Math.round((leaseSeconds * 1000 * 2) / 15)),
            },
          }
        : {}),
    });
  } catch (err) {
    logger.error('cannot start', { error: (err as Error).message });
    return 1;
  }

  let signalled = false;
  const onSignal = (signal: string) => {
    if (signalled) return;
    signalled = true;
    logger.info('shutting down', { signal });
    void controller.stop();
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  try {
    const end = await controller.run();
    if (end === 'lost') {
      logger.error('lost leadership: exiting so the pod restarts as a standby');
      await controller.stop();
      return 1;
    }
    return 0;
  } catch (err) {
    logger.error('controller failed', { error: (err as Error).message });
    return 1;
  }
}
