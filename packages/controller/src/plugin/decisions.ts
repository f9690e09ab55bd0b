/**
 * The plugin's pure parts: what approving or rejecting an ImageUpdate writes, the tables `status`
 * and `history` print. No I/O here (commands.ts reads and writes).
 */
import {
  ANNOTATION,
  type ImageUpdate,
  phaseOf,
  shortDigest,
  TERMINAL_PHASES,
  type WatchedImage,
} from '@kubewatcher/shared';

/** Who decided about an ImageUpdate, and how: annotations the plugin writes beside spec.approved. */
const DECISION_ANNOTATION = {
  decision: ANNOTATION.decision,
  decidedBy: ANNOTATION.decidedBy,
  decidedAt: ANNOTATION.decidedAt,
} as const;

export type Decision = 'approved' | 'rejected';

/** A request the plugin refuses before writing; `message` says why in the user's terms. */
export class PluginError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PluginError';
  }
}

/**
 * The merge patch that records a decision: spec.approved (the only spec field that may change) and
 * who decided when, conditional on the resourceVersion read (a concurrent change fails with 409
 * instead of being overwritten).
 */
export function decisionPatch(
  update: ImageUpdate,
  decision: Decision,
  user: string,
  now: Date,
  options: { ignoreUpdateWindows?: boolean } = {},
) {
  const phase = phaseOf(update);
  const name = `${update.metadata.namespace}/${update.metadata.name}`;
  if (TERMINAL_PHASES.includes(phase)) {
    throw new PluginError(
      `ImageUpdate ${name} is ${phase}: there is nothing left to ${decision === 'approved' ? 'approve' : 'reject'}`,
    );
  }
  if (decision === 'rejected' && update.status?.appliedTime) {
    throw new PluginError(
      `ImageUpdate ${name} was applied at ${update.status.appliedTime}: it cannot be rejected now`,
    );
  }
  return {
    metadata: {
      resourceVersion: update.metadata.resourceVersion,
      annotations: {
        [DECISION_ANNOTATION.decision]: decision,
        [DECISION_ANNOTATION.decidedBy]: user,
        [DECISION_ANNOTATION.decidedAt]: now.toISOString().replace(/\.\d+Z$/, 'Z'),
      },
    },
    spec: {
      approved: decision === 'approved',
      // Only an approval may skip the windows; a rejection never sets the field.
      ...(decision === 'approved' && options.ignoreUpdateWindows ? { ignoreUpdateWindows: true } : {}),
    },
  };
}

/** Plain columns padded to their widest cell, as kubectl prints them. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('   ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** `5m`, `3h`, `2d`: kubectl's age column, coarsely. */
export function age(since: string | undefined, now: Date): string {
  if (!since) return '<none>';
  const s = Math.max(0, Math.floor((now.getTime() - Date.parse(since)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

const short = (digest: string | undefined) => (digest ? shortDigest(digest) : '<none>');

export function isPending(update: ImageUpdate): boolean {
  return !TERMINAL_PHASES.includes(phaseOf(update));
}

function decisionOf(update: ImageUpdate): string {
  const a = update.metadata.annotations ?? {};
  const decision = a[DECISION_ANNOTATION.decision];
  if (!decision) return update.spec.approved ? 'approved' : '';
  return `${decision} by ${a[DECISION_ANNOTATION.decidedBy] ?? '?'}`;
}

/** `status`: what is watched, then what is pending. */
export function statusTables(
  watchedImages: readonly WatchedImage[],
  updates: readonly ImageUpdate[],
  now: Date,
): string {
  const ready = (wi: WatchedImage) => wi.status?.conditions?.find((c) => c.type === 'Ready');
  const watched = formatTable(
    ['NAMESPACE', 'WATCHEDIMAGE', 'IMAGE', 'DIGEST', 'POLICY', 'WORKLOADS', 'READY', 'LAST CHECKED'],
    watchedImages.map((wi) => [
      wi.metadata.namespace ?? '',
      wi.metadata.name ?? '',
      wi.spec.image,
      short(wi.status?.digest),
      wi.spec.suspend ? 'Suspended' : (wi.spec.updatePolicy ?? 'Auto'),
      String(wi.status?.workloadCount ?? 0),
      ready(wi)?.status ?? 'Unknown',
      age(wi.status?.lastCheckedTime, now),
    ]),
  );
  const pending = updates.filter(isPending);
  const pendingTable =
    pending.length === 0
      ? 'No pending ImageUpdates.'
      : formatTable(
          ['NAMESPACE', 'IMAGEUPDATE', 'IMAGE', 'FROM', 'TO', 'PHASE', 'DECISION', 'AGE'],
          pending.map((u) => [
            u.metadata.namespace ?? '',
            u.metadata.name ?? '',
            u.spec.image,
            short(u.spec.fromDigest),
            short(u.spec.toDigest),
            u.status?.phase ?? 'Pending',
            decisionOf(u),
            age(u.metadata.creationTimestamp as string | undefined, now),
          ]),
        );
  return `${watchedImages.length === 0 ? 'No WatchedImages.' : watched}\n\n${pendingTable}`;
}

/** `history WI`: its ImageUpdates, oldest first. */
export function historyTable(updates: readonly ImageUpdate[], now: Date): string {
  if (updates.length === 0) return 'No ImageUpdates.';
  const sorted = [...updates].sort((a, b) =>
    String(a.metadata.creationTimestamp ?? '').localeCompare(String(b.metadata.creationTimestamp ?? '')),
  );
  return formatTable(
    ['IMAGEUPDATE', 'FROM', 'TO', 'PHASE', 'WORKLOADS', 'DECISION', 'CREATED', 'COMPLETED'],
    sorted.map((u) => [
      u.metadata.name ?? '',
      short(u.spec.fromDigest),
      short(u.spec.toDigest),
      u.status?.phase ?? 'Pending',
      u.status?.progress ?? '',
      decisionOf(u),
      age(u.metadata.creationTimestamp as string | undefined, now),
      u.status?.completedTime ? age(u.status.completedTime, now) : '',
    ]),
  );
}
