import {
  ANNOTATION,
  APPROVED_REASON,
  CONDITION_TYPE,
  type Condition,
  type ImageUpdate,
  type ImageUpdateStatus,
  kindsOf,
  kubeTime,
  matchWorkloads,
  newerThan,
  parseDuration,
  phaseOf,
  podSpecOf,
  UPDATE_READY_REASON as REASON,
  sameImage,
  setCondition,
  shortDigest,
  TERMINAL_PHASES,
  UPDATE_POLICY,
  type UpdatePolicy,
  updatePolicyOf,
  type WatchedImage,
  type WorkloadKind,
  type WorkloadLike,
} from '@kubewatcher/shared';
import { type RolloutWorkload, rolloutState } from './rollout.ts';
import { refusalMessage, refusedDigest, rollbackImage, scheduleUpdate } from './update-control.ts';
import { windowProblems } from './update-window.ts';

/**
 * The ImageUpdate state machine as a pure function: given the ImageUpdate, its WatchedImage, its
 * siblings and the workloads from the informer caches, decide the next status, the patches to make
 * and the Events to record. The reconciler gathers the input and applies the plan.
 *
 *   Pending ─┬─ Observe ──────────────────────────► Observed
 *            ├─ Manual, not approved ─► AwaitingApproval ─ approved ─┐
 *            └─ Auto ───────────────────────────────────────────────┴┬─ outside a window, too young ─► Scheduled ─┐
 *                                                                    └──────────────────────────────────────────┴► Applying ─► RollingOut ─► Succeeded | Failed
 *   RollingOut ── a rollout failed, spec.rollback OnFailure ──► RollingBack ─► RolledBack
 *   any phase before Applying, or once a newer update started ── a newer update of the same WatchedImage ──► Superseded
 */

export type Workload = WorkloadLike &
  RolloutWorkload & { metadata: { uid?: string; annotations?: Record<string, string> } };
export type WorkloadResult = NonNullable<ImageUpdateStatus['workloads']>[number];
type Phase = NonNullable<ImageUpdateStatus['phase']>;

const NOT_STARTED: readonly Phase[] = ['Pending', 'AwaitingApproval', 'Scheduled'];
/** The longest single wait for a scheduled start: re-planned then, so no timer outlives its reason. */
const MAX_SCHEDULED_WAIT_MS = 6 * 3_600_000;

export interface UpdateInput {
  update: ImageUpdate;
  /** The owning WatchedImage, undefined when it is gone. */
  watchedImage: WatchedImage | undefined;
  /** The other ImageUpdates of the same WatchedImage. */
  siblings: readonly ImageUpdate[];
  /** Workloads of the namespace, of every kind the WatchedImage selects. */
  workloads: readonly Workload[];
  now: Date;
  /** A backstop for rollouts that report no failure but never finish (StatefulSets, DaemonSets). */
  rolloutTimeoutMs: number;
}

export interface WorkloadPatch {
  kind: WorkloadKind;
  name: string;
  /** Containers to set, by name (strategic merge patch merges them by name). */
  containers: { name: string; image: string }[];
  initContainers: { name: string; image: string }[];
}

export interface PlannedEvent {
  /** `update` is the ImageUpdate; otherwise the workload `kind/name`. */
  on: 'update' | { kind: WorkloadKind; name: string };
  type: 'Normal' | 'Warning';
  reason: string;
  message: string;
}

export interface UpdatePlan {
  status: ImageUpdateStatus;
  patches: WorkloadPatch[];
  events: PlannedEvent[];
  /** Look again after this long even if nothing changes (rollouts in flight, timeouts). */
  requeueAfterMs?: number;
}

/** How a result's message starts when the API server refused the workload patch. */
export const PATCH_REFUSED = 'patch refused:';

/** The container image pinned to a digest, in the spelling the workload already uses. */
export function pinImage(current: string, digest: string): string {
  const at = current.indexOf('@');
  return `${at === -1 ? current : current.slice(0, at)}@${digest}`;
}

