import { DEFAULT_KINDS, podTemplateOf, underPodTemplate, type WorkloadKind } from './api/index.ts';
import { compareKeys } from './object-key.ts';
import { normalizeReference, sameImage } from './reference.ts';

/**
 * Which workloads and containers a WatchedImage applies to. Used by the controller (to patch) and the
 * poller (to find pull secrets and already-pinned digests), so both always agree.
 */

interface SelectorRequirement {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}
/** The shape of a metav1.LabelSelector (the API's TypeBox schema is assignable to it). */
export interface Selector {
  matchLabels?: Record<string, string>;
  matchExpressions?: SelectorRequirement[];
}

/** The part of a pod spec that matching, patching and pull-secret lookup read. */
export interface PodSpecLike {
  serviceAccountName?: string;
  imagePullSecrets?: { name?: string }[];
  containers?: { name: string; image?: string }[];
  initContainers?: { name: string; image?: string }[];
}

/**
 * A workload of one of the kinds in WORKLOAD_KINDS. Its pod template sits where the kind's table
 * entry says (`spec.template`, a CronJob's `spec.jobTemplate.spec.template`): read it with podSpecOf.
 */
export interface WorkloadLike {
  kind: WorkloadKind;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: object;
}

/** The pod spec of a workload, wherever its kind keeps the template. */
export function podSpecOf(workload: WorkloadLike): PodSpecLike | undefined {
  return podTemplateOf<{ spec?: PodSpecLike }>(workload.kind, workload)?.spec;
}

/**
 * Only the fields of a workload that matching reads (a WorkloadLike): what a reader that only matches
 * keeps of a listed or watched workload, whatever else its owner put in it.
 */
export function workloadLikeOf(obj: unknown, kind: WorkloadKind): WorkloadLike {
  const w = obj as WorkloadLike;
  const pod = podTemplateOf<{ spec?: PodSpecLike }>(kind, w)?.spec;
  const containers = (list: { name: string; image?: string }[] | undefined) =>
    list?.map((c) => (c.image === undefined ? { name: c.name } : { name: c.name, image: c.image }));
  const spec: PodSpecLike = {};
  if (pod?.serviceAccountName !== undefined) spec.serviceAccountName = pod.serviceAccountName;
  if (pod?.imagePullSecrets) spec.imagePullSecrets = pod.imagePullSecrets.map((s) => ({ name: s.name }));
  if (pod?.containers) spec.containers = containers(pod.containers);
  if (pod?.initContainers) spec.initContainers = containers(pod.initContainers);
  const { name, namespace, labels } = w.metadata ?? {};
  return {
    kind,
    metadata: { name, ...(namespace !== undefined ? { namespace } : {}), ...(labels ? { labels } : {}) },
    ...(pod ? (underPodTemplate(kind, { spec }) as { spec: object }) : w.spec ? { spec: {} } : {}),
  };
}

export interface MatchCriteria {
  image: string;
  workloadSelector?: Selector;
  kinds?: readonly string[];
  containers?: readonly string[];
}

export interface MatchedContainer {
  name: string;
  init: boolean;
  /** The image as the workload has it now, e.g. `nginx:1.27` or `nginx:1.27@sha256:…`. */
  image: string;
  /** The digest pinned in the image string, if any. */
  digest?: string;
}

export interface WorkloadMatch<W extends WorkloadLike = WorkloadLike> {
  workload: W;
  containers: MatchedContainer[];
}

/** Kubernetes label selector semantics: every matchLabels pair and every expression must hold. */
export function selectorMatches(
  selector: Selector | undefined,
  labels: Record<string, string> = {},
): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[k] !== v) return false;
  }
  for (const expr of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, expr.key);
    const value = labels[expr.key];
    switch (expr.operator) {
      case 'In':
        if (!has || !(expr.values ?? []).includes(value!)) return false;
        break;
      case 'NotIn':
        if (has && (expr.values ?? []).includes(value!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

/** The containers of one workload that run the watched repository and tag (digest ignored). */
export function matchContainers(criteria: MatchCriteria, workload: WorkloadLike): MatchedContainer[] {
  const pod = podSpecOf(workload);
  if (!pod) return [];
  const named =
    criteria.containers && criteria.containers.length > 0 ? new Set(criteria.containers) : undefined;
  const found: MatchedContainer[] = [];
  const visit = (list: { name: string; image?: string }[] | undefined, init: boolean) => {
    for (const c of list ?? []) {
      if (!c.image || (named && !named.has(c.name))) continue;
      if (!sameImage(c.image, criteria.image)) continue;
      const digest = pinnedDigest(c.image);
      found.push(
        digest ? { name: c.name, init, image: c.image, digest } : { name: c.name, init, image: c.image },
      );
    }
  };
  visit(pod.initContainers, true);
  visit(pod.containers, false);
  return found;
}

/** Workloads among `candidates` that a WatchedImage applies to, with their matching containers. */
export function matchWorkloads<W extends WorkloadLike>(
  criteria: MatchCriteria,
  candidates: Iterable<W>,
): WorkloadMatch<W>[] {
  // An empty list (which the schema refuses) counts as absent.
  const kinds = new Set<string>(criteria.kinds && criteria.kinds.length > 0 ? criteria.kinds : DEFAULT_KINDS);
  const out: WorkloadMatch<W>[] = [];
  for (const workload of candidates) {
    if (!kinds.has(workload.kind)) continue;
    if (!selectorMatches(criteria.workloadSelector, workload.metadata.labels)) continue;
    const containers = matchContainers(criteria, workload);
    if (containers.length > 0) out.push({ workload, containers });
  }
  out.sort((a, b) =>
    compareKeys(
      `${a.workload.kind}/${a.workload.metadata.name}`,
      `${b.workload.kind}/${b.workload.metadata.name}`,
    ),
  );
  return out;
}

function pinnedDigest(image: string): string | undefined {
  try {
    return normalizeReference(image).digest;
  } catch {
    return undefined;
  }
}
