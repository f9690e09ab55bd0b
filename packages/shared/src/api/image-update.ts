/**
 * ImageUpdate: one detected change of the digest behind a watched tag, the audit record of what was
 * rolled out and the approval handle for the Manual policy. Created by the poller, driven by the
 * controller. Its spec is immutable once created, except `approved`.
 */
import { type Static, Type } from '@sinclair/typebox';
import { IMAGE_UPDATE } from '../constants.ts';
import { celRule, immutable } from './cel.ts';
import {
  Conditions,
  DateTime,
  DNS1123_LABEL_PATTERN,
  KubewatcherObject,
  ObjectName,
  ObservedGeneration,
  type PrinterColumn,
  StringEnum,
} from './meta.ts';
import { Digest, ShortDigest, TagReference } from './references.ts';
import { WORKLOAD_KIND_NAMES } from './workload-kinds.ts';

export const IMAGE_UPDATE_PHASE = {
  /** Created; the controller has not acted on it yet. */
  Pending: 'Pending',
  /** Manual policy: waiting for spec.approved. */
  AwaitingApproval: 'AwaitingApproval',
  /** Approved, waiting for an update window or the minimum age; status.scheduledTime says until when. */
  Scheduled: 'Scheduled',
  /** Patching the workloads. */
  Applying: 'Applying',
  /** Workloads patched; waiting for their rollouts to finish. */
  RollingOut: 'RollingOut',
  /** Every workload rolled out onto the new digest. */
  Succeeded: 'Succeeded',
  /** A patch or a rollout failed; see status.workloads and the conditions. */
  Failed: 'Failed',
  /** The rollout failed and spec.rollback is OnFailure: putting the workloads back on their previous images. */
  RollingBack: 'RollingBack',
  /** The rollout failed and the workloads were put back on their previous images. */
  RolledBack: 'RolledBack',
  /** A newer ImageUpdate of the same WatchedImage replaced this one before it was applied. */
  Superseded: 'Superseded',
  /** Observe policy: recorded, never applied. */
  Observed: 'Observed',
} as const;
export type ImageUpdatePhase = (typeof IMAGE_UPDATE_PHASE)[keyof typeof IMAGE_UPDATE_PHASE];

/** Phases after which the controller never touches the ImageUpdate again (and may prune it). */
export const TERMINAL_PHASES: readonly ImageUpdatePhase[] = [
  IMAGE_UPDATE_PHASE.Succeeded,
  IMAGE_UPDATE_PHASE.Failed,
  IMAGE_UPDATE_PHASE.RolledBack,
  IMAGE_UPDATE_PHASE.Superseded,
  IMAGE_UPDATE_PHASE.Observed,
];

/** status.phase, or Pending when the controller has not written one yet. */
export function phaseOf(update: { status?: { phase?: ImageUpdatePhase } }): ImageUpdatePhase {
  return update.status?.phase ?? IMAGE_UPDATE_PHASE.Pending;
}

/** Creation order of ImageUpdates: timestamp, then name for a stable tie-break. */
export function newerThan(a: ImageUpdate, b: ImageUpdate): boolean {
  const ta = Date.parse(String(a.metadata.creationTimestamp ?? 0));
  const tb = Date.parse(String(b.metadata.creationTimestamp ?? 0));
  return ta !== tb ? ta > tb : a.metadata.name > b.metadata.name;
}

export const WORKLOAD_UPDATE_STATE = {
  /** Not patched yet. */
  Pending: 'Pending',
  /** Patched; rollout in progress. */
  Patched: 'Patched',
  /** Rollout finished on the new image. */
  RolledOut: 'RolledOut',
  /** The rollout failed (or did not finish in time). */
  Failed: 'Failed',
  /** The API server refused the patch (forbidden, invalid, denied by admission): not retried. */
  Refused: 'Refused',
  /** Left alone, e.g. it already ran the new digest or no longer matched. */
  Skipped: 'Skipped',
  /** Put back on its previous image after a failed rollout. */
  RolledBack: 'RolledBack',
} as const;
export type WorkloadUpdateState = (typeof WORKLOAD_UPDATE_STATE)[keyof typeof WORKLOAD_UPDATE_STATE];