export function planUpdate(input: UpdateInput): UpdatePlan {
  const { update, watchedImage: wi, now } = input;
  const prev = update.status ?? {};
  const phase: Phase = phaseOf(update);
  const base: ImageUpdateStatus = {
    ...prev,
    observedGeneration: update.metadata.generation ?? 0,
    phase,
    ...(update.spec.fromDigest ? { from: shortDigest(update.spec.fromDigest) } : {}),
    to: shortDigest(update.spec.toDigest),
    workloads: prev.workloads ?? [],
    conditions: prev.conditions ?? [],
  };
  const plan: UpdatePlan = { status: base, patches: [], events: [] };
  if (TERMINAL_PHASES.includes(phase)) return finish(plan, now);
  // Only a Scheduled plan states a start time (planSchedule sets it again); any other outcome, a
  // revoked approval or a suspension included, must not leave a stale one in the STARTS column.
  delete plan.status.scheduledTime;

  if (!wi) {
    return complete(
      plan,
      'Failed',
      REASON.WatchedImageNotFound,
      `WatchedImage ${update.spec.watchedImage} no longer exists`,
      now,
    );
  }

  // Only the newest update of a WatchedImage is worth applying: older ones step aside.
  const newest = [update, ...input.siblings].reduce((a, b) => (newerThan(b, a) ? b : a));
  if (newest !== update && (NOT_STARTED.includes(phase) || startedPhase(newest))) {
    plan.status.supersededBy = newest.metadata.name;
    return complete(
      plan,
      'Superseded',
      REASON.Superseded,
      `superseded by the newer ImageUpdate ${newest.metadata.name}`,
      now,
    );
  }

  if (NOT_STARTED.includes(phase)) {
    if (wi.spec.suspend) {
      return progress(
        plan,
        'Pending',
        REASON.Suspended,
        `WatchedImage ${wi.metadata.name} is suspended`,
        now,
      );
    }
    const policy = updatePolicyOf(wi.spec);
    const annotations = update.metadata.annotations ?? {};
    const rejectedBy =
      annotations[ANNOTATION.decision] === 'rejected'
        ? (annotations[ANNOTATION.decidedBy] ?? 'someone')
        : undefined;
    setApproved(plan, policy, update.spec.approved === true, now, rejectedBy);
    if (policy === UPDATE_POLICY.Observe) {
      plan.status.workloads = planResults(update, wi, input.workloads).map((r) => ({
        ...r,
        state: 'Skipped',
        message: 'updatePolicy Observe: recorded, not applied',
      }));
      return complete(
        plan,
        'Observed',
        REASON.Observed,
        `${describe(update)} observed; updatePolicy Observe applies nothing`,
        now,
      );
    }
    if (policy === UPDATE_POLICY.Manual && !update.spec.approved) {
      if (phase !== 'AwaitingApproval') {
        plan.events.push({
          on: 'update',
          type: 'Normal',
          reason: 'AwaitingApproval',
          message: `${describe(update)} waits for approval: kubectl patch iu ${update.metadata.name} --type=merge -p '{"spec":{"approved":true}}'`,
        });
      }
      return progress(
        plan,
        'AwaitingApproval',
        REASON.AwaitingApproval,
        rejectedBy
          ? `rejected by ${rejectedBy}: not applied unless approved later; a newer update supersedes it`
          : 'waiting for spec.approved to be true',
        now,
      );
    }
    // The tag has not moved on since this digest was rolled back: never apply it again.
    const refused = refusedDigest(oldestFirst([...input.siblings, update]));
    if (refused && refused.digest === update.spec.toDigest) {
      return complete(plan, 'Failed', REASON.DigestRefused, refusalMessage(refused), now);
    }
    const scheduled = planSchedule(plan, update, wi, now);
    if (scheduled) return scheduled;
    const results = planResults(update, wi, input.workloads);
    plan.status.workloads = results;
    plan.status.appliedTime = now.toISOString();
    if (results.length === 0) {
      return complete(
        plan,
        'Succeeded',
        REASON.NoWorkloads,
        `no ${kindsOf(wi.spec).join('/')} in the namespace runs ${wi.spec.image}`,
        now,
      );
    }
    plan.events.push({
      on: 'update',
      type: 'Normal',
      reason: 'Applying',
      message: `applying ${describe(update)} to ${results.length} container(s)`,
    });
    return progress(plan, 'Applying', REASON.Applying, `patching ${results.length} container(s)`, now);
  }

  if (phase === 'Applying') return planApply(plan, update, wi, input, now);
  if (phase === 'RollingBack') return planRollback(plan, update, input, now);
  return planRollout(plan, update, wi, input, now);
}

