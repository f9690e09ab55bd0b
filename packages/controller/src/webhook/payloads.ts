/**
 * Registry push notifications, parsed into "repository R, tag T was pushed". Pure functions: the
 * receiver reads the body, these decide what it says. Parsing is strict (a body that is not the
 * sender's documented shape is refused, naming the field), and nothing here is trusted beyond making
 * a check due: the poller resolves the digest itself, so a forged push can cause a check, never an
 * update.
 */
import { InvalidReferenceError, normalizeReference, referenceString } from '@kubewatcher/shared';

/** The senders a receiver can be configured for. */
export const WEBHOOK_FORMATS = ['distribution', 'dockerhub', 'github', 'harbor', 'quay', 'generic'] as const;
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number];

/** One pushed tag, canonical (`registry/repository:tag`, as referenceString writes it). */
export interface Push {
  image: string;
  /** The digest the sender named, for the log only: the poller resolves its own. */
  digest?: string;
}

/** A body that is not a valid notification of its format; `message` names the field and value. */
export class PayloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PayloadError';
  }
}

export interface ParseContext {
  /** The request's headers, lower-case names (GitHub's event type is one). */
  headers?: Readonly<Record<string, string | string[] | undefined>>;
  /**
   * Registry host the receiver's pushes belong to, where the payload names none (Docker Hub: docker.io;
   * GitHub: ghcr.io) or names an internal one (distribution's `request.host` behind a proxy).
   */
  registry?: string;
}

/** At most this many pushes from one body: more would be a flood, not a registry's notification. */
export const MAX_PUSHES_PER_BODY = 100;

/**
 * The pushes a body announces (an empty list for events that are not pushes, such as a pull or a
 * GitHub `ping`). Throws PayloadError when the body is not the format's shape.
 */
export function parsePayload(format: WebhookFormat, body: string, context: ParseContext = {}): Push[] {
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new PayloadError('body is not JSON');
  }
  const pushes = PARSERS[format](json, context);
  if (pushes.length > MAX_PUSHES_PER_BODY) {
    throw new PayloadError(`body names ${pushes.length} pushes, more than ${MAX_PUSHES_PER_BODY}`);
  }
  // One body may repeat a tag (distribution sends a manifest list and its children): report it once.
  const seen = new Map<string, Push>();
  for (const p of pushes) if (!seen.has(p.image)) seen.set(p.image, p);
  return [...seen.values()];
}

type Parser = (json: unknown, context: ParseContext) => Push[];

