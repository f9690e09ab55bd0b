import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import {
  API_VERSION,
  AUTO_WATCH_ANNOTATION,
  type AutoWatchMode,
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_INTERVAL,
  familiarString,
  generatedWatchedImageName,
  type ImageUpdate,
  InvalidReferenceError,
  isGenerated,
  MANAGED_BY_KUBEWATCHER,
  MANAGED_BY_LABEL,
  MIN_INTERVAL,
  normalizeReference,
  parseDuration,
  phaseOf,
  podSpecOf,
  referenceString,
  TERMINAL_PHASES,
  UPDATE_POLICY,
  type UpdatePolicy,
  WATCH_LABEL,
  WATCHED_IMAGE,
  type WatchedImage,
  WatchedImageSpec,
  WORKLOAD_KIND,
  type WorkloadLike,
} from '@kubewatcher/shared';

/**
 * Zero-configuration watching as a pure function: given one namespace, its workloads and the
 * WatchedImages and ImageUpdates in it, which generated WatchedImages should exist, and what to write
 * so they do. The AutoWatchReconciler gathers the input from the caches and applies the plan.
 *
 * Who is watched (most specific first):
 *   1. `--auto-watch=off`: nobody; every generated WatchedImage goes away.
 *   2. A workload's `kubewatcher.io/watch` label or annotation: "false" (either) opts it out, "true" in.
 *   3. Its Namespace's `kubewatcher.io/watch` label: "false" out, "true" in.
 *   4. `--auto-watch=all`: in, except in the excluded namespaces (kube-system, kube-public,
 *      kube-node-lease, Kubewatcher's own); `opted-in`: out.
 *
 * Each tag that watched workloads run (containers and init containers; `repo:tag@sha256:…` counts as
 * its tag) gets one WatchedImage, unless a person's WatchedImage in the namespace watches the same
 * repository and tag: a person's always wins. Digest-only references cannot be tracked: reported.
 */

