/**
 * Notifications, the pure part: the endpoints file, which event an ImageUpdate is at, which endpoints
 * are still owed it, and the message each kind of endpoint takes. No I/O here (notifier.ts sends).
 */
import { type ImageUpdate, isDnsLabel } from '@kubewatcher/shared';
import { parse as parseYaml } from 'yaml';

export const NOTIFICATION_EVENTS = [
  'AwaitingApproval',
  'Applied',
  'Succeeded',
  'Failed',
  'RolledBack',
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

export const ENDPOINT_TYPES = ['slack', 'teams', 'discord', 'webhook'] as const;
export type EndpointType = (typeof ENDPOINT_TYPES)[number];

export interface Endpoint {
  name: string;
  type: EndpointType;
  /** A secret: never logged, never in an error message. */
  url: string;
  events: readonly NotificationEvent[];
  /** Namespaces whose updates go here; all when absent. */
  namespaces?: readonly string[];
  /** Extra request headers (type webhook only), e.g. Authorization. Secret too. */
  headers?: Readonly<Record<string, string>>;
}

export class NotificationConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotificationConfigError';
  }
}

const FIELDS = ['name', 'type', 'url', 'events', 'namespaces', 'headers'];

/**
 * Reads the endpoints file: `endpoints: [{name, type, url, events?, namespaces?, headers?}]`. Errors
 * name the field, and never repeat a URL or a header value.
 */
export function parseEndpoints(text: string): Endpoint[] {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch {
    throw new NotificationConfigError('notifications file is not YAML');
  }
  const list = (doc as { endpoints?: unknown } | null)?.endpoints;
  if (!Array.isArray(list))
    throw new NotificationConfigError('notifications file must hold "endpoints:", a list');
  const seen = new Set<string>();
  return list.map((item, i) => {
    const at = `endpoints[${i}]`;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new NotificationConfigError(`${at} must be an object`);
    }
    const o = item as Record<string, unknown>;
    for (const key of Object.keys(o)) {
      if (!FIELDS.includes(key)) {
        throw new NotificationConfigError(`${at}.${key} is not an endpoint field (${FIELDS.join(', ')})`);
      }
    }
    const name = o.name;
    if (typeof name !== 'string' || !isDnsLabel(name)) {
      throw new NotificationConfigError(`${at}.name must be a DNS label (lower-case letters, digits, -)`);
    }
    if (seen.has(name)) throw new NotificationConfigError(`${at}.name "${name}" is used twice`);
    seen.add(name);
    const type = o.type as EndpointType;
    if (!ENDPOINT_TYPES.includes(type)) {
      throw new NotificationConfigError(
        `${at}.type "${String(o.type ?? '')}" must be one of ${ENDPOINT_TYPES.join(', ')}`,
      );
    }
    let url: URL;
    try {
      url = new URL(String(o.url ?? ''));
    } catch {
      throw new NotificationConfigError(`${at}.url (${name}) is not a URL`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new NotificationConfigError(`${at}.url (${name}) must be http or https`);
    }
    const events = o.events === undefined ? [...NOTIFICATION_EVENTS] : o.events;
    if (!Array.isArray(events) || events.length === 0) {
      throw new NotificationConfigError(
        `${at}.events must be a non-empty list of ${NOTIFICATION_EVENTS.join(', ')}`,
      );
    }
    for (const e of events) {
      if (!NOTIFICATION_EVENTS.includes(e)) {
        throw new NotificationConfigError(
          `${at}.events: "${String(e)}" is not one of ${NOTIFICATION_EVENTS.join(', ')}`,
        );
      }
    }
    const endpoint: Endpoint = { name, type, url: url.toString(), events: events as NotificationEvent[] };
    if (o.namespaces !== undefined) {
      if (!Array.isArray(o.namespaces) || o.namespaces.some((n) => typeof n !== 'string')) {
        throw new NotificationConfigError(`${at}.namespaces must be a list of namespace names`);
      }
      endpoint.namespaces = o.namespaces as string[];
    }
    if (o.headers !== undefined) {
      if (type !== 'webhook')
        throw new NotificationConfigError(`${at}.headers: only type webhook takes headers`);
      const h = o.headers;
      if (typeof h !== 'object' || h === null || Object.values(h).some((v) => typeof v !== 'string')) {
        throw new NotificationConfigError(`${at}.headers must map header names to strings`);
      }
      endpoint.headers = h as Record<string, string>;
    }
    return endpoint;
  });
}

/**
 * The event an update is at now, and since when. Only its current phase counts: an update that
 * went from AwaitingApproval to Succeeded while nobody could send is reported as Succeeded, not
 * as awaiting an approval it no longer needs.
 */
export function currentEvent(
  update: ImageUpdate,
): { event: NotificationEvent; since: string | undefined } | undefined {
  const status = update.status;
  const created = update.metadata.creationTimestamp as string | undefined;
  switch (status?.phase as string | undefined) {
    case 'AwaitingApproval':
      return {
        event: 'AwaitingApproval',
        since: status?.conditions?.find((c) => c.type === 'Approved')?.lastTransitionTime ?? created,
      };
    case 'Applying':
    case 'RollingOut':
      return { event: 'Applied', since: status?.appliedTime ?? created };
    case 'Succeeded':
      return { event: 'Succeeded', since: status?.completedTime ?? created };
    case 'Failed':
      return { event: 'Failed', since: status?.completedTime ?? created };
    case 'RolledBack':
      return { event: 'RolledBack', since: status?.completedTime ?? created };
    default:
      return undefined;
  }
}

