/**
 * Condition types and reasons of the Kubewatcher kinds, and the pure helpers that keep a conditions
 * list the way Kubernetes expects: one entry per type, lastTransitionTime moving only when the
 * status flips.
 */
import type { Condition, ConditionStatus } from './meta.ts';

export const CONDITION_TYPE = {
  /** WatchedImage, written by the poller: whether the last registry check worked. */
  Resolved: 'Resolved',
  /** WatchedImage, written by the controller: the summary. ImageUpdate: finished rolling out. */
  Ready: 'Ready',
  /** ImageUpdate: whether the update may be applied. */
  Approved: 'Approved',
} as const;
export type ConditionType = (typeof CONDITION_TYPE)[keyof typeof CONDITION_TYPE];

/** Reasons of the WatchedImage `Resolved` condition (poller). */
export const RESOLVED_REASON = {
  /** True: the registry answered with a digest. */
  Resolved: 'Resolved',
  /** False: network error, timeout or 5xx from the registry. */
  RegistryUnreachable: 'RegistryUnreachable',
  /** False: 401/403, or the named pull secret is missing or unusable. */
  Unauthorized: 'Unauthorized',
  /** False: the repository or tag does not exist. */
  NotFound: 'NotFound',
  /** False: 429 from the registry; the next check waits for the window. */
  RateLimited: 'RateLimited',
  /** False: the reference cannot be resolved as written. */
  InvalidImage: 'InvalidImage',
  /** Unknown: spec.suspend is true, nothing is checked. */
  Suspended: 'Suspended',
} as const;
export type ResolvedReason = (typeof RESOLVED_REASON)[keyof typeof RESOLVED_REASON];

/** Reasons of the WatchedImage `Ready` condition (controller). */
export const READY_REASON = {
  /** True: the spec is valid and at least one workload matches. */
  WorkloadsFound: 'WorkloadsFound',
  /** False: the spec is valid but no workload runs the image and matches the selector. */
  NoWorkloads: 'NoWorkloads',
  /** False: something the schema cannot check is wrong (reported, not retried). */
  InvalidSpec: 'InvalidSpec',
  /** False: spec.suspend is true. */
  Suspended: 'Suspended',
} as const;
export type ReadyReason = (typeof READY_REASON)[keyof typeof READY_REASON];

/** Reasons of the ImageUpdate `Approved` condition. */
export const APPROVED_REASON = {
  /** True: the WatchedImage's policy is Auto. */
  AutoApproved: 'AutoApproved',
  /** True: spec.approved was set (policy Manual). */
  ManuallyApproved: 'ManuallyApproved',
  /** False: policy Manual and spec.approved is false. */
  AwaitingApproval: 'AwaitingApproval',
  /** False: policy Observe; the update is recorded and never applied. */
  ObserveOnly: 'ObserveOnly',
} as const;
export type ApprovedReason = (typeof APPROVED_REASON)[keyof typeof APPROVED_REASON];

/** Reasons of the ImageUpdate `Ready` condition (True only when every workload rolled out). */
export const UPDATE_READY_REASON = {
  /** Unknown: not applied yet (pending or awaiting approval). */
  NotApplied: 'NotApplied',
  /** Unknown: patching workloads. */
  Applying: 'Applying',
  /** Unknown: workloads patched, rollouts in progress. */
  RollingOut: 'RollingOut',
  /** True: every workload rolled out onto the new digest. */
  RolledOut: 'RolledOut',
  /** False: a workload could not be patched. */
  PatchFailed: 'PatchFailed',
  /** False: a rollout failed or exceeded its progress deadline. */
  RolloutFailed: 'RolloutFailed',
  /** False: no workload matched when the update was applied. */
  NoWorkloads: 'NoWorkloads',
  /** False: a newer ImageUpdate replaced this one before it was applied. */
  Superseded: 'Superseded',
  /** False: policy Observe; recorded, never applied. */
  Observed: 'Observed',
} as const;
export type UpdateReadyReason = (typeof UPDATE_READY_REASON)[keyof typeof UPDATE_READY_REASON];

/** What a writer states about a condition; setCondition supplies lastTransitionTime. */
export interface ConditionUpdate {
  type: string;
  status: ConditionStatus;
  reason: string;
  message: string;
  observedGeneration?: number;
}

/** A metav1.Time string: RFC 3339 in UTC with whole seconds, as the API server writes it. */
export function kubeTime(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/**
 * `conditions` with `next` set: replaces the entry of the same type in place (or appends one),
 * keeping its lastTransitionTime unless the status flips. Pure: returns a new array.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  next: ConditionUpdate,
  now: Date,
): Condition[] {
  const list = conditions ?? [];
  const index = list.findIndex((condition) => condition.type === next.type);
  const previous = index === -1 ? undefined : list[index];
  const condition: Condition = {
    type: next.type,
    status: next.status,
    ...(next.observedGeneration === undefined ? {} : { observedGeneration: next.observedGeneration }),
    lastTransitionTime:
      previous !== undefined && previous.status === next.status ? previous.lastTransitionTime : kubeTime(now),
    reason: next.reason,
    message: next.message,
  };
  if (index === -1) return [...list, condition];
  return list.map((existing, i) => (i === index ? condition : existing));
}

/** The condition of `type`, if present. */
export function findCondition(
  conditions: readonly Condition[] | undefined,
  type: string,
): Condition | undefined {
  return conditions?.find((condition) => condition.type === type);
}

/** True when the condition of `type` is present with status True. */
export function isConditionTrue(conditions: readonly Condition[] | undefined, type: string): boolean {
  return findCondition(conditions, type)?.status === 'True';
}
