import type { KubeConfig, V1Secret, V1ServiceAccount } from '@kubernetes/client-node';
import {
  apiStatusCode,
  applyStatus,
  createObject,
  dropManagedFields,
  FIELD_MANAGER,
  getObject,
  listObjects,
  RESOURCE,
  readObject,
  replaceObject,
  reuseConnections,
  WATCHED_IMAGE,
  type WatchedImage,
  WORKLOAD_KIND_NAMES,
  type WorkloadLike,
  workloadLikeOf,
  workloadResource,
} from '@kubewatcher/shared';
import { CHECK_RECORD_KEY } from './check-record.ts';
import type { ImageUpdateDraft, PollerStatus } from './plan.ts';

/** Everything the poller reads from and writes to the cluster, so a run can be exercised with --dry-run. */
export interface PollerCluster {
  listWatchedImages(namespace?: string): Promise<WatchedImage[]>;
  listWorkloads(namespace: string, kinds: readonly string[]): Promise<WorkloadLike[]>;
  /** undefined when the object does not exist. */
  getServiceAccountPullSecrets(namespace: string, name: string): Promise<string[] | undefined>;
  getSecret(
    namespace: string,
    name: string,
  ): Promise<{ type?: string; data?: Record<string, string> } | undefined>;
  applyStatus(wi: WatchedImage, status: PollerStatus): Promise<void>;
  /** Creates the ImageUpdate; returns the existing object instead when the name is taken. */
  createImageUpdate(
    draft: ImageUpdateDraft,
  ): Promise<{ created: true } | { created: false; existing: ExistingUpdate }>;
  /** The check record's ConfigMap as read; undefined when it does not exist. */
  readCheckRecord(ref: ObjectRef): Promise<StoredCheckRecord | undefined>;
  /** Replaces the record's value, if the ConfigMap has not changed since `stored` was read; false on a conflict. */
  replaceCheckRecord(ref: ObjectRef, stored: StoredCheckRecord, text: string): Promise<boolean>;
}

export interface ObjectRef {
  namespace: string;
  name: string;
}

export interface StoredCheckRecord {
  /** The record's value (CHECK_RECORD_KEY); absent in a ConfigMap as shipped. */
  text?: string;
  /** The ConfigMap itself, at the resourceVersion it was read. */
  configMap: ConfigMapShape;
}

export interface ExistingUpdate {
  metadata?: { creationTimestamp?: string | Date };
  spec?: { fromDigest?: string; toDigest?: string };
}

const LIST_PAGE_SIZE = 500;

/**
 * The poller's API calls as plain JSON requests (packages/shared's `listObjects`, `getObject`...), not
 * client-node's generated API classes: those load every generated model at each start of a process that
 * runs every minute.
 */
export class KubePollerCluster implements PollerCluster {
  readonly #kc: KubeConfig;
  readonly #pageSize: number;

  /** `listPageSize`: WatchedImages and workloads per list request (default 500). */
  constructor(kc: KubeConfig, opts: { listPageSize?: number } = {}) {
    this.#pageSize = opts.listPageSize ?? LIST_PAGE_SIZE;
    // One keep-alive pool for every call (client-node builds a new connection per request).
    this.#kc = reuseConnections(kc);
  }

  async listWatchedImages(namespace?: string): Promise<WatchedImage[]> {
    // In pages, and without managedFields (60% of a WatchedImage's JSON, never read here), so 5,000
    // WatchedImages are neither one 18 MB response nor held whole for the run.
    return await listObjects<WatchedImage>(this.#kc, RESOURCE.watchedImage, {
      ...(namespace ? { namespace } : {}),
      pageSize: this.#pageSize,
    });
  }

  /**
   * The namespace's workloads of `kinds`, in pages, each kept only as the fields matching reads: a
   * tenant's namespace of large workloads is neither one huge response nor held whole for the run.
   */
  async listWorkloads(namespace: string, kinds: readonly string[]): Promise<WorkloadLike[]> {
    const out: WorkloadLike[] = [];
    for (const kind of WORKLOAD_KIND_NAMES.filter((k) => kinds.includes(k))) {
      const items = await listObjects(this.#kc, workloadResource(kind), {
        namespace,
        pageSize: this.#pageSize,
        keep: (item) => workloadLikeOf(item, kind),
      });
      out.push(...items);
    }
    return out;
  }

  async getServiceAccountPullSecrets(namespace: string, name: string): Promise<string[] | undefined> {
    const sa = await getObject<V1ServiceAccount>(this.#kc, RESOURCE.serviceAccount, namespace, name);
    if (!sa) return undefined;
    return (sa.imagePullSecrets ?? []).map((r) => r.name).filter((n): n is string => Boolean(n));
  }

  async getSecret(namespace: string, name: string) {
    const secret = await getObject<V1Secret>(this.#kc, RESOURCE.secret, namespace, name);
    if (!secret) return undefined;
    return { ...(secret.type ? { type: secret.type } : {}), ...(secret.data ? { data: secret.data } : {}) };
  }

  async applyStatus(wi: WatchedImage, status: PollerStatus): Promise<void> {
    // The one write per checked WatchedImage. Unconditional: the poller owns its fields, whatever the
    // controller wrote since the list.
    await applyStatus(this.#kc, {
      resource: WATCHED_IMAGE,
      namespace: wi.metadata.namespace!,
      name: wi.metadata.name,
      fieldManager: FIELD_MANAGER.poller,
      status,
    });
  }

  async createImageUpdate(draft: ImageUpdateDraft) {
    const namespace = draft.body.metadata.namespace;
    try {
      await createObject(this.#kc, RESOURCE.imageUpdate, namespace, draft.body, {
        fieldManager: FIELD_MANAGER.poller,
      });
      return { created: true as const };
    } catch (err) {
      if (apiStatusCode(err) !== 409) throw err;
    }
    const existing = await readObject<ExistingUpdate>(this.#kc, RESOURCE.imageUpdate, namespace, draft.name);
    return { created: false as const, existing };
  }

  async readCheckRecord(ref: ObjectRef): Promise<StoredCheckRecord | undefined> {
    const configMap = await getObject<ConfigMapShape>(this.#kc, RESOURCE.configMap, ref.namespace, ref.name);
    if (!configMap) return undefined;
    dropManagedFields(configMap);
    const text = configMap.data?.[CHECK_RECORD_KEY];
    return { ...(text === undefined ? {} : { text }), configMap };
  }

  async replaceCheckRecord(ref: ObjectRef, stored: StoredCheckRecord, text: string): Promise<boolean> {
    // The ConfigMap as read, at its resourceVersion (update is all RBAC grants on it, and its other
    // keys, labels and annotations are kept), with the new record.
    const { configMap } = stored;
    try {
      await replaceObject(
        this.#kc,
        RESOURCE.configMap,
        ref.namespace,
        ref.name,
        { ...configMap, data: { ...configMap.data, [CHECK_RECORD_KEY]: text } },
        { fieldManager: FIELD_MANAGER.poller },
      );
      return true;
    } catch (err) {
      if (apiStatusCode(err) === 409) return false;
      throw err;
    }
  }
}

export interface ConfigMapShape {
  metadata?: { resourceVersion?: string };
  data?: Record<string, string>;
}
