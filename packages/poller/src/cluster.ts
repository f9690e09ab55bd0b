import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import {
  apiStatusCode,
  applyStatus,
  dropManagedFields,
  FIELD_MANAGER,
  GROUP,
  IMAGE_UPDATE,
  reuseConnections,
  VERSION,
  WATCHED_IMAGE,
  type WatchedImage,
  WORKLOAD_KIND_NAMES,
  WORKLOAD_KINDS,
  type WorkloadLike,
  workloadLikeOf,
} from '@kubewatcher/shared';
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
}

export interface ExistingUpdate {
  metadata?: { creationTimestamp?: string | Date };
  spec?: { fromDigest?: string; toDigest?: string };
}

const LIST_PAGE_SIZE = 500;

async function orUndefinedOn404<T>(call: Promise<T>): Promise<T | undefined> {
  try {
    return await call;
  } catch (err) {
    if (apiStatusCode(err) === 404) return undefined;
    throw err;
  }
}

export class KubePollerCluster implements PollerCluster {
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  readonly #kc: KubeConfig;
  readonly #pageSize: number;

  /** `listPageSize`: WatchedImages and workloads per list request (default 500). */
  constructor(kc: KubeConfig, opts: { listPageSize?: number } = {}) {
    this.#pageSize = opts.listPageSize ?? LIST_PAGE_SIZE;
    // One keep-alive pool for both API clients (client-node's own makeApiClient opens a connection per call).
    this.#kc = reuseConnections(kc);
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
  }

  async listWatchedImages(namespace?: string): Promise<WatchedImage[]> {
    const out: WatchedImage[] = [];
    // In pages, and without managedFields (60% of a WatchedImage's JSON, never read here), so 5,000
    // WatchedImages are neither one 18 MB response nor held whole for the run.
    let next: string | undefined;
    do {
      const common = {
        group: GROUP,
        version: VERSION,
        plural: WATCHED_IMAGE.plural,
        limit: this.#pageSize,
        ...(next ? { _continue: next } : {}),
      };
      const page = (
        namespace
          ? await this.#custom.listNamespacedCustomObject({ ...common, namespace })
          : await this.#custom.listClusterCustomObject(common)
      ) as { items?: WatchedImage[]; metadata?: { continue?: string } };
      for (const wi of page.items ?? []) out.push(dropManagedFields(wi));
      next = page.metadata?.continue || undefined;
    } while (next);
    return out;
  }

  /**
   * The namespace's workloads of `kinds`, in pages, each kept only as the fields matching reads: a
   * tenant's namespace of large workloads is neither one huge response nor held whole for the run.
   */
  async listWorkloads(namespace: string, kinds: readonly string[]): Promise<WorkloadLike[]> {
    const out: WorkloadLike[] = [];
    // Any kind of the table by its group, version and plural (the generic path lists built-in resources
    // as well as custom ones), in pages.
    for (const kind of WORKLOAD_KIND_NAMES.filter((k) => kinds.includes(k))) {
      const { group, version, plural } = WORKLOAD_KINDS[kind];
      let next: string | undefined;
      do {
        const page = (await this.#custom.listNamespacedCustomObject({
          group,
          version,
          plural,
          namespace,
          limit: this.#pageSize,
          ...(next ? { _continue: next } : {}),
        })) as { items?: unknown[]; metadata?: { continue?: string } };
        for (const item of page.items ?? []) out.push(workloadLikeOf(item, kind));
        next = page.metadata?.continue || undefined;
      } while (next);
    }
    return out;
  }

  async getServiceAccountPullSecrets(namespace: string, name: string): Promise<string[] | undefined> {
    const sa = await orUndefinedOn404(this.#core.readNamespacedServiceAccount({ namespace, name }));
    if (!sa) return undefined;
    return (sa.imagePullSecrets ?? []).map((r) => r.name).filter((n): n is string => Boolean(n));
  }

  async getSecret(namespace: string, name: string) {
    const secret = await orUndefinedOn404(this.#core.readNamespacedSecret({ namespace, name }));
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
    const common = {
      group: GROUP,
      version: VERSION,
      plural: IMAGE_UPDATE.plural,
      namespace: draft.body.metadata.namespace,
    };
    try {
      await this.#custom.createNamespacedCustomObject({ ...common, body: draft.body });
      return { created: true as const };
    } catch (err) {
      if (apiStatusCode(err) !== 409) throw err;
    }
    const existing = (await this.#custom.getNamespacedCustomObject({
      ...common,
      name: draft.name,
    })) as ExistingUpdate;
    return { created: false as const, existing };
  }
}