/** The part of a Namespace the planner reads; the informer keeps nothing else. */
export interface NamespaceLike {
  metadata: {
    name: string;
    uid?: string;
    deletionTimestamp?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
}

export type AutoWatchWorkload = WorkloadLike & {
  metadata: { uid?: string; annotations?: Record<string, string> };
};

export interface AutoWatchScope {
  mode: AutoWatchMode;
  /** Left out under `all` unless labelled: the system namespaces and Kubewatcher's own. */
  excludedNamespaces: ReadonlySet<string>;
}

/** Something the planner could not act on, for an Event on the object it concerns. */
export interface AutoWatchReport {
  on: { kind: string; name: string; uid?: string };
  reason: 'DigestOnlyImage' | 'InvalidImage' | 'InvalidAutoWatchSetting' | 'WatchedImageNameTaken';
  message: string;
}

export type OptIn =
  | { watched: true; updatePolicy: UpdatePolicy; interval: string }
  | { watched: false; report?: AutoWatchReport };

/** Every kind: a generated WatchedImage follows its image in whichever kinds run it. */
const ALL_KINDS = Object.values(WORKLOAD_KIND);
/** Most cautious first: when workloads of one image disagree, the most cautious policy is used. */
const CAUTION: readonly UpdatePolicy[] = [UPDATE_POLICY.Observe, UPDATE_POLICY.Manual, UPDATE_POLICY.Auto];
const POLICIES: readonly string[] = Object.values(UPDATE_POLICY);
const MIN_INTERVAL_MS = parseDuration(MIN_INTERVAL)!;
/** spec.interval's maxLength in the schema. */
const INTERVAL_MAX_LENGTH = 32;

type Setting = { value?: string; report?: AutoWatchReport };
type Where = { kind: string; name: string; uid?: string };

function watchValue(
  where: Where,
  sources: { label?: Record<string, string>; annotation?: Record<string, string> },
): { value?: boolean; report?: AutoWatchReport } {
  const values: [string, string][] = [];
  if (sources.label?.[WATCH_LABEL] !== undefined) values.push(['label', sources.label[WATCH_LABEL]]);
  if (sources.annotation?.[WATCH_LABEL] !== undefined) {
    values.push(['annotation', sources.annotation[WATCH_LABEL]]);
  }
  const bad = values.find(([, v]) => v !== 'true' && v !== 'false');
  if (bad) {
    return {
      report: {
        on: where,
        reason: 'InvalidAutoWatchSetting',
        message: `${where.kind} ${where.name}: ${bad[0]} ${WATCH_LABEL} is ${JSON.stringify(bad[1])}; want "true" or "false" (not watched until fixed)`,
      },
    };
  }
  if (values.some(([, v]) => v === 'false')) return { value: false };
  if (values.some(([, v]) => v === 'true')) return { value: true };
  return {};
}

function setting(where: Where, annotations: Record<string, string> | undefined, key: string): Setting {
  const value = annotations?.[key];
  if (value === undefined) return {};
  const problem =
    key === AUTO_WATCH_ANNOTATION.updatePolicy
      ? POLICIES.includes(value)
        ? undefined
        : `want one of ${POLICIES.join(', ')}`
      : intervalProblem(value);
  if (!problem) return { value };
  return {
    report: {
      on: where,
      reason: 'InvalidAutoWatchSetting',
      message: `${where.kind} ${where.name}: annotation ${key} is ${JSON.stringify(value)}; ${problem} (not watched until fixed)`,
    },
  };
}

function intervalProblem(value: string): string | undefined {
  const ms = value.length <= INTERVAL_MAX_LENGTH ? parseDuration(value) : undefined;
  if (ms === undefined) return 'want a Go duration such as 10m or 1h30m';
  if (ms < MIN_INTERVAL_MS) return `want at least ${MIN_INTERVAL}`;
  return undefined;
}

/**
 * Whether auto-watch covers `workload`, and with which policy and interval (the workload's
 * annotations, else its Namespace's, else the defaults). A bad value never falls back to a default:
 * `Manul` read as Auto would roll out what a person meant to approve. The workload is then not watched
 * and the report says why.
 */
export function workloadOptIn(
  workload: AutoWatchWorkload,
  namespace: NamespaceLike | undefined,
  scope: AutoWatchScope,
): OptIn {
  if (scope.mode === 'off') return { watched: false };
  const meta = workload.metadata;
  const where: Where = { kind: workload.kind, name: meta.name, ...(meta.uid ? { uid: meta.uid } : {}) };
  const own = watchValue(where, { label: meta.labels, annotation: meta.annotations });
  if (own.report) return { watched: false, report: own.report };
  let watched = own.value;
  if (watched === undefined) {
    const nsName = namespace?.metadata.name ?? meta.namespace ?? '';
    const ns = watchValue({ kind: 'Namespace', name: nsName }, { label: namespace?.metadata.labels });
    // A bad namespace label is reported by planAutoWatch once, not once per workload.
    if (ns.report) return { watched: false };
    watched = ns.value ?? (scope.mode === 'all' && !scope.excludedNamespaces.has(nsName));
  }
  if (!watched) return { watched: false };

  const nsWhere: Where = { kind: 'Namespace', name: namespace?.metadata.name ?? meta.namespace ?? '' };
  const resolve = (key: string) => {
    const mine = setting(where, meta.annotations, key);
    if (mine.value !== undefined || mine.report) return mine;
    return setting(nsWhere, namespace?.metadata.annotations, key);
  };
  const policy = resolve(AUTO_WATCH_ANNOTATION.updatePolicy);
  const interval = resolve(AUTO_WATCH_ANNOTATION.interval);
  const report = policy.report ?? interval.report;
  // A namespace's bad annotation is reported once on the Namespace by planAutoWatch.
  if (report) return { watched: false, ...(report.on.kind === 'Namespace' ? {} : { report }) };
  return {
    watched: true,
    updatePolicy: (policy.value as UpdatePolicy | undefined) ?? UPDATE_POLICY.Auto,
    interval: interval.value ?? DEFAULT_INTERVAL,
  };
}

/** The schema's default of each WatchedImage spec field that has one. */
const SPEC_DEFAULTS: ReadonlyMap<string, unknown> = new Map(
  Object.entries(WatchedImageSpec.properties as Record<string, { default?: unknown }>)
    .filter(([, schema]) => schema.default !== undefined)
    .map(([key, schema]) => [key, schema.default]),
);

/**
 * A stable hash of a spec's meaning: key order does not count, nor fields that hold their schema
 * default. The API server fills in defaults, including those of fields a later version adds: were they
 * counted, every generated WatchedImage would look edited after such an upgrade.
 */
export function specHash(spec: object): string {
  const meaningful = Object.fromEntries(
    Object.entries(spec).filter(
      ([k, v]) => !SPEC_DEFAULTS.has(k) || !isDeepStrictEqual(v, SPEC_DEFAULTS.get(k)),
    ),
  );
  const canonical = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(canonical)
      : v && typeof v === 'object'
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
          )
        : v;
  return createHash('sha256')
    .update(JSON.stringify(canonical(meaningful)))
    .digest('hex')
    .slice(0, 16);
}

