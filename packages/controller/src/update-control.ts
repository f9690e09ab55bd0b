/**
 * When and whether an approved update lands, as pure decisions: the start time that update windows
 * and the minimum age allow, what a rollback puts back, and which digest a WatchedImage refuses after
 * one. plan-update.ts calls these; they read nothing but their arguments.
 */
import { kubeTime as iso, normalizeReference, shortDigest, UPDATE_READY_REASON } from '@kubewatcher/shared';
import { nextOpening, type UpdateWindow } from './update-window.ts';

const SCHEDULE_REASON = {
  MinimumAge: UPDATE_READY_REASON.MinimumAge,
  OutsideUpdateWindow: UPDATE_READY_REASON.OutsideUpdateWindow,
} as const;
export type ScheduleReason = (typeof SCHEDULE_REASON)[keyof typeof SCHEDULE_REASON];

export interface ScheduleInput {
  updateWindows?: readonly UpdateWindow[] | undefined;
  /** spec.minimumAge in milliseconds; 0 or absent: none. */
  minimumAgeMs?: number | undefined;
  /** When the poller first saw the new digest behind the tag. */
  detectedTime: Date;
  /** The ImageUpdate's spec.ignoreUpdateWindows: start outside the windows (the minimum age still holds). */
  ignoreUpdateWindows?: boolean | undefined;
  now: Date;
}

export type ScheduleDecision =
  | { start: true }
  /** `startTime` is absent only when no window ever opens. */
  | { start: false; startTime: Date | undefined; reason: ScheduleReason; message: string };

/** Whether an approved update may start now, and if not, when it will. */
export function scheduleUpdate(input: ScheduleInput): ScheduleDecision {
  const { now } = input;
  const agedAt = new Date(input.detectedTime.getTime() + (input.minimumAgeMs ?? 0));
  const earliest = agedAt > now ? agedAt : now;
  const windows = input.ignoreUpdateWindows ? undefined : input.updateWindows;
  const startTime = nextOpening(windows, earliest);
  if (startTime !== undefined && startTime <= now) return { start: true };

  const age =
    agedAt > now
      ? `the new digest was first seen at ${iso(input.detectedTime)} and reaches spec.minimumAge at ${iso(agedAt)}`
      : undefined;
  if (startTime === undefined) {
    return {
      start: false,
      startTime,
      reason: SCHEDULE_REASON.OutsideUpdateWindow,
      message: 'no entry of spec.updateWindows ever opens: fix the windows, or set spec.ignoreUpdateWindows',
    };
  }
  // The later of the two decides the start time, so it names the reason.
  if (startTime.getTime() === agedAt.getTime()) {
    return {
      start: false,
      startTime,
      reason: SCHEDULE_REASON.MinimumAge,
      message: `starts at ${iso(startTime)}: ${age}`,
    };
  }
  return {
    start: false,
    startTime,
    reason: SCHEDULE_REASON.OutsideUpdateWindow,
    message: `starts at ${iso(startTime)}, when the next update window opens${age ? `; ${age}` : ''}`,
  };
}

/**
 * The image a rollback sets a container back to: the previous image exactly as it was when it named
 * a digest, else the previous tag pinned to the digest the tag had before the change. Putting back a
 * bare tag would let new pods pull the digest that just failed.
 */
export function rollbackImage(previousImage: string, fromDigest: string | undefined): string {
  if (!fromDigest || hasDigest(previousImage)) return previousImage;
  return `${previousImage}@${fromDigest}`;
}

function hasDigest(image: string): boolean {
  try {
    return normalizeReference(image).digest !== undefined;
  } catch {
    return image.includes('@');
  }
}

interface UpdateLike {
  metadata: { name: string; creationTimestamp?: string | Date };
  spec: { toDigest: string };
  status?: { phase?: string };
}

/**
 * The digest a WatchedImage refuses: the target of its newest RolledBack update, for as long as the
 * tag has not moved on, i.e. every update created after that one (a re-baseline after a spec edit,
 * say) is to the same digest. Updates in creation order, oldest first.
 */
export function refusedDigest(
  updatesOldestFirst: readonly UpdateLike[],
): { digest: string; rolledBackBy: string } | undefined {
  for (let i = updatesOldestFirst.length - 1; i >= 0; i--) {
    const u = updatesOldestFirst[i]!;
    if (u.status?.phase === 'RolledBack') return { digest: u.spec.toDigest, rolledBackBy: u.metadata.name };
    // A newer update to another digest: the tag moved on, nothing older is refused any more.
    if (i > 0 && u.spec.toDigest !== updatesOldestFirst[i - 1]!.spec.toDigest) return undefined;
  }
  return undefined;
}

export function refusalMessage(refused: { digest: string; rolledBackBy: string }): string {
  return `digest ${shortDigest(refused.digest)} was rolled back by ImageUpdate ${refused.rolledBackBy}; it is not applied again until the tag moves to another digest`;
}