const PARSERS: Record<WebhookFormat, Parser> = {
  /**
   * CNCF distribution's notifications: `{"events": [{action, target: {repository, tag, digest},
   * request: {host}}]}`. Only manifest pushes by tag make a tag move; blob pushes, pulls, mounts
   * and deletes are ignored.
   */
  distribution(json, context) {
    const events = arrayField(objectAt(json, 'body'), 'events', 'body');
    return events.flatMap((event, i) => {
      const at = `events[${i}]`;
      const e = objectAt(event, at);
      if (stringField(e, 'action', at) !== 'push') return [];
      const target = objectAt(e.target, `${at}.target`);
      const tag = optionalString(target, 'tag', `${at}.target`);
      if (!tag) return [];
      const repository = stringField(target, 'repository', `${at}.target`);
      const request = e.request === undefined ? {} : objectAt(e.request, `${at}.request`);
      const host = context.registry ?? optionalString(request, 'host', `${at}.request`);
      if (!host) throw new PayloadError(`${at}.request.host is missing and the receiver names no registry`);
      return [push(host, repository, tag, optionalString(target, 'digest', `${at}.target`), `${at}.target`)];
    });
  },

  /** Docker Hub: `{push_data: {tag}, repository: {repo_name: "namespace/name"}}`; always docker.io. */
  dockerhub(json, context) {
    const body = objectAt(json, 'body');
    const pushData = objectAt(body.push_data, 'push_data');
    const repository = objectAt(body.repository, 'repository');
    const tag = stringField(pushData, 'tag', 'push_data');
    const name = stringField(repository, 'repo_name', 'repository');
    return [push(context.registry ?? 'docker.io', name, tag, undefined, 'repository.repo_name')];
  },

  /**
   * GitHub `package` (and older `registry_package`) events for container packages: the tag is at
   * `package.package_version.container_metadata.tag.name` (newer) or in `…package_version.tags`
   * (older). Other events (`ping`) and actions are not pushes.
   */
  github(json, context) {
    const event = headerValue(context.headers, 'x-github-event');
    if (event !== 'package' && event !== 'registry_package') return [];
    const body = objectAt(json, 'body');
    const action = stringField(body, 'action', 'body');
    if (action !== 'published' && action !== 'updated') return [];
    const pkg = objectAt(body.package ?? body.registry_package, 'package');
    const type = optionalString(pkg, 'package_type', 'package');
    if (type !== undefined && type.toLowerCase() !== 'container' && type.toLowerCase() !== 'docker')
      return [];
    const name = stringField(pkg, 'name', 'package');
    const namespace =
      optionalString(pkg, 'namespace', 'package') ??
      stringField(objectAt(pkg.owner, 'package.owner'), 'login', 'package.owner');
    const version = objectAt(pkg.package_version, 'package.package_version');
    const at = 'package.package_version';
    const metadata =
      version.container_metadata === undefined
        ? undefined
        : objectAt(version.container_metadata, `${at}.container_metadata`);
    const tagObject =
      metadata?.tag === undefined ? undefined : objectAt(metadata.tag, `${at}.container_metadata.tag`);
    const tags: string[] = [];
    const newer = tagObject ? optionalString(tagObject, 'name', `${at}.container_metadata.tag`) : undefined;
    if (newer) tags.push(newer);
    if (version.tags !== undefined) {
      for (const [i, t] of arrayField(version, 'tags', at).entries())
        tags.push(stringAt(t, `${at}.tags[${i}]`));
    }
    const digest = tagObject
      ? optionalString(tagObject, 'digest', `${at}.container_metadata.tag`)
      : undefined;
    // A push of an untagged manifest (a platform image of a list) moves no tag.
    return tags.map((tag) => push(context.registry ?? 'ghcr.io', `${namespace}/${name}`, tag, digest, at));
  },

  /**
   * Harbor's default format: `{type: "PUSH_ARTIFACT", event_data: {repository: {repo_full_name},
   * resources: [{tag, digest, resource_url}]}}`. The host comes from `resource_url`.
   */
  harbor(json, context) {
    const body = objectAt(json, 'body');
    if (stringField(body, 'type', 'body') !== 'PUSH_ARTIFACT') return [];
    const data = objectAt(body.event_data, 'event_data');
    const repository = stringField(
      objectAt(data.repository, 'event_data.repository'),
      'repo_full_name',
      'event_data.repository',
    );
    return arrayField(data, 'resources', 'event_data').flatMap((resource, i) => {
      const at = `event_data.resources[${i}]`;
      const r = objectAt(resource, at);
      const tag = optionalString(r, 'tag', at);
      if (!tag) return [];
      const url = optionalString(r, 'resource_url', at);
      const host = context.registry ?? (url ? hostOf(url, repository, `${at}.resource_url`) : undefined);
      if (!host) throw new PayloadError(`${at}.resource_url is missing and the receiver names no registry`);
      return [push(host, repository, tag, optionalString(r, 'digest', at), at)];
    });
  },

  /**
   * Quay's repository push notification: `{repository: "ns/name", docker_url: "quay.io/ns/name",
   * updated_tags: ["latest"]}` (old payloads map each tag to an image id instead).
   */
  quay(json, context) {
    const body = objectAt(json, 'body');
    const repository = stringField(body, 'repository', 'body');
    const dockerUrl = optionalString(body, 'docker_url', 'body');
    const host = context.registry ?? (dockerUrl ? hostOf(dockerUrl, repository, 'docker_url') : 'quay.io');
    const updated = body.updated_tags;
    let tags: string[];
    if (Array.isArray(updated)) tags = updated.map((t, i) => stringAt(t, `updated_tags[${i}]`));
    else if (isObject(updated)) tags = Object.keys(updated);
    else throw new PayloadError(`updated_tags must be a list of tags, got ${describe(updated)}`);
    return tags.map((tag) => push(host, repository, tag, undefined, 'updated_tags'));
  },

  /**
   * Kubewatcher's own form, for CI jobs and anything else: `{"image": "ghcr.io/acme/web", "tag":
   * "stable"}`, or `{"image": "ghcr.io/acme/web:stable"}`, or `{"images": [...]}` of either.
   */
  generic(json) {
    const body = objectAt(json, 'body');
    const one = (item: unknown, at: string): Push => {
      const o = objectAt(item, at);
      for (const key of Object.keys(o)) {
        if (key !== 'image' && key !== 'tag' && key !== 'digest') {
          throw new PayloadError(`${at}.${key} is not a field of the generic form (image, tag, digest)`);
        }
      }
      const image = stringField(o, 'image', at);
      const tag = optionalString(o, 'tag', at);
      const digest = optionalString(o, 'digest', at);
      return reference(tag ? `${image}:${tag}` : image, digest, `${at}.image`);
    };
    if (body.images !== undefined) {
      if (Object.keys(body).length !== 1)
        throw new PayloadError('body: "images" cannot sit beside other fields');
      return arrayField(body, 'images', 'body').map((item, i) => one(item, `images[${i}]`));
    }
    return [one(body, 'body')];
  },
};

