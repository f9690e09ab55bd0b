/** The controller's webhook flags, kept beside the receiver so cli.ts only spreads them. */
import type { Options } from 'yargs';
import type { ControllerOptions } from '../controller.ts';

/** Where the chart and the base manifests mount the receivers Secret. */
export const DEFAULT_RECEIVERS_FILE = '/etc/kubewatcher/webhooks/receivers.yaml';

export function webhookOptions(env: NodeJS.ProcessEnv) {
  return {
    'webhook-bind-address': {
      type: 'string',
      describe:
        'address of the registry webhook receiver (host:port, :port); the receiver is off unless this is set',
    },
    'webhook-receivers': {
      type: 'string',
      default: DEFAULT_RECEIVERS_FILE,
      describe: 'file listing the webhook receivers (mounted from a Secret; re-read when it changes)',
    },
    'poller-namespace': {
      type: 'string',
      default: env.POD_NAMESPACE ?? 'kubewatcher-system',
      describe: 'namespace of the poller CronJob that webhooks start runs of (default $POD_NAMESPACE)',
    },
    'poller-cronjob': {
      type: 'string',
      default: 'kubewatcher-poller',
      describe: 'name of the poller CronJob whose jobTemplate a webhook-started run is made from',
    },
  } satisfies Record<string, Options>;
}

/** The Controller's `webhook` option from the parsed flags; nothing when the receiver is off. */
export function webhookSettings(args: {
  'webhook-bind-address'?: string | undefined;
  'webhook-receivers': string;
  'poller-namespace': string;
  'poller-cronjob': string;
}): Pick<ControllerOptions, 'webhook'> {
  const address = args['webhook-bind-address'];
  if (!address) return {};
  return {
    webhook: {
      address,
      receiversFile: args['webhook-receivers'],
      namespace: args['poller-namespace'],
      cronJobName: args['poller-cronjob'],
    },
  };
}