/**
 * Whether someone changed the spec of a generated WatchedImage since the controller wrote it. Every
 * field is written explicitly, so another writer's change (a value, an added field) shows as a
 * different hash.
 */
export function editedByPerson(wi: WatchedImage): boolean {
  return wi.metadata.annotations?.[AUTO_WATCH_ANNOTATION.generatedSpec] !== specHash(wi.spec);
}

export interface AutoWatchInput {
  namespace: string;
  /** Undefined when the Namespace is not (or no longer) in the cache: no namespace-level settings. */
  namespaceObject: NamespaceLike | undefined;
  scope: AutoWatchScope;
  /** Every workload of the namespace, each with its kind. */
  workloads: readonly AutoWatchWorkload[];
  /** Every WatchedImage of the namespace, generated or a person's. */
  watchedImages: readonly WatchedImage[];
  /** Every ImageUpdate of the namespace. */
  updates: readonly ImageUpdate[];
}

/** A generated WatchedImage as it is applied (server-side apply, the controller's field manager). */
export interface GeneratedWatchedImage {
  apiVersion: typeof API_VERSION;
  kind: typeof WATCHED_IMAGE.kind;
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  };
  spec: WatchedImageSpec;
}

export interface AutoWatchPlan {
  /** To create or change, whole. */
  apply: GeneratedWatchedImage[];
  /** Generated WatchedImages no longer wanted and with no unfinished ImageUpdate; delete at this version. */
  delete: { name: string; uid?: string; resourceVersion?: string }[];
  /** Generated WatchedImages a person edited: kept as theirs; drop the generated label and annotation. */
  release: { name: string; uid?: string }[];
  /** Generated WatchedImages no longer wanted that wait for their unfinished ImageUpdates. */
  waiting: { name: string; updates: string[] }[];
  reports: AutoWatchReport[];
}

interface Wanted {
  image: string;
  policies: Set<UpdatePolicy>;
  intervals: Set<string>;
}

/** `docker.io/library/nginx:1.27` for anything that runs or watches that tag; undefined if none. */
function tagKey(image: string): { key: string; familiar: string } | { digestOnly: true } | undefined {
  try {
    const ref = normalizeReference(image);
    if (ref.tag === undefined) return { digestOnly: true };
    const tagged = { domain: ref.domain, path: ref.path, tag: ref.tag };
    return { key: referenceString(tagged), familiar: familiarString(tagged) };
  } catch (error) {
    if (error instanceof InvalidReferenceError) return undefined;
    throw error;
  }
}