export const ImageUpdateSpec = Type.Object(
  {
    watchedImage: ObjectName(
      'Name of the WatchedImage, in this namespace, that detected the change. Immutable.',
      [immutable<string>()],
    ),
    image: TagReference(
      'The watched reference, with its tag and without a digest, e.g. nginx:1.27. Immutable.',
      [immutable<string>()],
    ),
    fromDigest: Type.Optional(
      Digest('Digest behind the tag before the change; absent when it was not known. Immutable.', [
        immutable<string>(),
      ]),
    ),
    toDigest: Digest('Digest behind the tag after the change: what the workloads are moved to. Immutable.', [
      immutable<string>(),
    ]),
    detectedTime: Type.Optional(
      Type.String({
        description:
          "When the poller first saw toDigest behind the tag: the WatchedImage's spec.minimumAge counts from here (from creationTimestamp when absent). Immutable.",
        format: 'date-time',
        'x-kubernetes-validations': [immutable<string>()],
      }),
    ),
    approved: Type.Optional(
      Type.Boolean({
        description:
          'Approval to apply this update, for a WatchedImage with updatePolicy Manual (Auto applies without it; Observe never applies). May change after creation, like ignoreUpdateWindows. Defaults to false.',
        default: false,
      }),
    ),
    ignoreUpdateWindows: Type.Optional(
      Type.Boolean({
        description:
          "Start this update outside the WatchedImage's spec.updateWindows, e.g. an urgent fix approved by hand; spec.minimumAge still applies. May change after creation. False when absent.",
      }),
    ),
  },
  {
    description: 'The change: which WatchedImage saw it, the tag, and the digests before and after.',
    'x-kubernetes-validations': [
      celRule<{ fromDigest?: string }>(
        'has(self.fromDigest) == has(oldSelf.fromDigest)',
        'is immutable: it cannot be added or removed after creation',
        (self, oldSelf) => (self.fromDigest === undefined) === (oldSelf.fromDigest === undefined),
        { fieldPath: '.fromDigest' },
      ),
      celRule<{ detectedTime?: string }>(
        'has(self.detectedTime) == has(oldSelf.detectedTime)',
        'is immutable: it cannot be added or removed after creation',
        (self, oldSelf) => (self.detectedTime === undefined) === (oldSelf.detectedTime === undefined),
        { fieldPath: '.detectedTime' },
      ),
    ],
  },
);
export type ImageUpdateSpec = Static<typeof ImageUpdateSpec>;

const WorkloadUpdate = Type.Object(
  {
    kind: StringEnum(WORKLOAD_KIND_NAMES, { description: 'Kind of the workload.' }),
    name: ObjectName('Name of the workload.'),
    container: Type.String({
      description: 'Name of the container (or init container) updated.',
      pattern: DNS1123_LABEL_PATTERN,
      maxLength: 63,
    }),
    previousImage: Type.Optional(
      Type.String({ description: 'Image of the container before the update.', maxLength: 1024 }),
    ),
    newImage: Type.Optional(
      Type.String({
        description:
          'Image the container was set to: the reference pinned to the new digest (repo:tag@sha256:…).',
        maxLength: 1024,
      }),
    ),
    state: StringEnum(Object.values(WORKLOAD_UPDATE_STATE), {
      description:
        'Where this container is: Pending, Patched, RolledOut, Failed (the rollout), Refused (the patch), Skipped or RolledBack.',
    }),
    message: Type.Optional(
      Type.String({ description: 'Details of the state, e.g. why it failed.', maxLength: 4096 }),
    ),
  },
  { description: 'The result of the update for one container of one workload.' },
);
export type WorkloadUpdate = Static<typeof WorkloadUpdate>;

const NotificationRecord = Type.Object(
  {
    endpoint: Type.String({
      description: 'Name of the notification endpoint, as configured for the controller.',
      pattern: DNS1123_LABEL_PATTERN,
      maxLength: 63,
    }),
    event: Type.String({
      description: 'The event sent: AwaitingApproval, Applied, Succeeded, Failed or RolledBack.',
      maxLength: 63,
    }),
    time: DateTime('When the endpoint accepted it.'),
  },
  { description: 'One notification delivered about this update.' },
);