/** Update windows and minimum age: undefined when the update may start now, else the Scheduled plan. */
function planSchedule(
  plan: UpdatePlan,
  update: ImageUpdate,
  wi: WatchedImage,
  now: Date,
): UpdatePlan | undefined {
  const problems = windowProblems(wi.spec.updateWindows);
  if (problems.length > 0) {
    return progress(plan, 'Scheduled', REASON.InvalidUpdateWindows, problems.join('; '), now);
  }
  const decision = scheduleUpdate({
    updateWindows: wi.spec.updateWindows,
    minimumAgeMs: wi.spec.minimumAge ? parseDuration(wi.spec.minimumAge) : undefined,
    detectedTime: new Date(
      update.spec.detectedTime ?? String(update.metadata.creationTimestamp ?? now.toISOString()),
    ),
    ignoreUpdateWindows: update.spec.ignoreUpdateWindows,
    now,
  });
  if (decision.start) return undefined;
  const startTime = decision.startTime ? kubeTime(decision.startTime) : undefined;
  if (update.status?.phase !== 'Scheduled' || update.status.scheduledTime !== startTime) {
    plan.events.push({
      on: 'update',
      type: 'Normal',
      reason: 'Scheduled',
      message: `${describe(update)} ${decision.message}`,
    });
  }
  if (startTime) plan.status.scheduledTime = startTime;
  // The controller wakes for the start: one delayed requeue, no polling.
  const wait = decision.startTime ? decision.startTime.getTime() - now.getTime() : undefined;
  return progress(
    plan,
    'Scheduled',
    decision.reason,
    decision.message,
    now,
    wait === undefined ? undefined : Math.min(Math.max(wait, 1000), MAX_SCHEDULED_WAIT_MS),
  );
}

function oldestFirst(updates: readonly ImageUpdate[]): ImageUpdate[] {
  return [...updates].sort((a, b) => (newerThan(a, b) ? 1 : newerThan(b, a) ? -1 : 0));
}

/** The Approved condition: what the WatchedImage's policy (and spec.approved) allow. */
function setApproved(
  plan: UpdatePlan,
  policy: UpdatePolicy,
  approved: boolean,
  now: Date,
  rejectedBy: string | undefined,
): void {
  const [status, reason, message] =
    policy === UPDATE_POLICY.Observe
      ? (['False', APPROVED_REASON.ObserveOnly, 'updatePolicy Observe: recorded, never applied'] as const)
      : policy === UPDATE_POLICY.Manual && !approved && rejectedBy
        ? (['False', APPROVED_REASON.Rejected, `rejected by ${rejectedBy}`] as const)
        : policy === UPDATE_POLICY.Manual && !approved
          ? ([
              'False',
              APPROVED_REASON.AwaitingApproval,
              'updatePolicy Manual: set spec.approved to true to apply',
            ] as const)
          : policy === UPDATE_POLICY.Manual
            ? (['True', APPROVED_REASON.ManuallyApproved, 'spec.approved is true'] as const)
            : (['True', APPROVED_REASON.AutoApproved, 'updatePolicy Auto'] as const);
  plan.status.conditions = setCondition(
    plan.status.conditions ?? [],
    {
      type: CONDITION_TYPE.Approved,
      status,
      reason,
      message,
      observedGeneration: plan.status.observedGeneration ?? 0,
    },
    now,
  );
}