export function planAutoWatch(input: AutoWatchInput): AutoWatchPlan {
  const plan: AutoWatchPlan = { apply: [], delete: [], release: [], waiting: [], reports: [] };
  const ns = input.namespaceObject;
  const nsName = input.namespace;

  if (input.scope.mode !== 'off' && ns) {
    const nsWhere: Where = {
      kind: 'Namespace',
      name: nsName,
      ...(ns.metadata.uid ? { uid: ns.metadata.uid } : {}),
    };
    const label = watchValue(nsWhere, { label: ns.metadata.labels });
    if (label.report) plan.reports.push(label.report);
    for (const key of [AUTO_WATCH_ANNOTATION.updatePolicy, AUTO_WATCH_ANNOTATION.interval]) {
      const s = setting(nsWhere, ns.metadata.annotations, key);
      if (s.report) plan.reports.push(s.report);
    }
  }

  // Which tags watched workloads run, with every policy and interval asked for.
  const wanted = new Map<string, Wanted>();
  for (const workload of input.workloads) {
    const optIn = workloadOptIn(workload, ns, input.scope);
    if (!optIn.watched) {
      if (optIn.report) plan.reports.push(optIn.report);
      continue;
    }
    const pod = podSpecOf(workload);
    const where: Where = {
      kind: workload.kind,
      name: workload.metadata.name,
      ...(workload.metadata.uid ? { uid: workload.metadata.uid } : {}),
    };
    for (const [list, init] of [
      [pod?.initContainers, true],
      [pod?.containers, false],
    ] as const) {
      for (const c of list ?? []) {
        if (!c.image) continue;
        const container = `${init ? 'init container' : 'container'} ${c.name}`;
        const ref = tagKey(c.image);
        if (!ref || 'digestOnly' in ref) {
          plan.reports.push({
            on: where,
            reason: ref ? 'DigestOnlyImage' : 'InvalidImage',
            message: ref
              ? `${container} runs ${c.image} with no tag: there is no tag to watch, so it is not updated (write image: repo:tag@sha256:… to have the tag watched)`
              : `${container} runs ${JSON.stringify(c.image)}, not a valid image reference: not watched`,
          });
          continue;
        }
        let w = wanted.get(ref.key);
        if (!w) {
          w = { image: ref.familiar, policies: new Set(), intervals: new Set() };
          wanted.set(ref.key, w);
        }
        w.policies.add(optIn.updatePolicy);
        w.intervals.add(optIn.interval);
      }
    }
  }

  // A person's WatchedImage for the same tag wins: no generated twin.
  const generated = new Map<string, WatchedImage>();
  for (const wi of input.watchedImages) {
    if (isGenerated(wi)) {
      generated.set(wi.metadata.name, wi);
      continue;
    }
    const ref = tagKey(wi.spec.image);
    if (ref && 'key' in ref) wanted.delete(ref.key);
  }
  const taken = new Set(input.watchedImages.filter((wi) => !isGenerated(wi)).map((wi) => wi.metadata.name));

  const desired = new Map<string, GeneratedWatchedImage>();
  for (const [key, w] of [...wanted].sort(([a], [b]) => a.localeCompare(b))) {
    const name = generatedWatchedImageName(key);
    if (taken.has(name)) {
      plan.reports.push({
        on: { kind: WATCHED_IMAGE.kind, name },
        reason: 'WatchedImageNameTaken',
        message: `a WatchedImage named ${name} watches another image, so ${w.image} cannot be watched under that name; rename it or write a WatchedImage for ${w.image}`,
      });
      continue;
    }
    const spec: WatchedImageSpec = {
      image: w.image,
      kinds: [...ALL_KINDS],
      updatePolicy: CAUTION.find((p) => w.policies.has(p))!,
      interval: [...w.intervals].sort(
        (a, b) => parseDuration(a)! - parseDuration(b)! || a.localeCompare(b),
      )[0]!,
      suspend: false,
      historyLimit: DEFAULT_HISTORY_LIMIT,
    };
    desired.set(name, {
      apiVersion: API_VERSION,
      kind: WATCHED_IMAGE.kind,
      metadata: {
        name,
        namespace: nsName,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY_KUBEWATCHER },
        annotations: { [AUTO_WATCH_ANNOTATION.generatedSpec]: specHash(spec) },
      },
      spec,
    });
  }

  for (const [name, want] of desired) {
    const have = generated.get(name);
    // Being deleted (e.g. by a person, to have it made afresh): apply again once it is gone.
    if (have?.metadata.deletionTimestamp) continue;
    if (!have) {
      plan.apply.push(want);
    } else if (editedByPerson(have)) {
      plan.release.push(identity(have));
    } else if (
      have.metadata.annotations?.[AUTO_WATCH_ANNOTATION.generatedSpec] !==
      want.metadata.annotations[AUTO_WATCH_ANNOTATION.generatedSpec]
    ) {
      plan.apply.push(want);
    }
  }

  const unfinished = new Map<string, string[]>();
  for (const u of input.updates) {
    if (TERMINAL_PHASES.includes(phaseOf(u))) continue;
    const list = unfinished.get(u.spec.watchedImage) ?? [];
    list.push(u.metadata.name);
    unfinished.set(u.spec.watchedImage, list);
  }
  for (const [name, have] of [...generated].sort(([a], [b]) => a.localeCompare(b))) {
    if (desired.has(name) || have.metadata.deletionTimestamp) continue;
    if (editedByPerson(have)) {
      plan.release.push(identity(have));
      continue;
    }
    const pending = unfinished.get(name);
    if (pending) {
      plan.waiting.push({ name, updates: pending.sort() });
      continue;
    }
    plan.delete.push({
      ...identity(have),
      ...(have.metadata.resourceVersion ? { resourceVersion: have.metadata.resourceVersion } : {}),
    });
  }
  plan.release.sort((a, b) => a.name.localeCompare(b.name));
  return plan;
}

function identity(wi: WatchedImage): { name: string; uid?: string } {
  return { name: wi.metadata.name, ...(wi.metadata.uid ? { uid: wi.metadata.uid } : {}) };
}
