/**
 * WatchedImage: what to watch and how to update. The TypeBox schemas below are the one source of
 * truth: the TypeScript types are `Static<>` of them, `pnpm crds` writes them into the CRD, and
 * validateWatchedImage checks objects against them.
 */
import { type Static, Type } from '@sinclair/typebox';
import { WATCHED_IMAGE } from '../constants.ts';
import { celRule, celString } from './cel.ts';
import { DURATION_PATTERN, parseDuration } from './duration.ts';
import {
  Conditions,
  DateTime,
  DNS1123_LABEL_PATTERN,
  KubewatcherObject,
  LabelSelector,
  LocalObjectReference,
  ObjectName,
  ObservedGeneration,
  type PrinterColumn,
  StringEnum,
} from './meta.ts';
import { Digest, ShortDigest, TagReference } from './references.ts';
import { MinimumAge, Rollback, UpdateWindows } from './update-control.ts';
import { WORKLOAD_KIND, WORKLOAD_KIND_NAMES, WORKLOAD_KINDS, type WorkloadKind } from './workload-kinds.ts';

const KIND_LIST = `${WORKLOAD_KIND_NAMES.slice(0, -1).join(', ')} or ${WORKLOAD_KIND_NAMES.at(-1)}`;

export const UPDATE_POLICY = {
  /** Apply each new digest at once. */
  Auto: 'Auto',
  /** Wait until the ImageUpdate's spec.approved is true. */
  Manual: 'Manual',
  /** Record ImageUpdates, never patch workloads. */
  Observe: 'Observe',
} as const;
export type UpdatePolicy = (typeof UPDATE_POLICY)[keyof typeof UPDATE_POLICY];

/** Smallest spec.interval: registries rate-limit, and the poller's CronJob runs once a minute anyway. */
export const MIN_INTERVAL = '1m';
export const DEFAULT_INTERVAL = '5m';
export const DEFAULT_HISTORY_LIMIT = 10;
export const DEFAULT_KINDS: readonly WorkloadKind[] = [WORKLOAD_KIND.Deployment];
export const DEFAULT_UPDATE_POLICY: UpdatePolicy = UPDATE_POLICY.Auto;

// The schema's defaults, for readers of a spec. The API server fills them in on admission, but an
// object built in memory (a test, a dry run) or stored before a default existed may lack them: every
// reader asks here rather than spelling the default again.

/** spec.kinds, or its default. */
export function kindsOf(spec: Pick<WatchedImageSpec, 'kinds'>): readonly WorkloadKind[] {
  return spec.kinds ?? DEFAULT_KINDS;
}

/** spec.historyLimit, or its default. */
export function historyLimitOf(spec: Pick<WatchedImageSpec, 'historyLimit'>): number {
  return spec.historyLimit ?? DEFAULT_HISTORY_LIMIT;
}

/** spec.interval as written (a Go duration), or its default. */
export function intervalOf(spec: Pick<WatchedImageSpec, 'interval'>): string {
  return spec.interval ?? DEFAULT_INTERVAL;
}

/** spec.updatePolicy, or its default. */
export function updatePolicyOf(spec: Pick<WatchedImageSpec, 'updatePolicy'>): UpdatePolicy {
  return spec.updatePolicy ?? DEFAULT_UPDATE_POLICY;
}
const durationRegExp = new RegExp(DURATION_PATTERN);