function startedPhase(u: ImageUpdate): boolean {
  const p = u.status?.phase;
  return (
    p === 'Applying' ||
    p === 'RollingOut' ||
    p === 'Succeeded' ||
    p === 'Failed' ||
    p === 'RollingBack' ||
    p === 'RolledBack'
  );
}

/** One result per matched container, recorded before anything is patched. */
function planResults(
  update: ImageUpdate,
  wi: WatchedImage,
  workloads: readonly Workload[],
): WorkloadResult[] {
  const results: WorkloadResult[] = [];
  for (const { workload, containers } of matchWorkloads(wi.spec, workloads)) {
    for (const c of containers) {
      results.push({
        kind: workload.kind,
        name: workload.metadata.name,
        container: c.name,
        previousImage: c.image,
        newImage: pinImage(c.image, update.spec.toDigest),
        state: 'Pending',
        message: c.init ? 'init container' : '',
      });
    }
  }
  return results;
}

function findWorkload(workloads: readonly Workload[], kind: string, name: string): Workload | undefined {
  return workloads.find((w) => w.kind === kind && w.metadata.name === name);
}

function currentImage(w: Workload, container: string): string | undefined {
  const pod = podSpecOf(w);
  return [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])].find((c) => c.name === container)
    ?.image;
}

function isInit(w: Workload, container: string): boolean {
  return (podSpecOf(w)?.initContainers ?? []).some((c) => c.name === container);
}

/** Adds "set this container to `image`" to the workload's patch (one patch per workload). */
function setImage(patches: Map<string, WorkloadPatch>, w: Workload, r: WorkloadResult, image: string): void {
  const key = `${r.kind}/${r.name}`;
  const patch = patches.get(key) ?? { kind: r.kind, name: r.name, containers: [], initContainers: [] };
  (isInit(w, r.container) ? patch.initContainers : patch.containers).push({ name: r.container, image });
  patches.set(key, patch);
}

/** Applying: patch every planned container that is not on the new image yet; skip what others changed. */
function planApply(
  plan: UpdatePlan,
  update: ImageUpdate,
  wi: WatchedImage,
  input: UpdateInput,
  now: Date,
): UpdatePlan {
  const patches = new Map<string, WorkloadPatch>();
  plan.status.workloads = (plan.status.workloads ?? []).map((r) => {
    if (r.state !== 'Pending') return r;
    const w = findWorkload(input.workloads, r.kind, r.name);
    if (!w)
      return { ...r, state: 'Skipped', message: `${r.kind} ${r.name} was deleted before it was patched` };
    const image = currentImage(w, r.container);
    if (image === r.newImage) return { ...r, state: 'Patched', message: 'on the new digest' };
    if (!image || !sameImage(image, wi.spec.image)) {
      return {
        ...r,
        state: 'Skipped',
        message: `container ${r.container} now runs ${image ?? 'nothing'}: changed by someone else, left alone`,
      };
    }
    setImage(patches, w, r, r.newImage!);
    plan.events.push({
      on: { kind: r.kind, name: r.name },
      type: 'Normal',
      reason: 'ImagePinned',
      message: `container ${r.container} set to ${r.newImage} by ImageUpdate ${update.metadata.name}`,
    });
    return { ...r, state: 'Patched', message: 'patched' };
  });
  plan.patches = [...patches.values()];
  const patchedAny = plan.status.workloads.some((r) => r.state === 'Patched');
  if (!patchedAny) return settle(plan, update, wi, now);
  return progress(
    plan,
    'RollingOut',
    REASON.RollingOut,
    `waiting for ${countState(plan, 'Patched')} workload(s) to roll out`,
    now,
    5_000,
  );
}

