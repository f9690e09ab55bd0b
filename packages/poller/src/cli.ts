import { readFileSync } from 'node:fs';
import {
  commandLogger,
  isDnsLabel,
  isDnsSubdomain,
  LOG_OPTIONS,
  loadKubeConfig,
  parseCommandLine,
  parseDuration,
} from '@kubewatcher/shared';
import { parse as parseYaml } from 'yaml';
import type { Options } from 'yargs';
import { KubePollerCluster, type ObjectRef } from './cluster.ts';
import { ANY_HOST, RegistryClient, type RegistryHostOptions } from './registry/index.ts';
import { runPoll } from './run.ts';

/** What `kubewatcher-poller --help` says above the options. */
export const POLLER_USAGE =
  '$0 [options]\n\nChecks the WatchedImages that are due, resolves the digest behind each tag and records changes as ImageUpdates. Runs once and exits (a Kubernetes CronJob runs it every minute).';

/** The exit codes `main` returns, and what each means (docs/cli.md lists them). */
export const POLLER_EXIT_CODES = {
  0: 'the run worked, even if some images could not be resolved (their Resolved condition says why), or printed --help',
  1: 'the run could not work: no cluster configured, or WatchedImages could not be listed',
  2: 'bad flags: an unknown flag or choice, a --timeout or --run-timeout that is not a duration, a --check-record that is not NAMESPACE/NAME, or an unreadable or invalid --registries-config',
  130: 'stopped by SIGINT; nothing is lost, the next run picks up where this one stopped',
  143: "stopped by SIGTERM, e.g. at the Job's activeDeadlineSeconds; nothing is lost, the next run picks up where this one stopped",
} as const;

/** The poller's flags as yargs options. Exported so scripts/generate-docs.ts documents exactly these. */
export function pollerOptions() {
  return {
    kubeconfig: {
      type: 'string',
      describe: 'kubeconfig file; default $KUBECONFIG, ~/.kube/config, then the in-cluster service account',
    },
    namespace: {
      alias: 'n',
      type: 'string',
      array: true,
      describe: 'namespace to check (repeatable); default all namespaces',
    },
    'dry-run': {
      type: 'boolean',
      default: false,
      describe: 'resolve and print what would change; write nothing to the cluster',
    },
    'ignore-interval': {
      type: 'boolean',
      default: false,
      describe:
        'check every WatchedImage now, whatever its spec.interval (for a manual run); suspended ones are still skipped',
    },
    concurrency: {
      type: 'number',
      default: 8,
      describe: 'registry lookups in flight at once across all registries',
    },
    'per-host-concurrency': {
      type: 'number',
      default: 4,
      describe: 'registry requests in flight at once to one registry host',
    },
    timeout: {
      type: 'string',
      default: '20s',
      describe:
        'deadline of one registry lookup, every request, redirect, retry and token fetch it needs included (Go duration: 500ms, 20s, 1m30s)',
    },
    'run-timeout': {
      type: 'string',
      default: '4m',
      describe:
        "time one run may take; lookups stop starting in time for the status writes, and what is left is checked first next run (keep it below the Job's activeDeadlineSeconds, 300 s as shipped)",
    },
    'registries-config': {
      type: 'string',
      describe:
        'YAML or JSON file of per-registry options keyed by host: {"host:port": {plainHttp, insecureSkipVerify, caFile, realmHosts}}; the key "*" may give realmHosts for every registry without its own',
    },
    'check-record': {
      type: 'string',
      describe:
        'NAMESPACE/NAME of a ConfigMap the poller may get and update: every other scheduled check that finds nothing new is recorded there instead of in its WatchedImage status (half the status writes); default none: every scheduled check writes its status',
    },
    'plain-http': {
      type: 'string',
      array: true,
      default: [] as string[],
      describe: 'registry host (host:port) to reach over plain HTTP (repeatable); TLS is used for all others',
    },
    ...LOG_OPTIONS,
  } satisfies Record<string, Options>;
}