export const WatchedImageSpec = Type.Object(
  {
    image: TagReference(
      'Image to watch: a reference with a tag and no digest, e.g. nginx:1.27 or ghcr.io/acme/web:stable. The tag defaults to latest. Workloads whose containers run the same repository and tag (after normalisation: nginx is docker.io/library/nginx) are updated when the digest behind the tag changes.',
    ),
    workloadSelector: Type.Optional(
      LabelSelector(
        'Label selector for the workloads to update, in this namespace. When absent, every workload of the given kinds whose containers or init containers run the image is updated.',
      ),
    ),
    kinds: Type.Optional(
      Type.Array(StringEnum(WORKLOAD_KIND_NAMES, { description: `A workload kind: ${KIND_LIST}.` }), {
        description: `Workload kinds to update: ${WORKLOAD_KIND_NAMES.map((k) => `${k} (${WORKLOAD_KINDS[k].group}/${WORKLOAD_KINDS[k].version}: ${WORKLOAD_KINDS[k].note})`).join('; ')}. Defaults to [${DEFAULT_KINDS.join(', ')}].`,
        default: [...DEFAULT_KINDS],
        minItems: 1,
        maxItems: WORKLOAD_KIND_NAMES.length,
        'x-kubernetes-list-type': 'set',
      }),
    ),
    containers: Type.Optional(
      Type.Array(
        Type.String({ description: 'A container name.', pattern: DNS1123_LABEL_PATTERN, maxLength: 63 }),
        {
          description:
            'Names of the containers (or init containers) to update. When absent, every container that runs the image.',
          maxItems: 64,
          'x-kubernetes-list-type': 'set',
        },
      ),
    ),
    updatePolicy: Type.Optional(
      StringEnum(Object.values(UPDATE_POLICY), {
        description: `What to do when the digest changes. Auto applies the ImageUpdate at once; Manual waits until its spec.approved is true; Observe records ImageUpdates and never patches workloads. Defaults to ${DEFAULT_UPDATE_POLICY}.`,
        default: DEFAULT_UPDATE_POLICY,
      }),
    ),
    interval: Type.Optional(
      Type.String({
        description: `How often to check the registry for a new digest, as a Go duration (30s, 5m, 1h30m). At least ${MIN_INTERVAL}; defaults to ${DEFAULT_INTERVAL}.`,
        default: DEFAULT_INTERVAL,
        pattern: DURATION_PATTERN,
        maxLength: 32,
        'x-kubernetes-validations': [
          // Guarded by the pattern, so a malformed value gets only the pattern's error.
          celRule<string>(
            `!self.matches(${celString(DURATION_PATTERN)}) || duration(self) >= duration('${MIN_INTERVAL}')`,
            `must be at least ${MIN_INTERVAL}`,
            (self) => {
              if (!durationRegExp.test(self)) return true;
              const milliseconds = parseDuration(self);
              return milliseconds !== undefined && milliseconds >= parseDuration(MIN_INTERVAL)!;
            },
          ),
        ],
      }),
    ),
    pullSecrets: Type.Optional(
      Type.Array(LocalObjectReference, {
        description:
          'kubernetes.io/dockerconfigjson Secrets in this namespace with credentials for the registry. When absent, the imagePullSecrets of the matched workloads and of their service accounts.',
        maxItems: 16,
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['name'],
      }),
    ),
    suspend: Type.Optional(
      Type.Boolean({
        description:
          'Stop checking the registry and applying updates while true; nothing is lost. Defaults to false.',
        default: false,
      }),
    ),
    historyLimit: Type.Optional(
      Type.Integer({
        description: `How many ImageUpdates of this WatchedImage to keep (1 to 100); the oldest finished ones are deleted. Defaults to ${DEFAULT_HISTORY_LIMIT}.`,
        format: 'int32',
        default: DEFAULT_HISTORY_LIMIT,
        minimum: 1,
        maximum: 100,
      }),
    ),
    updateWindows: Type.Optional(UpdateWindows),
    minimumAge: Type.Optional(MinimumAge),
    rollback: Type.Optional(Rollback),
  },
  { description: 'What to watch and how to update the workloads that run it.' },
);
export type WatchedImageSpec = Static<typeof WatchedImageSpec>;

const MatchedWorkload = Type.Object(
  {
    kind: StringEnum(WORKLOAD_KIND_NAMES, { description: 'Kind of the workload.' }),
    name: ObjectName('Name of the workload.'),
    containers: Type.Optional(
      Type.Array(Type.String({ description: 'A container name.', maxLength: 63 }), {
        description: 'Containers (and init containers) of the workload that run the image.',
        'x-kubernetes-list-type': 'set',
      }),
    ),
  },
  { description: 'A workload that runs the watched image.' },
);
export type MatchedWorkload = Static<typeof MatchedWorkload>;