/** RollingOut: follow each patched workload to the end of its rollout. */
function planRollout(
  plan: UpdatePlan,
  update: ImageUpdate,
  wi: WatchedImage,
  input: UpdateInput,
  now: Date,
): UpdatePlan {
  const applied = Date.parse(plan.status.appliedTime ?? now.toISOString());
  const timedOut = now.getTime() - applied > input.rolloutTimeoutMs;
  plan.status.workloads = (plan.status.workloads ?? []).map((r) => {
    if (r.state !== 'Patched') return r;
    const w = findWorkload(input.workloads, r.kind, r.name);
    if (!w) return { ...r, state: 'Skipped', message: `${r.kind} ${r.name} was deleted during the rollout` };
    const image = currentImage(w, r.container);
    if (image !== r.newImage) {
      return {
        ...r,
        state: 'Skipped',
        message: `container ${r.container} now runs ${image ?? 'nothing'}: changed by someone else, left alone`,
      };
    }
    const state = rolloutState(w);
    if (state.done) {
      plan.events.push({
        on: { kind: r.kind, name: r.name },
        type: 'Normal',
        reason: 'RolloutSucceeded',
        message: `rolled out ${r.newImage}: ${state.message}`,
      });
      return { ...r, state: 'RolledOut', message: state.message };
    }
    if (state.failed || timedOut) {
      const message = state.failed
        ? state.message
        : `rollout not finished after ${Math.round(input.rolloutTimeoutMs / 1000)}s: ${state.message}`;
      plan.events.push({
        on: { kind: r.kind, name: r.name },
        type: 'Warning',
        reason: 'RolloutFailed',
        message,
      });
      return { ...r, state: 'Failed', message };
    }
    return { ...r, message: state.message };
  });
  if (plan.status.workloads.some((r) => r.state === 'Patched')) {
    return progress(
      plan,
      'RollingOut',
      REASON.RollingOut,
      `waiting for ${countState(plan, 'Patched')} workload(s) to roll out`,
      now,
      5_000,
    );
  }
  return settle(plan, update, wi, now);
}

/**
 * Whether a result failed in its rollout, the signal a rollback answers: the Deployment's own
 * ProgressDeadlineExceeded (what `kubectl rollout status` stops on), or the controller's rollout
 * timeout for kinds that report no failure. A refused patch changed nothing, so it is not one.
 */
export function rolloutFailed(r: WorkloadResult): boolean {
  return r.state === 'Failed' && !r.message?.startsWith(PATCH_REFUSED);
}

/** Every result has ended: the update succeeded unless one failed; a failed rollout may roll back. */
function settle(plan: UpdatePlan, update: ImageUpdate, wi: WatchedImage, now: Date): UpdatePlan {
  const failed = (plan.status.workloads ?? []).filter((r) => r.state === 'Failed');
  if (failed.length > 0) {
    const first = failed.find(rolloutFailed) ?? failed[0]!;
    const refused = failed.some((r) => r.message?.startsWith(PATCH_REFUSED));
    const message = `${failed.length} workload(s) failed; ${first.kind} ${first.name}: ${first.message}`;
    if (wi.spec.rollback === 'OnFailure' && failed.some(rolloutFailed)) {
      // Recorded before any patch, as Applying is: a crash in between resumes the rollback.
      plan.status.failureMessage = message;
      plan.events.push({
        on: 'update',
        type: 'Warning',
        reason: 'RollingBack',
        message: `${describe(update)} failed, rolling back (spec.rollback OnFailure): ${message}`,
      });
      return progress(plan, 'RollingBack', REASON.RollingBack, `rolling back: ${message}`, now);
    }
    return complete(plan, 'Failed', refused ? REASON.PatchFailed : REASON.RolloutFailed, message, now);
  }
  const rolled = countState(plan, 'RolledOut');
  return complete(
    plan,
    'Succeeded',
    REASON.RolledOut,
    `${describe(update)}: ${rolled} container(s) rolled out`,
    now,
  );
}

/**
 * RollingBack: set every container the update changed back to its previous image (pinned, see
 * rollbackImage). A container already back is done, so a crash after the patch patches nothing
 * twice; one that someone else changed since is left alone.
 */
