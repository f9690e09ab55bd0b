import type { KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import { apiVersionOf, WORKLOAD_KINDS, type WorkloadKind } from './api/workload-kinds.ts';
import { API_VERSION, IMAGE_UPDATE, WATCHED_IMAGE } from './constants.ts';
import { dropManagedFields, requestJson } from './kube.ts';
import { apiStatusCode } from './kube-errors.ts';

/**
 * Every API call of the controller and the poller, as typed calls over `requestJson`: a path built from
 * the resource, one undici request through the KubeConfig's credentials and pooled connection.
 *
 * Why not client-node's generated API classes (CoreV1Api, AppsV1Api, CustomObjectsApi...): each one
 * reaches the generated ObjectSerializer, which holds all ~900 model classes, 8 of the 8.5 MB of a
 * program's bundle, loaded and compiled at every start of the poller. client-node stays the one place
 * for the kubeconfig, the credentials (tokens, exec and OIDC plugins, client certificates) and watches.
 *
 * Objects come back as the server's JSON: timestamps are RFC 3339 strings even where client-node's model
 * types say `Date` (the type parameters below are what the caller reads, as it reads it). Failures throw
 * client-node's ApiException with the server's status code, read with `apiStatusCode`.
 */

/** Where a kind of object lives in the API. */
export interface ResourceType {
  /** `v1`, `apps/v1`, `kubewatcher.io/v1alpha1`. */
  apiVersion: string;
  /** `ConfigMap`; list responses omit it on items. */
  kind: string;
  /** `configmaps`. */
  plural: string;
}

/** A workload kind as a resource (from the one table of workload kinds). */
export function workloadResource(kind: WorkloadKind): ResourceType {
  return { apiVersion: apiVersionOf(kind), kind, plural: WORKLOAD_KINDS[kind].plural };
}

/** The other resources Kubewatcher reads or writes. */
export const RESOURCE = {
  watchedImage: { apiVersion: API_VERSION, kind: WATCHED_IMAGE.kind, plural: WATCHED_IMAGE.plural },
  imageUpdate: { apiVersion: API_VERSION, kind: IMAGE_UPDATE.kind, plural: IMAGE_UPDATE.plural },
  secret: { apiVersion: 'v1', kind: 'Secret', plural: 'secrets' },
  configMap: { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps' },
  serviceAccount: { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts' },
  event: { apiVersion: 'v1', kind: 'Event', plural: 'events' },
  lease: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', plural: 'leases' },
  roleBinding: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'RoleBinding', plural: 'rolebindings' },
  clusterRole: { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', plural: 'clusterroles' },
  /** The poller's CronJob, which the webhook starts a Job from. */
  cronJob: workloadResource('CronJob'),
  job: { apiVersion: 'batch/v1', kind: 'Job', plural: 'jobs' },
} as const satisfies Record<string, ResourceType>;

/**
 * The API path of a resource (all namespaces or one), of one object, or of its subresource:
 * `/apis/apps/v1/namespaces/ns/deployments/web/status`. Namespaces and names are URL-encoded.
 */
export function resourcePath(
  resource: ResourceType,
  namespace?: string,
  name?: string,
  subresource?: string,
): string {
  const base = resource.apiVersion.includes('/')
    ? `/apis/${resource.apiVersion}`
    : `/api/${resource.apiVersion}`;
  let path = namespace
    ? `${base}/namespaces/${encodeURIComponent(namespace)}/${resource.plural}`
    : `${base}/${resource.plural}`;
  if (name !== undefined) path += `/${encodeURIComponent(name)}`;
  if (subresource !== undefined) {
    if (name === undefined) throw new Error(`resourcePath: subresource ${subresource} needs an object name`);
    path += `/${subresource}`;
  }
  return path;
}

export interface ListOptions {
  /** One namespace; absent: all namespaces. */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Objects per list request (default 500), following `continue` tokens to the end. */
  pageSize?: number;
}

export interface ListKeepOptions<T> extends ListOptions {
  /** What to keep of each object, applied as its page arrives (so whole objects are not held). */
  keep: (item: object) => T;
}

/**
 * Every object of `resource` (in one namespace or all), listed page by page and without
 * `metadata.managedFields` (dropped as each page arrives: Kubewatcher never reads them, and they are half
 * of an object's JSON), or only what `keep` takes of each. Items get the resource's `apiVersion` and
 * `kind`, which list responses omit.
 */
export async function listObjects<T>(
  kc: KubeConfig,
  resource: ResourceType,
  opts: ListOptions | ListKeepOptions<T> = {},
): Promise<T[]> {
  const keep = 'keep' in opts ? opts.keep : (item: object) => item as T;
  const path = resourcePath(resource, opts.namespace);
  const query: Record<string, string> = { limit: String(opts.pageSize ?? 500) };
  if (opts.labelSelector) query.labelSelector = opts.labelSelector;
  if (opts.fieldSelector) query.fieldSelector = opts.fieldSelector;
  const out: T[] = [];
  let next: string | undefined;
  do {
    const page = (await requestJson(kc, {
      method: 'GET',
      path,
      query: next ? { ...query, continue: next } : query,
    })) as { items?: object[]; metadata?: { continue?: string } } | undefined;
    for (const item of page?.items ?? []) {
      out.push(keep({ apiVersion: resource.apiVersion, kind: resource.kind, ...dropManagedFields(item) }));
    }
    next = page?.metadata?.continue || undefined;
  } while (next);
  return out;
}

/** One object; a missing one fails like any other request (an ApiException with code 404). */
export async function readObject<T>(
  kc: KubeConfig,
  resource: ResourceType,
  namespace: string,
  name: string,
): Promise<T> {
  return (await requestJson(kc, { method: 'GET', path: resourcePath(resource, namespace, name) })) as T;
}

/** One object, or undefined when it does not exist (a 404). */
export async function getObject<T>(
  kc: KubeConfig,
  resource: ResourceType,
  namespace: string,
  name: string,
): Promise<T | undefined> {
  try {
    return await readObject<T>(kc, resource, namespace, name);
  } catch (err) {
    if (apiStatusCode(err) === 404) return undefined;
    throw err;
  }
}

/** Who writes: the field manager named in `managedFields` (and in audit logs). */
export interface WriteOptions {
  fieldManager?: string;
}

/** Creates an object in `namespace`; a 409 (ApiException) when its name is taken. Returns what the server stored. */
export async function createObject<T>(
  kc: KubeConfig,
  resource: ResourceType,
  namespace: string,
  body: object,
  opts: WriteOptions = {},
): Promise<T> {
  return (await requestJson(kc, {
    method: 'POST',
    path: resourcePath(resource, namespace),
    ...fieldManagerQuery(opts),
    body: { apiVersion: resource.apiVersion, kind: resource.kind, ...body },
  })) as T;
}

/** Replaces an object whole; a 409 when `body.metadata.resourceVersion` is stale. */
export async function replaceObject<T>(
  kc: KubeConfig,
  resource: ResourceType,
  namespace: string,
  name: string,
  body: object,
  opts: WriteOptions = {},
): Promise<T> {
  return (await requestJson(kc, {
    method: 'PUT',
    path: resourcePath(resource, namespace, name),
    ...fieldManagerQuery(opts),
    body: { apiVersion: resource.apiVersion, kind: resource.kind, ...body },
  })) as T;
}

export interface PatchOptions extends WriteOptions {
  /** How the server merges the patch: JSON merge, strategic merge (lists of containers by name), server-side apply... */
  strategy: PatchStrategy;
  /** Server-side apply: take the fields sent even when another manager owns them. */
  force?: boolean;
  /** E.g. `status`. */
  subresource?: string;
}

/** Patches an object (or its subresource); returns the object as the server stored it. */
export async function patchObject<T>(
  kc: KubeConfig,
  resource: ResourceType,
  namespace: string,
  name: string,
  patch: object,
  opts: PatchOptions,
): Promise<T> {
  const query = fieldManagerQuery(opts).query ?? {};
  if (opts.force) query.force = 'true';
  return (await requestJson(kc, {
    method: 'PATCH',
    path: resourcePath(resource, namespace, name, opts.subresource),
    query,
    contentType: opts.strategy,
    body: patch,
  })) as T;
}

/** What a delete may say: how dependents go, and which version of the object it is meant for. */
export interface DeleteOptions {
  /** `Background`: the object goes at once, the garbage collector takes its dependents after. */
  propagationPolicy?: 'Background' | 'Foreground' | 'Orphan';
  /** The delete fails with a 409 when the object's uid or resourceVersion differs. */
  preconditions?: { uid?: string; resourceVersion?: string };
}

/** Deletes an object; false when it was already gone (a 404). */
export async function deleteObject(
  kc: KubeConfig,
  resource: ResourceType,
  namespace: string,
  name: string,
  opts: DeleteOptions = {},
): Promise<boolean> {
  const body =
    opts.propagationPolicy || opts.preconditions
      ? { apiVersion: 'v1', kind: 'DeleteOptions', ...opts }
      : undefined;
  try {
    await requestJson(kc, {
      method: 'DELETE',
      path: resourcePath(resource, namespace, name),
      ...(body ? { body } : {}),
    });
    return true;
  } catch (err) {
    if (apiStatusCode(err) === 404) return false;
    throw err;
  }
}

function fieldManagerQuery(opts: WriteOptions): { query?: Record<string, string> } {
  return opts.fieldManager ? { query: { fieldManager: opts.fieldManager } } : {};
}
