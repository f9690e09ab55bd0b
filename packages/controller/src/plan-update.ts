import {
  ANNOTATION,
  APPROVED_REASON,
  boundMessage,
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
  WATCHED_IMAGE,
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
 *   any phase up to Applying, or once a newer update started ── a newer update of the same WatchedImage ──► Superseded
 *   Pending ── an older update of the same WatchedImage is Applying or RollingBack ──► waits (Pending)
 *   Pending, AwaitingApproval, Scheduled, Applying ── not its WatchedImage's (see `ownership`) ──► Failed
 *
 * The patches of a plan are made by the reconciler, which hands their answers back to
 * `planPatchAnswers`: what a refused or vanished workload means is decided here too.
 */

export type Workload = WorkloadLike &
  RolloutWorkload & { metadata: { uid?: string; annotations?: Record<string, string> } };
export type WorkloadResult = NonNullable<ImageUpdateStatus['workloads']>[number];
type Phase = NonNullable<ImageUpdateStatus['phase']>;

const NOT_STARTED: readonly Phase[] = ['Pending', 'AwaitingApproval', 'Scheduled'];
/** The phases whose plans patch workloads. */
const PATCHING: readonly Phase[] = ['Applying', 'RollingBack'];
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

/** What the API server answered one workload patch: nothing (it was applied) or its error. */
export interface PatchAnswer {
  kind: WorkloadKind;
  name: string;
  /** Absent when the patch was applied. */
  error?: { code: number | undefined; message: string };
}

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

  const owned = ownership(update, wi, phase);
  if (owned.verdict === 'fail') return complete(plan, 'Failed', owned.reason, owned.message, now);

  // Only the newest update of a WatchedImage is worth applying: older ones step aside. One still
  // Applying steps aside whatever the newer one's phase: its patches, made now, could land after the
  // newer update's and leave the workloads on the older digest (the newer one patches over whatever
  // of it a crash left unrecorded). One rolling out (or back) was applied, and steps aside once the
  // newer one starts.
  const newest = [update, ...input.siblings].reduce((a, b) => (newerThan(b, a) ? b : a));
  if (newest !== update && (NOT_STARTED.includes(phase) || phase === 'Applying' || startedPhase(newest))) {
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
    const digest = digestVerdict(update, wi, phase, input.siblings, now);
    if (digest.verdict === 'fail') return complete(plan, 'Failed', digest.reason, digest.message, now);
    if (digest.verdict === 'wait') {
      const recheck =
        digest.reason === REASON.WaitingForNewerUpdate ? OLDER_UPDATE_RECHECK_MS : BASELINE_RECHECK_MS;
      return progress(plan, 'Pending', digest.reason, digest.message, now, recheck);
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
    // One update of a WatchedImage patches at a time: an older one still patching steps aside when it
    // sees this one, or finishes first; starting beside it would race its patches.
    const patching = input.siblings.find((s) => PATCHING.includes(phaseOf(s)));
    if (patching) {
      return progress(
        plan,
        'Pending',
        REASON.WaitingForOlderUpdate,
        `waiting for the older ImageUpdate ${patching.metadata.name} to finish patching`,
        now,
        OLDER_UPDATE_RECHECK_MS,
      );
    }
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

/** How soon an update waiting for its baseline looks again (the WatchedImage's own event comes first). */
const BASELINE_RECHECK_MS = 30_000;
/** How soon an update waiting for a sibling looks again (the sibling's own event comes first). */
const OLDER_UPDATE_RECHECK_MS = 5_000;
/**
 * How long after the poller recorded a digest the ImageUpdate cache may still lack its update: an
 * informer's restart backoff (up to 30 s) and a relist. Past it, a digest mismatch is one.
 */
const UPDATE_CACHE_LAG_MS = 60_000;

type Ownership = { verdict: 'ok' } | { verdict: 'wait' | 'fail'; reason: string; message: string };

/**
 * Whether the update is its WatchedImage's to apply. Only the poller's service account may create
 * ImageUpdates (an admission policy), but the controller does not rely on that alone:
 * - its owner reference names the WatchedImage's uid (a WatchedImage deleted and created again under
 *   the same name does not inherit the old one's updates);
 * - it names the image the WatchedImage watches now;
 * - (`digestVerdict`, after superseding) its toDigest is the digest the poller last recorded on the
 *   WatchedImage. The poller creates the
 *   update before it records the digest, so an update whose fromDigest is still the recorded one (or
 *   whose WatchedImage has no digest yet) waits instead of failing. An update that had reached
 *   Applying keeps the digest it started with: a newer digest seen since then comes with a newer
 *   update, which supersedes it.
 */
function ownership(update: ImageUpdate, wi: WatchedImage, phase: Phase): Ownership {
  // Checked before anything is patched; a rollout (or a rollback) in flight is followed to its end.
  if (phase === 'RollingOut' || phase === 'RollingBack') return { verdict: 'ok' };
  const owners = (update.metadata.ownerReferences ?? []).filter((o) => o.kind === WATCHED_IMAGE.kind);
  if (!owners.some((o) => o.uid === wi.metadata.uid && o.name === wi.metadata.name)) {
    return {
      verdict: 'fail',
      reason: REASON.NotOwned,
      message: boundMessage(
        `not owned by WatchedImage ${wi.metadata.name} (uid ${wi.metadata.uid ?? 'unknown'}): ImageUpdates are made by the poller for the WatchedImage they belong to`,
      ),
    };
  }
  if (!sameImage(update.spec.image, wi.spec.image)) {
    return {
      verdict: 'fail',
      reason: REASON.ImageChanged,
      message: boundMessage(
        `WatchedImage ${wi.metadata.name} now watches ${wi.spec.image}, not ${update.spec.image}`,
      ),
    };
  }
  return { verdict: 'ok' };
}

/** The digest part of `ownership`, checked after superseding: a newer sibling explains another digest. */
function digestVerdict(
  update: ImageUpdate,
  wi: WatchedImage,
  phase: Phase,
  siblings: readonly ImageUpdate[],
  now: Date,
): Ownership {
  if (phase === 'Applying' || phase === 'RollingOut') return { verdict: 'ok' };
  const recorded = wi.status?.digest;
  if (recorded === update.spec.toDigest) return { verdict: 'ok' };
  if (recorded === undefined || recorded === update.spec.fromDigest) {
    return {
      verdict: 'wait',
      reason: REASON.WaitingForBaseline,
      message: `waiting for the poller to record ${shortDigest(update.spec.toDigest)} on WatchedImage ${wi.metadata.name}`,
    };
  }
  // The poller creates the update of a digest before it records the digest. A recorded digest with no
  // update in the cache means the ImageUpdate cache is behind the WatchedImage cache (informers
  // relist apart, e.g. after an API server restart): the newer update, once seen, supersedes this one.
  const recordedAt = Date.parse(wi.status?.lastChangedTime ?? wi.status?.lastCheckedTime ?? '');
  if (
    !siblings.some((s) => s.spec.toDigest === recorded) &&
    now.getTime() - recordedAt < UPDATE_CACHE_LAG_MS
  ) {
    return {
      verdict: 'wait',
      reason: REASON.WaitingForNewerUpdate,
      message: `the poller recorded ${shortDigest(recorded)} on WatchedImage ${wi.metadata.name}: waiting to see its ImageUpdate`,
    };
  }
  return {
    verdict: 'fail',
    reason: REASON.DigestMismatch,
    message: `toDigest ${shortDigest(update.spec.toDigest)} is not the digest behind ${wi.spec.image} (${shortDigest(recorded)}, as the poller last saw it)`,
  };
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
    // An older update of the same WatchedImage patched it after this plan read the cache: not someone
    // else's change, and what the workload really ran before this update.
    const olderPin = image ? olderSiblingPin(w, image, update, input.siblings) : undefined;
    // Same tag is not enough: a person who pinned the tag to another digest (an emergency rollback)
    // changed it too, and wins.
    if (
      !image ||
      !sameImage(image, wi.spec.image) ||
      (digestOf(image) !== digestOf(r.previousImage ?? '') && !olderPin)
    ) {
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
    return { ...r, ...(olderPin ? { previousImage: image } : {}), state: 'Patched', message: 'patched' };
  });
  plan.patches = [...patches.values()];
  return afterPatching(plan, update, wi, now);
}

/**
 * The older sibling whose patch put `image` on `w`: the workload's annotation names it (a person's
 * pin leaves the annotation as it was) and `image` is pinned to its toDigest.
 */
function olderSiblingPin(
  w: Workload,
  image: string,
  update: ImageUpdate,
  siblings: readonly ImageUpdate[],
): ImageUpdate | undefined {
  const by = w.metadata.annotations?.[ANNOTATION.imageUpdate];
  if (!by) return undefined;
  return siblings.find(
    (s) => s.metadata.name === by && s.spec.toDigest === digestOf(image) && newerThan(update, s),
  );
}

/**
 * The answers to a plan's patches, folded into it: a workload deleted meanwhile is Skipped; a patch the
 * API server refused (400 forbidden-by-validation, 403, 422: a retry meets the same answer) is Refused,
 * with a Warning, and is never retried; any other error leaves the plan to be made again (`retry`),
 * so nothing is recorded and the reconcile backs off.
 */
export function planPatchAnswers(
  plan: UpdatePlan,
  update: ImageUpdate,
  wi: WatchedImage,
  answers: readonly PatchAnswer[],
  now: Date,
): UpdatePlan & { retry?: string } {
  const transient = answers.find((a) => a.error && !isFinalPatchError(a.error.code));
  if (transient?.error) return { ...plan, retry: transient.error.message };
  const failedPatches = answers.filter((a) => a.error);
  if (failedPatches.length === 0) return plan;
  const answerOf = (kind: string, name: string) =>
    failedPatches.find((a) => a.kind === kind && a.name === name);
  const events = plan.events.filter((e) => e.on === 'update' || !answerOf(e.on.kind, e.on.name));
  const workloads = (plan.status.workloads ?? []).map((r) => {
    const a = answerOf(r.kind, r.name);
    if (!a?.error || r.state !== 'Patched') return r;
    if (a.error.code === 404) {
      return {
        ...r,
        state: 'Skipped' as const,
        message: `${r.kind} ${r.name} was deleted before it was patched`,
      };
    }
    return { ...r, state: 'Refused' as const, message: boundMessage(`patch refused: ${a.error.message}`) };
  });
  for (const a of failedPatches) {
    if (a.error?.code === 404) continue;
    events.push({
      on: { kind: a.kind, name: a.name },
      type: 'Warning',
      reason: REASON.PatchFailed,
      message: boundMessage(`patch refused: ${a.error?.message ?? ''}`),
    });
  }
  const next: UpdatePlan = {
    ...plan,
    status: { ...plan.status, workloads },
    events,
  };
  // A rollback's patches: the results say what was refused; planRollback decides what follows.
  if (plan.status.phase === 'RollingBack' || plan.status.phase === 'RolledBack') return next;
  delete next.requeueAfterMs;
  return afterPatching(next, update, wi, now);
}

/** Deleted (404) or refused (400, 403, 422): final answers. Anything else may pass on a retry. */
function isFinalPatchError(code: number | undefined): boolean {
  return code === 404 || code === 400 || code === 403 || code === 422;
}

function digestOf(image: string): string | undefined {
  const at = image.indexOf('@');
  return at === -1 ? undefined : image.slice(at + 1);
}

/** Applying is over: follow the patched workloads, or settle when none was patched. */
function afterPatching(plan: UpdatePlan, update: ImageUpdate, wi: WatchedImage, now: Date): UpdatePlan {
  const patchedAny = (plan.status.workloads ?? []).some((r) => r.state === 'Patched');
  if (!patchedAny) return settle(plan, update, wi, now);
  return awaitRollouts(plan, now);
}

/** Phase RollingOut while a patched workload has not finished: looked at again in 5 s. */
function awaitRollouts(plan: UpdatePlan, now: Date): UpdatePlan {
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
        message: boundMessage(`rolled out ${r.newImage}: ${state.message}`),
      });
      return { ...r, state: 'RolledOut', message: boundMessage(state.message) };
    }
    if (state.failed || timedOut) {
      const message = boundMessage(
        state.failed
          ? state.message
          : `rollout not finished after ${Math.round(input.rolloutTimeoutMs / 1000)}s: ${state.message}`,
      );
      plan.events.push({
        on: { kind: r.kind, name: r.name },
        type: 'Warning',
        reason: 'RolloutFailed',
        message,
      });
      return { ...r, state: 'Failed', message };
    }
    return { ...r, message: boundMessage(state.message) };
  });
  if (plan.status.workloads.some((r) => r.state === 'Patched')) {
    return awaitRollouts(plan, now);
  }
  return settle(plan, update, wi, now);
}

/**
 * Whether a result failed in its rollout, the signal a rollback answers: the Deployment's own
 * ProgressDeadlineExceeded (what `kubectl rollout status` stops on), or the controller's rollout
 * timeout for kinds that report no failure. A refused patch changed nothing, so it is not one.
 */
export function rolloutFailed(r: WorkloadResult): boolean {
  return r.state === 'Failed';
}

/** Every result has ended: the update succeeded unless one failed; a failed rollout may roll back. */
function settle(plan: UpdatePlan, update: ImageUpdate, wi: WatchedImage, now: Date): UpdatePlan {
  const failed = (plan.status.workloads ?? []).filter((r) => r.state === 'Failed' || r.state === 'Refused');
  if (failed.length > 0) {
    const first = failed.find(rolloutFailed) ?? failed[0]!;
    const refused = failed.some((r) => r.state === 'Refused');
    const message = boundMessage(
      `${failed.length} workload(s) failed; ${first.kind} ${first.name}: ${first.message}`,
    );
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