function push(host: string, repository: string, tag: string, digest: string | undefined, at: string): Push {
  return reference(`${host}/${repository}:${tag}`, digest, at);
}

function reference(written: string, digest: string | undefined, at: string): Push {
  let image: string;
  try {
    const ref = normalizeReference(written);
    if (ref.digest) throw new PayloadError(`${at}: "${written}" names a digest; a push names a tag`);
    image = referenceString(ref);
  } catch (err) {
    if (err instanceof InvalidReferenceError) throw new PayloadError(`${at}: ${err.message}`);
    throw err;
  }
  return digest ? { image, digest } : { image };
}

/** `quay.io/ns/name` or `https://harbor.example/ns/name:tag` → the host, checked against `repository`. */
function hostOf(url: string, repository: string, at: string): string {
  const withoutScheme = url.replace(/^[a-z]+:\/\//, '');
  const slash = withoutScheme.indexOf('/');
  if (slash <= 0) throw new PayloadError(`${at} "${url}" names no registry host`);
  const rest = withoutScheme.slice(slash + 1);
  if (rest !== repository && !rest.startsWith(`${repository}:`) && !rest.startsWith(`${repository}@`)) {
    throw new PayloadError(`${at} "${url}" does not name repository "${repository}"`);
  }
  return withoutScheme.slice(0, slash);
}

function headerValue(headers: ParseContext['headers'], name: string): string | undefined {
  const v = headers?.[name];
  return Array.isArray(v) ? v[0] : v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return `"${v.length > 40 ? `${v.slice(0, 40)}…` : v}"`;
  return typeof v === 'object' ? 'an object' : `${typeof v} ${String(v)}`;
}

function objectAt(v: unknown, at: string): Record<string, unknown> {
  if (!isObject(v)) throw new PayloadError(`${at} must be an object, got ${describe(v)}`);
  return v;
}

function stringAt(v: unknown, at: string): string {
  if (typeof v !== 'string' || v === '')
    throw new PayloadError(`${at} must be a non-empty string, got ${describe(v)}`);
  if (v.length > 1024) throw new PayloadError(`${at} is longer than 1024 characters`);
  return v;
}

function stringField(o: Record<string, unknown>, key: string, at: string): string {
  return stringAt(o[key], `${at}.${key}`);
}

function optionalString(o: Record<string, unknown>, key: string, at: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  return stringAt(v, `${at}.${key}`);
}

function arrayField(o: Record<string, unknown>, key: string, at: string): unknown[] {
  const v = o[key];
  if (!Array.isArray(v)) throw new PayloadError(`${at}.${key} must be a list, got ${describe(v)}`);
  return v;
}
