/**
 * Condition types and reasons of the Kubewatcher kinds, and the pure helpers that keep a conditions
 * list the way Kubernetes expects: one entry per type, lastTransitionTime moving only when the
 * status flips, and messages bounded (boundMessage).
 */
import { boundMessage } from '../message.ts';
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

/** The `Resolved` reasons a registry lookup itself can end with (the registry client's failures). */
export const REGISTRY_FAILURE_REASON = {
  /** False: connection refused, DNS, TLS or timeout: the registry could not be reached. */
  RegistryUnreachable: 'RegistryUnreachable',
  /** False: the registry kept answering 5xx (after retries with backoff) or something unexpected. */
  RegistryError: 'RegistryError',
  /** False: 401/403: anonymous access refused or the credentials were rejected. */
  Unauthorized: 'Unauthorized',
  /** False: the repository or tag does not exist. */
  NotFound: 'NotFound',
  /** False: 429 from the registry; it is asked nothing more until its pause ends (status.rateLimit.pausedUntil). */
  RateLimited: 'RateLimited',
} as const;
export type RegistryFailureReason = (typeof REGISTRY_FAILURE_REASON)[keyof typeof REGISTRY_FAILURE_REASON];

/** Reasons of the WatchedImage `Resolved` condition (poller). */
export const RESOLVED_REASON = {
  /** True: the registry answered with a digest. */
  Resolved: 'Resolved',
  ...REGISTRY_FAILURE_REASON,
  /** False: a secret named in spec.pullSecrets does not exist. */
  SecretNotFound: 'SecretNotFound',
  /** False: a pull secret could not be read as a docker config. */
  InvalidCredentials: 'InvalidCredentials',
  /** False: the reference cannot be resolved as written. */
  InvalidImage: 'InvalidImage',
  /**
   * False: the tag moved but its ImageUpdate could not be created (a quota, a denying webhook): the
   * change is not recorded as the baseline, so the next check, after spec.interval, tries again.
   */
  ImageUpdateFailed: 'ImageUpdateFailed',
} as const;
export type ResolvedReason = (typeof RESOLVED_REASON)[keyof typeof RESOLVED_REASON];

/**
 * Reasons of the WatchedImage `Ready` condition (controller). When the poller's `Resolved` is False,
 * Ready is False with Resolved's reason and message, the most useful thing to show in READY.
 */
export const READY_REASON = {
  /** True: the spec is valid, the last check worked and at least one workload matches. */
  WorkloadsFound: 'WorkloadsFound',
  /** False: the spec is valid but no workload runs the image and matches the selector. */
  NoWorkloads: 'NoWorkloads',
  /** Unknown: workloads match, the poller has not checked the registry yet. */
  AwaitingFirstCheck: 'AwaitingFirstCheck',
  /** False: something the schema cannot check is wrong (reported, not retried). */
  InvalidSpec: 'InvalidSpec',
  /** False: spec.suspend is true. */
  Suspended: 'Suspended',
} as const;
export type ReadyReason = (typeof READY_REASON)[keyof typeof READY_REASON];

/** Reasons of the ImageUpdate `Approved` condition (controller). */
export const APPROVED_REASON = {
  /** True: the WatchedImage's policy is Auto. */
  AutoApproved: 'AutoApproved',
  /** True: spec.approved was set (policy Manual). */
  ManuallyApproved: 'ManuallyApproved',
  /** False: policy Manual and spec.approved is false. */
  AwaitingApproval: 'AwaitingApproval',
  /** False: policy Manual and someone rejected it (annotation kubewatcher.io/decision: rejected). */
  Rejected: 'Rejected',
  /** False: policy Observe; the update is recorded and never applied. */
  ObserveOnly: 'ObserveOnly',
} as const;
export type ApprovedReason = (typeof APPROVED_REASON)[keyof typeof APPROVED_REASON];

/** Reasons of the ImageUpdate `Ready` condition (True only when every workload rolled out). */
export const UPDATE_READY_REASON = {
  /** Unknown: policy Manual, waiting for spec.approved. */
  AwaitingApproval: 'AwaitingApproval',
  /** Unknown: the WatchedImage is suspended; the update waits. */
  Suspended: 'Suspended',
  /** Unknown: phase Scheduled, waiting for the minimum age of the digest (spec.minimumAge). */
  MinimumAge: 'MinimumAge',
  /** Unknown: phase Scheduled, waiting for the next of spec.updateWindows to open. */
  OutsideUpdateWindow: 'OutsideUpdateWindow',
  /** Unknown: spec.updateWindows name a time zone the controller does not know; the update waits. */
  InvalidUpdateWindows: 'InvalidUpdateWindows',
  /** Unknown: patching workloads. */
  Applying: 'Applying',
  /** Unknown: workloads patched, rollouts in progress. */
  RollingOut: 'RollingOut',
  /** True: every workload rolled out onto the new digest. */
  RolledOut: 'RolledOut',
  /** True: no workload matched when the update was applied: nothing to do. */
  NoWorkloads: 'NoWorkloads',
  /** False: the API server refused a workload patch (forbidden, invalid, denied by a webhook). */
  PatchFailed: 'PatchFailed',
  /** False: a rollout failed, exceeded its progress deadline or the controller's rollout timeout. */
  RolloutFailed: 'RolloutFailed',
  /** Unknown: the rollout failed and spec.rollback is OnFailure: putting the previous images back. */
  RollingBack: 'RollingBack',
  /** False: the rollout failed and the workloads were put back on their previous images. */
  RolledBack: 'RolledBack',
  /** False: the digest was rolled back by an earlier ImageUpdate and the tag has not moved on since. */
  DigestRefused: 'DigestRefused',
  /** False: the WatchedImage was deleted. */
  WatchedImageNotFound: 'WatchedImageNotFound',
  /**
   * False: the update's owner is not its WatchedImage (another uid: made by someone other than the
   * poller, or the WatchedImage was deleted and created again).
   */
  NotOwned: 'NotOwned',
  /** False: the WatchedImage watches another image than the update names. */
  ImageChanged: 'ImageChanged',
  /** False: toDigest is not the digest the poller last saw behind the WatchedImage's tag. */
  DigestMismatch: 'DigestMismatch',
  /** Unknown: the poller created the update and has not recorded its digest on the WatchedImage yet. */
  WaitingForBaseline: 'WaitingForBaseline',
  /**
   * Unknown: an older ImageUpdate of the same WatchedImage is still patching workloads (Applying,
   * RollingBack); this one starts once that one has finished or stepped aside.
   */
  WaitingForOlderUpdate: 'WaitingForOlderUpdate',
  /**
   * Unknown: the poller recorded a newer digest whose ImageUpdate the controller has not seen yet
   * (its cache is catching up); that update supersedes this one once seen.
   */
  WaitingForNewerUpdate: 'WaitingForNewerUpdate',
  /** False: a newer ImageUpdate of the same WatchedImage replaced this one before it finished. */
  Superseded: 'Superseded',
  /** True: policy Observe; recorded, never applied. */
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
    // Every condition either writer sets passes here: bounded and on one line, so a registry's or an
    // API server's text can never make a status write fail (and be retried forever) by its size.
    message: boundMessage(next.message),
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