const RateLimit = Type.Object(
  {
    limit: Type.Optional(
      Type.Integer({
        description: 'Requests allowed per window (RateLimit-Limit).',
        format: 'int64',
        minimum: 0,
      }),
    ),
    remaining: Type.Optional(
      Type.Integer({
        description: 'Requests left in the current window (RateLimit-Remaining).',
        format: 'int64',
        minimum: 0,
      }),
    ),
    windowSeconds: Type.Optional(
      Type.Integer({
        description: 'Length of the window in seconds (the w= parameter).',
        format: 'int64',
        minimum: 0,
      }),
    ),
    observedTime: Type.Optional(DateTime('When the registry reported these figures.')),
    pausedUntil: Type.Optional(
      DateTime(
        'The registry answered 429 Too Many Requests: the poller sends it nothing before this time (Retry-After, else 5 minutes), in this run or the next.',
      ),
    ),
  },
  {
    description:
      "The registry's rate-limit figures from a check, when it reports them, and its pause after a 429. The poller reads them back in its next run to keep within the registry's budget.",
  },
);
export type RateLimit = Static<typeof RateLimit>;

/** The authentication schemes a remembered registry challenge may name. */
export const CHALLENGE_SCHEME = { Bearer: 'Bearer', Basic: 'Basic' } as const;
export type ChallengeScheme = (typeof CHALLENGE_SCHEME)[keyof typeof CHALLENGE_SCHEME];

const RegistryChallenge = Type.Object(
  {
    registry: Type.String({
      minLength: 1,
      maxLength: 255,
      description:
        'Host (host[:port]) of the registry API that sent the challenge. The poller uses the challenge only for this registry: after spec.image moves to another registry it is learned anew.',
    }),
    scheme: StringEnum(Object.values(CHALLENGE_SCHEME), {
      description:
        'Bearer: a token is fetched from realm first. Basic: credentials go to the registry itself.',
    }),
    realm: Type.Optional(
      Type.String({
        maxLength: 1024,
        pattern: '^https?://',
        description:
          "The token service URL the registry named (Bearer). Used from memory only when it is on the registry itself, on a host in the registry's realmHosts allow-list or Docker Hub's auth.docker.io, and never over plain HTTP for an HTTPS registry.",
      }),
    ),
    service: Type.Optional(
      Type.String({
        maxLength: 255,
        description: 'The service parameter the registry named for its token service (Bearer).',
      }),
    ),
  },
  {
    description:
      'How the registry last asked to authenticate (its WWW-Authenticate challenge: never a token or a credential). The next run reads it back to fetch a token before its first request instead of collecting a 401 first; a registry that answers otherwise is asked again and this is updated. Written by the poller.',
  },
);
export type RegistryChallenge = Static<typeof RegistryChallenge>;