/**
 * Events older than this are not sent: the first start of a notifier on a cluster with history
 * would otherwise announce every finished update again.
 */
export const NOTIFICATION_MAX_AGE_MS = 6 * 3600_000;

/** The endpoints still owed the update's current event (none when it is stale or already sent). */
export function pendingDeliveries(
  update: ImageUpdate,
  endpoints: readonly Endpoint[],
  now: Date,
  maxAgeMs = NOTIFICATION_MAX_AGE_MS,
): { event: NotificationEvent; endpoints: Endpoint[] } | undefined {
  const current = currentEvent(update);
  if (!current) return undefined;
  const since = current.since ? Date.parse(current.since) : Number.NaN;
  if (!Number.isNaN(since) && now.getTime() - since > maxAgeMs) return undefined;
  const sent = new Set((update.status?.notifications ?? []).map((n) => `${n.endpoint}/${n.event}`));
  const namespace = update.metadata.namespace ?? '';
  const owed = endpoints.filter(
    (e) =>
      e.events.includes(current.event) &&
      (!e.namespaces || e.namespaces.includes(namespace)) &&
      !sent.has(`${e.name}/${current.event}`),
  );
  return owed.length > 0 ? { event: current.event, endpoints: owed } : undefined;
}

/** What every message says, whatever the endpoint: the facts, once. */
export interface NotificationFacts {
  event: NotificationEvent;
  namespace: string;
  imageUpdate: string;
  watchedImage: string;
  image: string;
  fromDigest?: string;
  toDigest: string;
  progress?: string;
  workloads: { kind: string; name: string; container: string; state: string; message?: string }[];
  message?: string;
}

export function factsOf(update: ImageUpdate, event: NotificationEvent): NotificationFacts {
  const failed = (update.status?.conditions ?? []).find((c) => c.type === 'Ready' && c.status === 'False');
  return {
    event,
    namespace: update.metadata.namespace ?? '',
    imageUpdate: update.metadata.name ?? '',
    watchedImage: update.spec.watchedImage,
    image: update.spec.image,
    ...(update.spec.fromDigest ? { fromDigest: update.spec.fromDigest } : {}),
    toDigest: update.spec.toDigest,
    ...(update.status?.progress ? { progress: update.status.progress } : {}),
    workloads: (update.status?.workloads ?? []).map((w) => ({
      kind: w.kind,
      name: w.name,
      container: w.container,
      state: w.state,
      ...(w.message ? { message: w.message } : {}),
    })),
    ...(event === 'Failed' && failed?.message ? { message: failed.message } : {}),
  };
}

const SENTENCE: Record<NotificationEvent, string> = {
  AwaitingApproval: 'is awaiting approval',
  Applied: 'was applied; rolling out',
  Succeeded: 'rolled out',
  Failed: 'failed',
  RolledBack: 'was rolled back',
};

const short = (digest: string | undefined) =>
  digest ? digest.replace(/^sha256:/, '').slice(0, 12) : '(none)';

/** One line of plain text, for chat endpoints. */
export function summaryLine(f: NotificationFacts): string {
  const progress = f.progress ? ` (${f.progress} workloads)` : '';
  return `${f.image} ${short(f.fromDigest)} → ${short(f.toDigest)} in ${f.namespace} ${SENTENCE[f.event]}${progress}: ImageUpdate ${f.imageUpdate}`;
}

function detailLines(f: NotificationFacts): string[] {
  const lines = f.workloads
    .slice(0, 10)
    .map((w) => `${w.kind}/${w.name} ${w.container}: ${w.state}${w.message ? ` (${w.message})` : ''}`);
  if (f.workloads.length > 10) lines.push(`… and ${f.workloads.length - 10} more`);
  if (f.message) lines.unshift(f.message);
  if (f.event === 'AwaitingApproval')
    lines.push(`Approve: kubectl kubewatcher approve ${f.imageUpdate} -n ${f.namespace}`);
  return lines;
}

/** The request body each kind of endpoint takes. */
export function messageBody(type: EndpointType, f: NotificationFacts): unknown {
  const summary = summaryLine(f);
  const details = detailLines(f);
  switch (type) {
    case 'slack':
      // Incoming webhooks: `text` is the notification's fallback and the message itself.
      return { text: [summary, ...details.map((d) => `• ${d}`)].join('\n') };
    case 'discord':
      // Discord caps content at 2,000 characters; no @mentions from a deploy bot.
      return { content: [summary, ...details].join('\n').slice(0, 2000), allowed_mentions: { parse: [] } };
    case 'teams':
      // Teams workflows (and the older connectors) take an Adaptive Card in a message attachment.
      return {
        type: 'message',
        attachments: [
          {
            contentType: 'application/vnd.microsoft.card.adaptive',
            content: {
              $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
              type: 'AdaptiveCard',
              version: '1.4',
              body: [
                { type: 'TextBlock', text: summary, wrap: true, weight: 'Bolder' },
                ...details.map((d) => ({ type: 'TextBlock', text: d, wrap: true, spacing: 'Small' })),
              ],
            },
          },
        ],
      };
    case 'webhook':
      return { ...f, summary };
  }
}
