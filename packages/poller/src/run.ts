import { createHash } from 'node:crypto';
import {
  kindsOf,
  type Logger,
  matchWorkloads,
  namespacedKey,
  objectKey,
  RESOLVED_REASON,
  type ResolvedReason,
  settleWithLimit,
  type WatchedImage,
} from '@kubewatcher/shared';
import type { PollerCluster } from './cluster.ts';
import { decide, groupTargets, invalidStatus, isSameChange, type PollTarget, selectDue } from './plan.ts';
import {
  findCredential,
  type Keyring,
  parseDockerConfigSecret,
  type RegistryClient,
  type RegistryCredential,
  type ResolveResult,
} from './registry/index.ts';

export interface RunOptions {
  cluster: PollerCluster;
  registry: RegistryClient;
  logger: Logger;
  /** Namespaces to check; all when empty. */
  namespaces?: readonly string[];
  /** Resolve and report, write nothing. */
  dryRun?: boolean;
  /** Check every WatchedImage now, whatever its interval (a manual run). */
  ignoreInterval?: boolean;
  /** Registry resolutions in flight at once (per-host caps live in the registry client). */
  concurrency?: number;
  now?: () => Date;
}

export interface RunSummary {
  watchedImages: number;
  checked: number;
  changed: number;
  baselined: number;
  unchanged: number;
  failed: number;
  notDue: number;
  suspended: number;
  invalid: number;
  imageUpdatesCreated: number;
  /** Distinct (image, credential) pairs resolved: one registry lookup each. */
  resolutions: number;
  requests: { head: number; get: number; token: number; total: number };
  durationMs: number;
}

