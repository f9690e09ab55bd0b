/**
 * The poller's reads: the WatchedImages to consider, and for each due one the credential it pulls
 * with and the digest its workloads already pin. Each namespace's workloads, service accounts and
 * secrets are read at most once per run. Decisions are plan.ts's, writes apply.ts's.
 */
import { createHash } from 'node:crypto';
import {
  boundMessage,
  DIGEST_PATTERN,
  kindsOf,
  type Logger,
  matchWorkloads,
  podSpecOf,
  RESOLVED_REASON,
  type ResolvedReason,
  type WatchedImage,
} from '@kubewatcher/shared';
import { parseCheckRecord, type UnwrittenChecks } from './check-record.ts';
import type { ObjectRef, PollerCluster, StoredCheckRecord } from './cluster.ts';
import type { PollTarget } from './plan.ts';
import {
  findCredential,
  type Keyring,
  parseDockerConfigSecret,
  type RegistryCredential,
} from './registry/index.ts';

const SUPPORTED_DIGEST = new RegExp(DIGEST_PATTERN);

/** Every WatchedImage in the namespaces (all when none are given). */
export async function listWatchedImages(
  cluster: PollerCluster,
  namespaces: readonly string[] | undefined,
): Promise<WatchedImage[]> {
  const all: WatchedImage[] = [];
  for (const ns of namespaces && namespaces.length > 0 ? namespaces : [undefined]) {
    all.push(...(await cluster.listWatchedImages(ns)));
  }
  return all;
}

/** The check record as a run read it: where it is, the ConfigMap as read, and its checks. */
export interface CheckRecordRead {
  ref: ObjectRef;
  stored: StoredCheckRecord;
  checks: UnwrittenChecks;
}

/**
 * The check record (check-record.ts), or undefined when there is none to use: the ConfigMap is
 * missing, or the poller may not read it. The run then writes every scheduled check, as it would
 * without the flag, and says why; a value that is not a record is read as empty and replaced.
 */
export async function readCheckRecord(
  cluster: PollerCluster,
  ref: ObjectRef,
  logger: Logger,
): Promise<CheckRecordRead | undefined> {
  const where = `${ref.namespace}/${ref.name}`;
  let stored: StoredCheckRecord | undefined;
  try {
    stored = await cluster.readCheckRecord(ref);
  } catch (err) {
    logger.warn('check record unreadable: every scheduled check writes its status this run', {
      configMap: where,
      error: boundMessage((err as Error).message),
    });
    return undefined;
  }
  if (!stored) {
    logger.warn(
      'check record ConfigMap not found: every scheduled check writes its status; apply the manifests that ship it',
      { configMap: where },
    );
    return undefined;
  }
  const { checks, problem } = parseCheckRecord(stored.text);
  if (problem) logger.warn('check record unreadable, replaced this run', { configMap: where, problem });
  return { ref, stored, checks };
}

/** Why a target could not even be resolved (credentials could not be gathered). */
export class GatherError extends Error {
  readonly reason: ResolvedReason;
  constructor(reason: ResolvedReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

export interface Prepared extends PollTarget {
  credential?: RegistryCredential;
  credentialId: string;
  /** A digest that a matched workload already pins, for the first-sight update. */
  pinnedDigest?: string;
  /** A digest a matched workload pins that Kubewatcher cannot record (not sha256), to report. */
  unsupportedPinnedDigest?: string;
}

/**
 * Finds the credential for each target: the WatchedImage's own pullSecrets, else the imagePullSecrets
 * of the workloads it matches and of their service accounts. Each namespace's workloads, service
 * accounts and secrets are read at most once per run.
 */
export class CredentialGatherer {
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
        const pod = podSpecOf(workload);
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
    const pinned = firstSight ? pinnedDigestOf(matches) : {};
    return {
      ...target,
      ...(credential ? { credential } : {}),
      credentialId: credential
        ? createHash('sha256').update(JSON.stringify(credential)).digest('hex')
        : 'anonymous',
      ...(pinned.supported ? { pinnedDigest: pinned.supported } : {}),
      ...(pinned.unsupported ? { unsupportedPinnedDigest: pinned.unsupported } : {}),
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

/**
 * The sha256 digest most matched containers already pin (ties: the first in name order), and the
 * first other digest pinned, which an ImageUpdate cannot carry (its schema takes sha256 only).
 */
function pinnedDigestOf(matches: ReturnType<typeof matchWorkloads>): {
  supported?: string;
  unsupported?: string;
} {
  const counts = new Map<string, number>();
  let unsupported: string | undefined;
  for (const m of matches) {
    for (const c of m.containers) {
      if (!c.digest) continue;
      if (SUPPORTED_DIGEST.test(c.digest)) counts.set(c.digest, (counts.get(c.digest) ?? 0) + 1);
      else unsupported ??= c.digest;
    }
  }
  let best: string | undefined;
  for (const [d, n] of counts) if (!best || n > counts.get(best)!) best = d;
  return { ...(best ? { supported: best } : {}), ...(unsupported ? { unsupported } : {}) };
}