export const WatchedImageStatus = Type.Object(
  {
    // Written by the poller (field manager kubewatcher-poller).
    digest: Type.Optional(
      Digest(
        'Digest last seen behind the tag: the baseline new digests are compared with. Written by the poller.',
      ),
    ),
    shortDigest: Type.Optional(
      ShortDigest('First 12 hex digits of digest, for display. Written by the poller.'),
    ),
    resolvedImage: Type.Optional(
      Type.String({
        maxLength: 512,
        description:
          'Canonical reference (registry/repository:tag) that digest belongs to. When spec.image changes, the poller takes a new baseline instead of reporting a change. Written by the poller.',
      }),
    ),
    lastCheckedTime: Type.Optional(
      DateTime(
        "When a registry check was last written here: a check that found something new (a digest, a failure, a new rate limit) or was asked for (checkRequestedTime) is always written; a scheduled check that found nothing new is written every other interval, the one in between kept in the poller's check record ConfigMap, and an extra check (a manual --ignore-interval run) that found nothing new is not written. So this is at most one interval (and the CronJob's minute) older than the newest check. The next check is due one interval after the newest one. Written by the poller.",
      ),
    ),
    lastChangedTime: Type.Optional(
      DateTime('When the poller last saw the digest change. Written by the poller.'),
    ),
    rateLimit: Type.Optional(RateLimit),
    registryChallenge: Type.Optional(RegistryChallenge),
    checkRequestedTime: Type.Optional(
      DateTime(
        "When a check was last asked for (a registry webhook, or kubectl kubewatcher check): the poller checks the image on its next run when this is later than lastCheckedTime, whatever the interval. Written by the controller's webhook receiver (field manager kubewatcher-webhook) or the plugin (kubectl-kubewatcher).",
      ),
    ),
    // Written by the controller (field manager kubewatcher-controller).
    observedGeneration: Type.Optional(
      ObservedGeneration('metadata.generation the controller last acted on. Written by the controller.'),
    ),
    workloads: Type.Optional(
      Type.Array(MatchedWorkload, {
        description: 'Workloads that run the image and match the selector. Written by the controller.',
        'x-kubernetes-list-type': 'map',
        'x-kubernetes-list-map-keys': ['kind', 'name'],
      }),
    ),
    workloadCount: Type.Optional(
      Type.Integer({
        description: 'Number of entries in workloads, for display. Written by the controller.',
        format: 'int32',
        minimum: 0,
      }),
    ),
    latestUpdate: Type.Optional(
      ObjectName('Name of the newest ImageUpdate of this WatchedImage. Written by the controller.'),
    ),
    refusedDigest: Type.Optional(
      Digest(
        'A digest an ImageUpdate rolled back (spec.rollback OnFailure): it is not applied again until the tag moves to another digest. Written by the controller.',
      ),
    ),
    conditions: Type.Optional(
      Conditions(
        'Resolved (written by the poller): whether the last registry check worked. Ready (written by the controller): whether the WatchedImage is valid and how many workloads it updates.',
      ),
    ),
  },
  {
    description:
      'Observed state. Two writers share it, each with its own fields, by server-side apply: the poller and the controller.',
  },
);
export type WatchedImageStatus = Static<typeof WatchedImageStatus>;

export const WatchedImage = KubewatcherObject(
  WATCHED_IMAGE.kind,
  WatchedImageSpec,
  WatchedImageStatus,
  'WatchedImage watches the digest behind an image tag and rolls the workloads that run the tag onto each new digest, recording every change as an ImageUpdate.',
);
export type WatchedImage = Static<typeof WatchedImage>;

export const WATCHED_IMAGE_PRINTER_COLUMNS: readonly PrinterColumn[] = [
  { name: 'Image', type: 'string', jsonPath: '.spec.image', description: 'The watched reference.' },
  { name: 'Digest', type: 'string', jsonPath: '.status.shortDigest', description: 'Digest behind the tag.' },
  { name: 'Policy', type: 'string', jsonPath: '.spec.updatePolicy', description: 'Update policy.' },
  {
    name: 'Workloads',
    type: 'integer',
    jsonPath: '.status.workloadCount',
    description: 'Matched workloads.',
  },
  {
    name: 'Ready',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    description: 'Status of the Ready condition.',
  },
  {
    name: 'Last Checked',
    type: 'date',
    jsonPath: '.status.lastCheckedTime',
    description:
      "Last registry check written to the status (at most one interval, and the CronJob's minute, behind the newest check).",
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
  {
    name: 'Reason',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
    description: 'Reason of the Ready condition.',
    priority: 1,
  },
  {
    name: 'Resolved',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Resolved")].status',
    description: 'Status of the Resolved condition.',
    priority: 1,
  },
  {
    name: 'Refused',
    type: 'string',
    jsonPath: '.status.refusedDigest',
    description: 'Digest refused after a rollback.',
    priority: 1,
  },
];
