import {
  CONDITION_TYPE,
  type Condition,
  historyLimitOf,
  type ImageUpdate,
  kindsOf,
  matchWorkloads,
  newerThan,
  phaseOf,
  READY_REASON,
  setCondition,
  TERMINAL_PHASES,
  validateWatchedImage,
  type WatchedImage,
  type WatchedImageStatus,
  type WorkloadLike,
} from '@kubewatcher/shared';
import { refusedDigest } from './update-control.ts';
import { windowProblems } from './update-window.ts';

/**
 * The WatchedImage's controller-owned status as a pure function of the WatchedImage, the workloads
 * in its namespace and its ImageUpdates: which workloads match, the newest update, the summary Ready
 * condition, and which old updates fall outside `historyLimit`.
 */

/** The status fields the controller owns (the poller owns the rest: docs/architecture.md#who-writes-what). */
export type ControllerStatus = Pick<
  WatchedImageStatus,
  'observedGeneration' | 'workloads' | 'workloadCount' | 'latestUpdate' | 'refusedDigest'
> & {
  conditions: Condition[];
};

export interface WatchedImagePlan {
  status: ControllerStatus;
  /** ImageUpdates to delete: finished ones beyond historyLimit, oldest first. */
  prune: string[];
}

/**
 * The verdict on a WatchedImage's spec, once per spec object. Informer objects are frozen and replaced
 * when they change, so a WatchedImage reconciled again and again for its workloads' sake (each status
 * change of 500 Deployments in a rollout) is validated once, not every time. The status is left out:
 * the schema validates it on write, and a list of 500 workloads made each validation cost ~20 ms.
 */
const specVerdicts = new WeakMap<object, ReturnType<typeof validateWatchedImage>>();
function validateSpec(wi: WatchedImage): ReturnType<typeof validateWatchedImage> {
  let verdict = specVerdicts.get(wi.spec);
  if (!verdict) {
    const { status: _status, ...withoutStatus } = wi;
    verdict = validateWatchedImage(withoutStatus);
    specVerdicts.set(wi.spec, verdict);
  }
  return verdict;
}

export function planWatchedImage(
  wi: WatchedImage,
  workloads: readonly WorkloadLike[],
  updates: readonly ImageUpdate[],
  now: Date,
): WatchedImagePlan {
  const generation = wi.metadata.generation ?? 0;
  const previous = (wi.status?.conditions ?? []).filter((c) => c.type === CONDITION_TYPE.Ready);
  const ready = (status: Condition['status'], reason: string, message: string) =>
    setCondition(
      previous,
      { type: CONDITION_TYPE.Ready, status, reason, message, observedGeneration: generation },
      now,
    ).filter((c) => c.type === CONDITION_TYPE.Ready);

  const newestFirst = [...updates].sort((a, b) => (newerThan(a, b) ? -1 : newerThan(b, a) ? 1 : 0));
  const latest = newestFirst[0]?.metadata.name;
  const refused = refusedDigest([...newestFirst].reverse())?.digest;
  const limit = historyLimitOf(wi.spec);
  const prune = newestFirst
    .slice(limit)
    .filter((u) => TERMINAL_PHASES.includes(phaseOf(u)))
    .map((u) => u.metadata.name)
    .reverse();

  const validation = validateSpec(wi);
  // What the schema cannot know: whether this controller's time zone database has the zone.
  const errors = validation.ok ? windowProblems(wi.spec.updateWindows) : validation.errors;
  if (errors.length > 0) {
    return {
      status: {
        observedGeneration: generation,
        workloads: [],
        workloadCount: 0,
        ...(latest ? { latestUpdate: latest } : {}),
        ...(refused ? { refusedDigest: refused } : {}),
        conditions: ready('False', READY_REASON.InvalidSpec, errors.join('; ')),
      },
      prune,
    };
  }

  const matches = matchWorkloads(wi.spec, workloads);
  const base = {
    observedGeneration: generation,
    workloads: matches.map((m) => ({
      kind: m.workload.kind,
      name: m.workload.metadata.name,
      containers: m.containers.map((c) => c.name),
    })),
    workloadCount: matches.length,
    ...(latest ? { latestUpdate: latest } : {}),
    ...(refused ? { refusedDigest: refused } : {}),
  };

  const kinds = kindsOf(wi.spec).join('/');
  const resolved = wi.status?.conditions?.find((c) => c.type === CONDITION_TYPE.Resolved);
  let conditions: Condition[];
  if (wi.spec.suspend) {
    conditions = ready('False', READY_REASON.Suspended, 'spec.suspend is true: no checks, no updates');
  } else if (resolved?.status === 'False') {
    // The poller's failure is the most useful thing to show in READY.
    conditions = ready('False', resolved.reason, resolved.message);
  } else if (matches.length === 0) {
    conditions = ready(
      'False',
      READY_REASON.NoWorkloads,
      `no ${kinds} in namespace ${wi.metadata.namespace} runs ${wi.spec.image}`,
    );
  } else if (!resolved) {
    conditions = ready(
      'Unknown',
      READY_REASON.AwaitingFirstCheck,
      `${matches.length} workload(s) found; waiting for the poller's first check`,
    );
  } else {
    const names = matches.map((m) => `${m.workload.kind}/${m.workload.metadata.name}`);
    const shown =
      names.length > 5 ? `${names.slice(0, 5).join(', ')} and ${names.length - 5} more` : names.join(', ');
    conditions = ready(
      'True',
      READY_REASON.WorkloadsFound,
      `watching ${matches.length} workload(s): ${shown}`,
    );
  }
  return { status: { ...base, conditions }, prune };
}
