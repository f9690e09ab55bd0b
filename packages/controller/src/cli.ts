import {
  AUTO_WATCH_MODES,
  type AutoWatchMode,
  commandLogger,
  DEFAULT_AUTO_WATCH_MODE,
  LOG_OPTIONS,
  loadKubeConfig,
  parseCommandLine,
  parseDuration,
} from '@kubewatcher/shared';
import { Registry } from 'prom-client';
import type { Options } from 'yargs';
import { Controller } from './controller.ts';
import { webhookOptions, webhookSettings } from './webhook/options.ts';

/** What `kubewatcher-controller --help` says above the options. */
export const CONTROLLER_USAGE =
  '$0 [options]\n\nReconciles WatchedImages and ImageUpdates: rolls the matching Deployments, StatefulSets, DaemonSets and CronJobs onto each approved digest and follows the rollout.';

/** The exit codes `main` returns, and what each means (docs/cli.md lists them). */
export const CONTROLLER_EXIT_CODES = {
  0: 'stopped on SIGTERM or SIGINT (workers drained, Lease released), or printed --help',
  1: 'could not start (no cluster configured, the metrics or webhook address invalid or in use, the webhook receivers file unusable), failed to start leading (the Lease is released first), failed while running, or lost leadership (the pod restarts as a standby)',
  2: 'bad flags: an unknown flag or choice, --rollout-timeout / --lease-duration not a Go duration (the lease at least 3s), or --poller-service-account not namespace/name',
} as const;

/**
 * The controller's flags as yargs options. Exported so scripts/generate-docs.ts documents exactly
 * these; `env` gives the default of --leader-election-namespace.
 */
export function controllerOptions(env: NodeJS.ProcessEnv = process.env) {
  return {
    kubeconfig: {
      type: 'string',
      describe: 'kubeconfig file; default $KUBECONFIG, ~/.kube/config, then the in-cluster service account',
    },
    namespace: {
      alias: 'n',
      type: 'string',
      array: true,
      describe: 'namespace to watch (repeatable); default all namespaces',
    },
    'leader-elect': {
      type: 'boolean',
      default: false,
      describe: 'take a coordination.k8s.io Lease before acting, so only one replica acts',
    },
    'leader-election-namespace': {
      type: 'string',
      default: env.POD_NAMESPACE ?? 'kubewatcher-system',
      describe: 'namespace of the leader Lease (default $POD_NAMESPACE)',
    },
    'leader-election-id': {
      type: 'string',
      default: 'kubewatcher-controller',
      describe: 'name of the leader Lease',
    },
    'lease-duration': {
      type: 'string',
      default: '15s',
      describe: 'how long a standby waits after the last renewal before taking over',
    },
    'metrics-addr': {
      type: 'string',
      default: ':8080',
      describe:
        'address of /metrics, /healthz (alias /livez) and /readyz (host:port, :port; :0 picks a free port)',
    },
    concurrency: {
      type: 'number',
      default: 2,
      describe: 'workers per queue (WatchedImages, ImageUpdates, auto-watch namespaces)',
    },
    'poller-secrets-role': {
      type: 'string',
      default: 'kubewatcher-poller-secrets',
      describe:
        'ClusterRole (get secrets) the controller binds to the poller in each namespace that holds WatchedImages, never in kube-system; empty, or with --namespace, the install grants secrets itself',
    },
    'poller-service-account': {
      type: 'string',
      default: `${env.POD_NAMESPACE ?? 'kubewatcher-system'}/kubewatcher-poller`,
      describe: "the poller's service account, namespace/name, that --poller-secrets-role is bound to",
    },
    'rollout-timeout': {
      type: 'string',
      default: '10m',
      describe:
        'an update whose rollout has not finished this long after it was applied fails (Deployments also fail on their progressDeadlineSeconds)',
    },
    'auto-watch': {
      type: 'string',
      choices: AUTO_WATCH_MODES,
      default: DEFAULT_AUTO_WATCH_MODE,
      describe:
        'which workloads get generated WatchedImages: opted-in (those labelled or annotated kubewatcher.io/watch=true, or in a Namespace labelled so), all (every workload except in kube-system, kube-public, kube-node-lease and $POD_NAMESPACE, unless labelled; kubewatcher.io/watch=false opts out), off (none; generated ones are deleted)',
    },
    ...webhookOptions(env),
    'notifications-config': {
      type: 'string',
      describe:
        'file listing the notification endpoints (Slack, Teams, Discord, webhook; mounted from a Secret); no notifications unless set',
    },
    ...LOG_OPTIONS,
  } satisfies Record<string, Options>;
}

/** Runs the controller; resolves to one of CONTROLLER_EXIT_CODES. */
export async function main(argv: string[]): Promise<number> {
  const args = await parseCommandLine('kubewatcher-controller', CONTROLLER_USAGE, controllerOptions(), argv);
  if (!args) return 2;
  if (args.help) return 0;

  const logger = commandLogger('controller', args);
  const rolloutTimeoutMs = parseDuration(args['rollout-timeout']);
  const leaseMs = parseDuration(args['lease-duration']);
  if (rolloutTimeoutMs === undefined || leaseMs === undefined || leaseMs < 3000) {
    logger.error(
      '--rollout-timeout and --lease-duration take Go durations (10m, 15s); the lease at least 3s',
    );
    return 2;
  }

  const [pollerNamespace, pollerName, ...extra] = args['poller-service-account'].split('/');
  if (!pollerNamespace || !pollerName || extra.length > 0) {
    logger.error(
      `--poller-service-account takes namespace/name, got ${JSON.stringify(args['poller-service-account'])}`,
    );
    return 2;
  }
  const pollerAccess =
    args['poller-secrets-role'] && !args.namespace?.length
      ? {
          role: args['poller-secrets-role'],
          serviceAccount: { namespace: pollerNamespace, name: pollerName },
        }
      : undefined;

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
      autoWatch: args['auto-watch'] as AutoWatchMode,
      ownNamespace: process.env.POD_NAMESPACE ?? args['leader-election-namespace'],
      ...webhookSettings(args),
      ...(args['notifications-config'] ? { notificationsFile: args['notifications-config'] } : {}),
      ...(pollerAccess ? { pollerAccess } : {}),
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
    // stop() logs what failed and never rejects; the catch is for a crash inside it.
    controller.stop().catch((err: unknown) => logger.warn('shutdown incomplete', { error: String(err) }));
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));

  try {
    const end = await controller.run();
    if (end === 'lost' || end === 'failed') {
      logger.error(
        end === 'lost'
          ? 'lost leadership: exiting so the pod restarts as a standby'
          : 'could not start leading: the Lease is released; exiting so the pod restarts',
      );
      await controller.stop();
      return 1;
    }
    return 0;
  } catch (err) {
    logger.error('controller failed', { error: (err as Error).message });
    return 1;
  }
}