/** Runs the poller once; resolves to one of POLLER_EXIT_CODES. */
export async function main(argv: string[]): Promise<number> {
  const args = await parseCommandLine('kubewatcher-poller', POLLER_USAGE, pollerOptions(), argv);
  if (!args) return 2;
  if (args.help) return 0;

  const logger = commandLogger('poller', args);
  let registries: Record<string, RegistryHostOptions>;
  let timeoutMs: number;
  let budgetMs: number;
  let checkRecord: ObjectRef | undefined;
  try {
    registries = loadRegistryOptions(args['registries-config'], args['plain-http']);
    timeoutMs = parseTimeout('--timeout', args.timeout);
    budgetMs = parseTimeout('--run-timeout', args['run-timeout']);
    checkRecord = parseObjectRef('--check-record', args['check-record']);
  } catch (err) {
    logger.error((err as Error).message);
    return 2;
  }

  try {
    const kc = loadKubeConfig(args.kubeconfig);
    const registry = new RegistryClient({
      registries,
      timeoutMs,
      maxConcurrencyPerHost: args['per-host-concurrency'],
      logger,
    });
    const summary = await runPoll({
      cluster: new KubePollerCluster(kc),
      registry,
      logger,
      ...(args.namespace ? { namespaces: args.namespace } : {}),
      dryRun: args['dry-run'],
      ignoreInterval: args['ignore-interval'],
      concurrency: args.concurrency,
      budgetMs,
      ...(checkRecord ? { checkRecord } : {}),
    });
    logger.info('run complete', { ...summary, dryRun: args['dry-run'] });
    return 0;
  } catch (err) {
    logger.error('run failed: the poller could not read WatchedImages from the cluster', {
      error: (err as Error).message,
    });
    return 1;
  }
}

/** `namespace/name` of an object, or undefined when the flag is not given. */
export function parseObjectRef(flag: string, text: string | undefined): ObjectRef | undefined {
  if (text === undefined) return undefined;
  const [namespace = '', name = '', ...rest] = text.split('/');
  if (rest.length > 0 || !isDnsLabel(namespace) || !isDnsSubdomain(name))
    throw new Error(
      `${flag}: "${text.slice(0, 80)}" is not NAMESPACE/NAME, e.g. kubewatcher-system/kubewatcher-poller-checks`,
    );
  return { namespace, name };
}

function parseTimeout(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0)
    throw new Error(`${flag}: invalid duration "${text.slice(0, 80)}": use e.g. 500ms, 20s or 1m30s`);
  return ms;
}

function loadRegistryOptions(
  file: string | undefined,
  plainHttp: string[],
): Record<string, RegistryHostOptions> {
  const options: Record<string, RegistryHostOptions> = {};
  if (file) {
    let parsed: unknown;
    try {
      parsed = parseYaml(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new Error(`--registries-config: cannot read ${file}: ${(err as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new Error(`--registries-config: ${file} must map registry hosts to options`);
    }
    for (const [host, value] of Object.entries(parsed as Record<string, unknown>)) {
      const v = (value ?? {}) as Record<string, unknown>;
      const allowed =
        host === ANY_HOST ? ['realmHosts'] : ['plainHttp', 'insecureSkipVerify', 'caFile', 'realmHosts'];
      for (const k of Object.keys(v)) {
        if (!allowed.includes(k)) {
          throw new Error(`--registries-config: ${host}.${k} is not an option (${allowed.join(', ')})`);
        }
      }
      const realmHosts = v.realmHosts;
      if (
        realmHosts !== undefined &&
        (!Array.isArray(realmHosts) || !realmHosts.every((h) => typeof h === 'string' && h !== ''))
      ) {
        throw new Error(
          `--registries-config: ${host}.realmHosts must be a list of host[:port] names, got ${JSON.stringify(realmHosts).slice(0, 80)}`,
        );
      }
      options[host] = {
        ...(v.plainHttp === true ? { plainHttp: true } : {}),
        ...(v.insecureSkipVerify === true ? { insecureSkipVerify: true } : {}),
        ...(typeof v.caFile === 'string' ? { caFile: v.caFile } : {}),
        ...(realmHosts ? { realmHosts: realmHosts as string[] } : {}),
      };
    }
  }
  for (const host of plainHttp) options[host] = { ...options[host], plainHttp: true };
  return options;
}