function planRollback(plan: UpdatePlan, update: ImageUpdate, input: UpdateInput, now: Date): UpdatePlan {
  const patches = new Map<string, WorkloadPatch>();
  plan.status.workloads = (plan.status.workloads ?? []).map((r) => {
    const changedByUs = r.state === 'Patched' || r.state === 'RolledOut' || rolloutFailed(r);
    if (!changedByUs) return r;
    if (!r.previousImage) {
      return { ...r, state: 'Skipped', message: 'previous image unknown: not rolled back' };
    }
    const target = rollbackImage(r.previousImage, update.spec.fromDigest);
    const w = findWorkload(input.workloads, r.kind, r.name);
    if (!w)
      return { ...r, state: 'Skipped', message: `${r.kind} ${r.name} was deleted before it was rolled back` };
    const image = currentImage(w, r.container);
    const done = { ...r, state: 'RolledBack' as const, message: `rolled back to ${target}` };
    if (image === target) return done;
    if (image !== r.newImage) {
      return {
        ...r,
        state: 'Skipped',
        message: `container ${r.container} now runs ${image ?? 'nothing'}: changed by someone else, not rolled back`,
      };
    }
    setImage(patches, w, r, target);
    plan.events.push({
      on: { kind: r.kind, name: r.name },
      type: 'Warning',
      reason: 'RolledBack',
      message: `container ${r.container} set back to ${target} by ImageUpdate ${update.metadata.name}: the rollout of ${r.newImage} failed`,
    });
    return done;
  });
  plan.patches = [...patches.values()];
  const back = countState(plan, 'RolledBack');
  return complete(
    plan,
    'RolledBack',
    REASON.RolledBack,
    `${back} container(s) rolled back to their previous images; ${plan.status.failureMessage ?? 'the rollout failed'}`,
    now,
  );
}

function countState(plan: UpdatePlan, state: WorkloadResult['state']): number {
  return (plan.status.workloads ?? []).filter((r) => r.state === state).length;
}

function progress(
  plan: UpdatePlan,
  phase: Phase,
  reason: string,
  message: string,
  now: Date,
  requeueAfterMs?: number,
): UpdatePlan {
  plan.status.phase = phase;
  plan.status.conditions = setCondition(
    plan.status.conditions ?? [],
    readyCondition(plan, 'Unknown', reason, message),
    now,
  );
  if (requeueAfterMs !== undefined) plan.requeueAfterMs = requeueAfterMs;
  return finish(plan, now);
}

function complete(plan: UpdatePlan, phase: Phase, reason: string, message: string, now: Date): UpdatePlan {
  plan.status.phase = phase;
  plan.status.completedTime = plan.status.completedTime ?? now.toISOString();
  const ok = phase === 'Succeeded' || phase === 'Observed';
  plan.status.conditions = setCondition(
    plan.status.conditions ?? [],
    readyCondition(plan, ok ? 'True' : 'False', reason, message),
    now,
  );
  const warning = phase === 'Failed' || phase === 'RolledBack';
  plan.events.push({ on: 'update', type: warning ? 'Warning' : 'Normal', reason: phase, message });
  return finish(plan, now);
}

function readyCondition(
  plan: UpdatePlan,
  status: Condition['status'],
  reason: string,
  message: string,
): Omit<Condition, 'lastTransitionTime'> {
  return {
    type: CONDITION_TYPE.Ready,
    status,
    reason,
    message,
    observedGeneration: plan.status.observedGeneration ?? 0,
  };
}

/** The WORKLOADS column: containers rolled out of those the update applies to. */
function finish(plan: UpdatePlan, _now: Date): UpdatePlan {
  const results = plan.status.workloads ?? [];
  const done = results.filter((r) => r.state === 'RolledOut').length;
  const counted = results.filter((r) => r.state !== 'Skipped').length;
  plan.status.progress = `${done}/${counted}`;
  return plan;
}

function describe(update: ImageUpdate): string {
  return `${update.spec.image} → ${shortDigest(update.spec.toDigest)}`;
}