/** Why a target could not even be resolved (credentials could not be gathered). */
class GatherError extends Error {
  readonly reason: ResolvedReason;
  constructor(reason: ResolvedReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

interface Prepared extends PollTarget {
  credential?: RegistryCredential;
  credentialId: string;
  /** A digest that a matched workload already pins, for the first-sight update. */
  pinnedDigest?: string;
}

/**
 * One poller run: list WatchedImages, pick the due ones, resolve each distinct (image, credential)
 * once, then record baselines, create ImageUpdates for changes and write the Resolved condition.
 * One image's failure never stops the others; only a failure to list WatchedImages rejects.
 */
export async function runPoll(opts: RunOptions): Promise<RunSummary> {
  const now = opts.now ?? (() => new Date());
  const started = Date.now();
  const { cluster, logger } = opts;
  // The client may outlive one run (its stats are cumulative): report this run's requests only.
  const statsBefore = opts.registry.stats();
  const summary: RunSummary = {
    watchedImages: 0,
    checked: 0,
    changed: 0,
    baselined: 0,
    unchanged: 0,
    failed: 0,
    notDue: 0,
    suspended: 0,
    invalid: 0,
    imageUpdatesCreated: 0,
    resolutions: 0,
    requests: { head: 0, get: 0, token: 0, total: 0 },
    durationMs: 0,
  };

  const namespaces = opts.namespaces && opts.namespaces.length > 0 ? opts.namespaces : [undefined];
  const all: WatchedImage[] = [];
  for (const ns of namespaces) all.push(...(await cluster.listWatchedImages(ns)));
  summary.watchedImages = all.length;

  const selection = selectDue(all, now(), opts.ignoreInterval);
  summary.notDue = selection.notDue;
  summary.suspended = selection.suspended;
  summary.invalid = selection.invalid.length;
  for (const { watchedImage, message } of selection.invalid) {
    logger.warn('invalid WatchedImage skipped', { watchedImage: objectKey(watchedImage), error: message });
    if (!opts.dryRun)
      await guarded(logger, watchedImage, () =>
        cluster.applyStatus(watchedImage, invalidStatus(watchedImage, message, now())),
      );
  }

  const gatherer = new CredentialGatherer(cluster, logger);
  const prepared: Prepared[] = [];
  for (const target of selection.due) {
    try {
      prepared.push(await gatherer.prepare(target));
    } catch (err) {
      summary.checked++; // record() counts it as failed
      const reason = err instanceof GatherError ? err.reason : RESOLVED_REASON.RegistryError;
      const result: ResolveResult = {
        ok: false,
        reason: reason as 'RegistryError',
        message: (err as Error).message,
      };
      await record(target, result);
    }
  }

  const groups = [...groupTargets(prepared, (p) => p.credentialId).values()];
  summary.resolutions = groups.length;
  const outcomes = await settleWithLimit(groups, opts.concurrency ?? 8, async (group) => {
    const first = group[0]!;
    const result = await opts.registry.resolveDigest(first.reference, first.credential);
    for (const target of group) {
      summary.checked++;
      await record(target, result, target.pinnedDigest);
    }
  });
  // Each group's failures are recorded on its WatchedImages; a rejection here is a defect, not a fault.
  const defect = outcomes.find((o) => o.status === 'rejected');
  if (defect) throw defect.reason;

  const stats = opts.registry.stats();
  summary.requests = {
    head: stats.head - statsBefore.head,
    get: stats.get - statsBefore.get,
    token: stats.token - statsBefore.token,
    total: stats.total - statsBefore.total,
  };
  summary.durationMs = Date.now() - started;
  return summary;

  async function record(target: PollTarget, result: ResolveResult, pinnedDigest?: string): Promise<void> {
    const wi = target.watchedImage;
    const decision = decide(target, result, now(), pinnedDigest);
    if (decision.outcome === 'failed') summary.failed++;
    else if (decision.outcome === 'changed') summary.changed++;
    else if (decision.outcome === 'baseline') summary.baselined++;
    else summary.unchanged++;
    const level =
      decision.outcome === 'failed' ? 'warn' : decision.outcome === 'unchanged' ? 'debug' : 'info';
    logger[level](decision.message, {
      watchedImage: objectKey(wi),
      image: wi.spec.image,
      outcome: decision.outcome,
    });
    if (opts.dryRun) return;
    await guarded(logger, wi, async () => {
      // The ImageUpdate first, the baseline second: a run killed in between finds the same change
      // again next time and meets its own ImageUpdate, so nothing is lost or doubled.
      if (decision.imageUpdate) {
        if (await createUpdate(decision.imageUpdate, wi.status?.lastChangedTime))
          summary.imageUpdatesCreated++;
      }
      await cluster.applyStatus(wi, decision.status);
    });
  }

  /** Creates the ImageUpdate under its deterministic name; true when this call created it. */
  async function createUpdate(
    draft: NonNullable<ReturnType<typeof decide>['imageUpdate']>,
    baselineSince?: string,
  ) {
    // A tag that moves back to an earlier digest meets that digest's old record: the next free
    // suffix is taken, deterministically, so reruns still find their own.
    for (let attempt = 1; attempt <= 10; attempt++) {
      const name = attempt === 1 ? draft.name : `${draft.name.slice(0, 250)}-${attempt}`;
      const candidate = {
        ...draft,
        name,
        body: { ...draft.body, metadata: { ...draft.body.metadata, name } },
      };
      const res = await cluster.createImageUpdate(candidate);
      if (res.created) {
        logger.info('ImageUpdate created', {
          imageUpdate: namespacedKey(draft.body.metadata.namespace, name),
        });
        return true;
      }
      if (isSameChange(res.existing, candidate, baselineSince)) return false;
    }
    throw new Error(
      `no free name for the ImageUpdate ${draft.name}: delete old ImageUpdates of this WatchedImage`,
    );
  }
}

/** Writes for one WatchedImage never stop the others: failures are logged and the run goes on. */
async function guarded(logger: Logger, wi: WatchedImage, write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (err) {
    logger.error('could not record the result', {
      watchedImage: objectKey(wi),
      error: (err as Error).message,
    });
  }
}

/**
 * Finds the credential for each target: the WatchedImage's own pullSecrets, else the imagePullSecrets
 * of the workloads it matches and of their service accounts. Each namespace's workloads, service
 * accounts and secrets are read at most once per run.
 */
class CredentialGatherer {
  readonly #cluster: PollerCluster;
  readonly #logger: Logger;
  readonly #workloads = new Map<string, Promise<Awaited<ReturnType<PollerCluster['listWorkloads']>>>>();
  readonly #serviceAccounts = new Map<string, Promise<string[] | undefined>>();
  readonly #keyrings = new Map<string, Promise<Keyring | undefined>>();

  constructor(cluster: PollerCluster, logger: Logger) {
    this.#cluster = cluster;
    this.#logger = logger;
  }

  async prepare(target: PollTarget): Promise<Prepared> {
    const wi = target.watchedImage;
    const ns = wi.metadata.namespace!;
    const kinds = kindsOf(wi.spec);
    const firstSight = !wi.status?.digest || wi.status.resolvedImage !== target.image;
    const named = (wi.spec.pullSecrets ?? []).map((s) => s.name);

    let matches: ReturnType<typeof matchWorkloads> = [];
    if (named.length === 0 || firstSight) {
      matches = matchWorkloads(
        wi.spec,
        await this.#memo(this.#workloads, `${ns}|${kinds.join(',')}`, () =>
          this.#cluster.listWorkloads(ns, kinds),
        ),
      );
    }

    let secretNames = named;
    if (named.length === 0) {
      const names = new Set<string>();
      for (const { workload } of matches) {
        const pod = workload.spec?.template?.spec;
        for (const ref of pod?.imagePullSecrets ?? []) if (ref.name) names.add(ref.name);
        const sa = pod?.serviceAccountName || 'default';
        const fromSa = await this.#memo(this.#serviceAccounts, `${ns}/${sa}`, () =>
          this.#cluster.getServiceAccountPullSecrets(ns, sa),
        );
        for (const n of fromSa ?? []) names.add(n);
      }
      secretNames = [...names].sort();
    }

    const keyrings: Keyring[] = [];
    for (const name of secretNames) {
      const keyring = await this.#memo(this.#keyrings, `${ns}/${name}`, async () => {
        const secret = await this.#cluster.getSecret(ns, name);
        if (!secret) return undefined;
        return parseDockerConfigSecret({ ...secret, name: `${ns}/${name}` });
      }).catch((err: Error) => {
        throw new GatherError(RESOLVED_REASON.InvalidCredentials, err.message);
      });
      if (!keyring) {
        if (named.includes(name)) {
          throw new GatherError(
            RESOLVED_REASON.SecretNotFound,
            `pull secret "${name}" named in spec.pullSecrets does not exist in namespace ${ns}`,
          );
        }
        this.#logger.warn('pull secret referenced by a workload does not exist', {
          namespace: ns,
          secret: name,
        });
        continue;
      }
      keyrings.push(keyring);
    }

    const credential = findCredential(keyrings, target.reference);
    const pinned = firstSight ? pinnedDigestOf(matches) : undefined;
    return {
      ...target,
      ...(credential ? { credential } : {}),
      credentialId: credential
        ? createHash('sha256').update(JSON.stringify(credential)).digest('hex')
        : 'anonymous',
      ...(pinned ? { pinnedDigest: pinned } : {}),
    };
  }

  #memo<T>(cache: Map<string, Promise<T>>, k: string, load: () => Promise<T>): Promise<T> {
    let p = cache.get(k);
    if (!p) {
      p = load();
      cache.set(k, p);
    }
    return p;
  }
}

/** The digest most matched containers already pin (ties: the first in name order). */
function pinnedDigestOf(matches: ReturnType<typeof matchWorkloads>): string | undefined {
  const counts = new Map<string, number>();
  for (const m of matches)
    for (const c of m.containers) if (c.digest) counts.set(c.digest, (counts.get(c.digest) ?? 0) + 1);
  let best: string | undefined;
  for (const [d, n] of counts) if (!best || n > counts.get(best)!) best = d;
  return best;
}
