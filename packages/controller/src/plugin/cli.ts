/**
 * `kubectl kubewatcher`: the kubectl plugin (an executable named kubectl-kubewatcher on the PATH).
 * status, approve, reject, check and history, over the user's own kubeconfig and permissions.
 */
import {
  AuthenticationV1Api,
  BatchV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import {
  apiStatusCode,
  FIELD_MANAGER,
  GROUP,
  IMAGE_UPDATE,
  type ImageUpdate,
  LABEL,
  loadKubeConfig,
  nameLabelValue,
  VERSION,
  WATCHED_IMAGE,
  type WatchedImage,
} from '@kubewatcher/shared';
import yargs, { type Argv } from 'yargs';
import { CheckRequester } from '../webhook/check-request.ts';
import { jobFromCronJob } from '../webhook/poller-run.ts';
import { type Decision, decisionPatch, historyTable, PluginError, statusTables } from './decisions.ts';

export const PLUGIN_USAGE =
  'kubectl kubewatcher <command> [options]\n\nSee what Kubewatcher watches and what waits, approve or reject updates, and ask for a check now.';

export const PLUGIN_EXIT_CODES = {
  0: 'done, or printed --help',
  1: 'the request failed: not found, not allowed, a conflict, or nothing to approve or reject',
  2: 'bad usage: an unknown command or flag, or a missing argument',
} as const;

/** The flags every command takes. */
export const PLUGIN_OPTIONS = {
  kubeconfig: { type: 'string', describe: 'kubeconfig file; default $KUBECONFIG, then ~/.kube/config' },
  namespace: {
    alias: 'n',
    type: 'string',
    describe: "namespace; default the kubeconfig context's, then default",
  },
  'all-namespaces': { alias: 'A', type: 'boolean', default: false, describe: 'status: every namespace' },
  'poller-namespace': {
    type: 'string',
    default: 'kubewatcher-system',
    describe: 'check: namespace of the poller CronJob',
  },
  'poller-cronjob': {
    type: 'string',
    default: 'kubewatcher-poller',
    describe: 'check: the poller CronJob to start a run of',
  },
  'ignore-update-windows': {
    type: 'boolean',
    default: false,
    describe: "approve: apply at once, outside the WatchedImage's update windows (minimum age still applies)",
  },
} as const;

interface Io {
  out(text: string): void;
  err(text: string): void;
}

const processIo: Io = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

type Args = {
  kubeconfig?: string;
  namespace?: string;
  'all-namespaces': boolean;
  'poller-namespace': string;
  'poller-cronjob': string;
  'ignore-update-windows': boolean;
  name?: string;
};

/** The commands, for --help and docs/cli.md. */
export const PLUGIN_COMMANDS = [
  ['status', 'what is watched and what is pending, in tables'],
  ['approve <name>', 'approve an ImageUpdate (Manual policy), recording who approved it'],
  ['reject <name>', 'reject an ImageUpdate: it is not applied; who rejected it is recorded'],
  ['check <name>', 'make a WatchedImage due now and start a poller run'],
  ['history <name>', "a WatchedImage's ImageUpdates, oldest first"],
] as const;

/** Runs the plugin; resolves to one of PLUGIN_EXIT_CODES. */
export async function pluginMain(
  argv: readonly string[],
  io: Io = processIo,
  now = () => new Date(),
): Promise<number> {
  let action: ((args: Args) => Promise<void>) | undefined;
  const named = (y: Argv) => y.positional('name', { type: 'string', demandOption: true });
  let parsed: Args;
  try {
    let y = yargs([...argv])
      .scriptName('kubectl kubewatcher')
      .usage(PLUGIN_USAGE)
      .options(PLUGIN_OPTIONS)
      .strict()
      .demandCommand(1, 'name a command: status, approve, reject, check or history')
      .help()
      .version(false)
      .exitProcess(false)
      .fail((msg, err) => {
        throw err ?? new Error(msg);
      });
    for (const [command, describe] of PLUGIN_COMMANDS) {
      const verb = command.split(' ')[0]!;
      y = y.command(command, describe, verb === 'status' ? {} : named, () => {
        action = (args) => run(verb, args, io, now);
      });
    }
    parsed = (await y.parseAsync()) as unknown as Args;
  } catch (err) {
    io.err(`kubectl kubewatcher: ${(err as Error).message}`);
    return 2;
  }
  if (!action) return 0; // --help
  try {
    await action(parsed);
    return 0;
  } catch (err) {
    io.err(`error: ${describeError(err)}`);
    return 1;
  }
}

function describeError(err: unknown): string {
  if (err instanceof PluginError) return err.message;
  const code = apiStatusCode(err);
  const body = (err as { body?: unknown }).body;
  let message: string | undefined;
  try {
    message = (typeof body === 'string' ? JSON.parse(body) : body)?.message;
  } catch {}
  if (code !== undefined)
    return `${message ?? `HTTP ${code}`}${code === 409 ? ' (it changed meanwhile: try again)' : ''}`;
  return (err as Error).message;
}

function namespaceOf(kc: KubeConfig, args: Args): string {
  return args.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
}

async function run(verb: string, args: Args, io: Io, now: () => Date): Promise<void> {
  const kc = loadKubeConfig(args.kubeconfig);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const namespace = namespaceOf(kc, args);
  type Resource = { group: string; version: string; plural: string };
  const wi: Resource = { group: GROUP, version: VERSION, plural: WATCHED_IMAGE.plural };
  const iu: Resource = { group: GROUP, version: VERSION, plural: IMAGE_UPDATE.plural };
  const list = async <T>(resource: Resource, labelSelector?: string): Promise<T[]> => {
    const opts = labelSelector ? { labelSelector } : {};
    const res = (
      args['all-namespaces']
        ? await custom.listClusterCustomObject({ ...resource, ...opts })
        : await custom.listNamespacedCustomObject({ ...resource, namespace, ...opts })
    ) as { items: T[] };
    return res.items;
  };

  switch (verb) {
    case 'status': {
      const [watched, updates] = await Promise.all([list<WatchedImage>(wi), list<ImageUpdate>(iu)]);
      io.out(statusTables(watched, updates, now()));
      return;
    }
    case 'approve':
    case 'reject': {
      const decision: Decision = verb === 'approve' ? 'approved' : 'rejected';
      const name = args.name!;
      const update = (await custom.getNamespacedCustomObject({ ...iu, namespace, name })) as ImageUpdate;
      const user = await whoAmI(kc);
      const body = decisionPatch(update, decision, user, now(), {
        ignoreUpdateWindows: args['ignore-update-windows'],
      });
      await custom.patchNamespacedCustomObject(
        { ...iu, namespace, name, body, fieldManager: FIELD_MANAGER.plugin },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      io.out(`imageupdate.${GROUP}/${name} ${decision} by ${user}`);
      return;
    }
    case 'check': {
      const name = args.name!;
      await custom.getNamespacedCustomObject({ ...wi, namespace, name }); // a clear 404 first
      await new CheckRequester(kc, FIELD_MANAGER.plugin).requestCheck(namespace, name, now());
      io.out(`watchedimage.${GROUP}/${name} due now`);
      io.out(await startPollerRun(kc, args['poller-namespace'], args['poller-cronjob']));
      return;
    }
    case 'history': {
      const name = args.name!;
      await custom.getNamespacedCustomObject({ ...wi, namespace, name });
      // The label carries a value that fits (hashed past 63 characters), so the spec decides.
      const updates = (await list<ImageUpdate>(iu, `${LABEL.watchedImage}=${nameLabelValue(name)}`)).filter(
        (u) => u.spec.watchedImage === name,
      );
      io.out(historyTable(updates, now()));
      return;
    }
  }
}

/** The user's name as the API server authenticates it (SelfSubjectReview), not as the kubeconfig says. */
async function whoAmI(kc: KubeConfig): Promise<string> {
  const review = await kc
    .makeApiClient(AuthenticationV1Api)
    .createSelfSubjectReview({ body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' } });
  const user = review.status?.userInfo?.username;
  if (!user)
    throw new PluginError('the API server did not say who you are (SelfSubjectReview has no username)');
  return user;
}

/** One run of the poller now, under the same fixed name as the webhook receiver's (so never two). */
async function startPollerRun(kc: KubeConfig, namespace: string, cronJobName: string): Promise<string> {
  const batch = kc.makeApiClient(BatchV1Api);
  const cronJob = await batch.readNamespacedCronJob({ namespace, name: cronJobName });
  if ((cronJob.status?.active ?? []).length > 0) {
    return `a poller run is in progress (${cronJob.status!.active!.map((a) => a.name).join(', ')}); the next run checks it`;
  }
  const name = `${cronJobName}-webhook`;
  try {
    await batch.createNamespacedJob({
      namespace,
      body: jobFromCronJob(cronJob, name, 'kubectl-kubewatcher'),
    });
  } catch (err) {
    if (apiStatusCode(err) === 409)
      return `a poller run is in progress (job ${name}); the next run checks it`;
    throw err;
  }
  return `job.batch/${name} created in ${namespace}`;
}