export const ImageUpdateStatus = Type.Object(
  {
    observedGeneration: Type.Optional(
      ObservedGeneration('metadata.generation the controller last acted on.'),
    ),
    phase: Type.Optional(
      StringEnum(Object.values(IMAGE_UPDATE_PHASE), {
        description:
          'Where the update is: Pending, AwaitingApproval, Scheduled, Applying, RollingOut, Succeeded, Failed, RollingBack, RolledBack, Superseded or Observed.',
      }),
    ),
    from: Type.Optional(ShortDigest('First 12 hex digits of spec.fromDigest, for display.')),
    to: Type.Optional(ShortDigest('First 12 hex digits of spec.toDigest, for display.')),
    progress: Type.Optional(
      Type.String({
        description: 'Workloads rolled out over workloads to update, e.g. 2/3, for display.',
        pattern: '^[0-9]+/[0-9]+$',
        maxLength: 21,
      }),
    ),
    workloads: Type.Optional(
      Type.Array(WorkloadUpdate, {
        description: 'Per container of each matched workload: previous and new image, state and message.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['kind', 'name', 'container'],
      }),
    ),
    scheduledTime: Type.Optional(
      DateTime(
        'Phase Scheduled: when the update will start, the later of the next update window opening and the end of the minimum age.',
      ),
    ),
    appliedTime: Type.Optional(DateTime('When the controller started patching the workloads.')),
    completedTime: Type.Optional(
      DateTime('When the update reached Succeeded, Failed, RolledBack, Superseded or Observed.'),
    ),
    failureMessage: Type.Optional(
      Type.String({
        description: 'Why the rollout failed, kept when the update is rolled back.',
        maxLength: 4096,
      }),
    ),
    supersededBy: Type.Optional(ObjectName('Name of the newer ImageUpdate that replaced this one.')),
    conditions: Type.Optional(
      Conditions('Approved: whether the update may be applied. Ready: whether it finished rolling out.'),
    ),
    notifications: Type.Optional(
      Type.Array(NotificationRecord, {
        description:
          "Notifications delivered about this update, one per endpoint and event, so a restarted controller sends only what is still owed. Written by the controller's notifier (field manager kubewatcher-notifier).",
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['endpoint', 'event'],
        maxItems: 256,
      }),
    ),
  },
  { description: 'Progress and outcome of the update. Written by the controller.' },
);
export type ImageUpdateStatus = Static<typeof ImageUpdateStatus>;

export const ImageUpdate = KubewatcherObject(
  IMAGE_UPDATE.kind,
  ImageUpdateSpec,
  ImageUpdateStatus,
  'ImageUpdate records one change of the digest behind a watched tag: the audit record of what was rolled out where, and the approval handle for the Manual policy.',
);
export type ImageUpdate = Static<typeof ImageUpdate>;

export const IMAGE_UPDATE_PRINTER_COLUMNS: readonly PrinterColumn[] = [
  { name: 'Image', type: 'string', jsonPath: '.spec.image', description: 'The watched reference.' },
  { name: 'From', type: 'string', jsonPath: '.status.from', description: 'Digest before the change.' },
  { name: 'To', type: 'string', jsonPath: '.status.to', description: 'Digest after the change.' },
  { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Where the update is.' },
  { name: 'Workloads', type: 'string', jsonPath: '.status.progress', description: 'Rolled out / to update.' },
  // A string, not a date: kubectl prints a date column in the future as <invalid>.
  {
    name: 'Starts',
    type: 'string',
    jsonPath: '.status.scheduledTime',
    description: 'Phase Scheduled: start time.',
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  {
    name: 'Watched',
    type: 'string',
    jsonPath: '.spec.watchedImage',
    description: 'The WatchedImage that detected the change.',
    priority: 1,
  },
  { name: 'Approved', type: 'boolean', jsonPath: '.spec.approved', description: 'Approval.', priority: 1 },
];
