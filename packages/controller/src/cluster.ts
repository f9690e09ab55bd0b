import {
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import {
  ANNOTATION,
  AUTO_WATCH_ANNOTATION,
  apiStatusCode,
  applyStatus,
  FIELD_MANAGER,
  GROUP,
  IMAGE_UPDATE,
  type ImageUpdate,
  type ImageUpdateStatus,
  LABEL,
  MANAGED_BY_LABEL,
  requestJson,
  underPodTemplate,
  VERSION,
  WATCHED_IMAGE,
  type WatchedImage,
  WORKLOAD_KINDS,
} from '@kubewatcher/shared';
import type { GeneratedWatchedImage } from './plan-auto-watch.ts';
import type { PlannedEvent, WorkloadPatch } from './plan-update.ts';
import type { ControllerStatus } from './plan-watched-image.ts';

/**
 * The strategic merge patch that pins containers: only the named containers (merged by name) under
 * the kind's pod template path, and the annotation naming the ImageUpdate.
 */
export function workloadPatchBody(patch: WorkloadPatch, updateName: string): Record<string, unknown> {
  const podSpec: Record<string, unknown> = {};
  if (patch.containers.length > 0) podSpec.containers = patch.containers;
  if (patch.initContainers.length > 0) podSpec.initContainers = patch.initContainers;
  return {
    metadata: { annotations: { [ANNOTATION.imageUpdate]: updateName } },
    ...underPodTemplate(patch.kind, { spec: podSpec }),
  };
}

/** The value of LABEL.access on the poller's secret-access RoleBindings. */
export const POLLER_SECRETS_ACCESS = 'poller-secrets';

/** Which ClusterRole the controller binds to which service account (the poller's) per watched namespace. */
export interface PollerAccessGrant {
  role: string;
  serviceAccount: { namespace: string; name: string };
}

/** Every write the controller makes, in one place: the thin "apply" of gather → plan → apply. */
export class ControllerWriter {
  readonly #kc: KubeConfig;
  readonly #custom: CustomObjectsApi;
  readonly #core: CoreV1Api;
  readonly #reportingInstance: string;

  constructor(kc: KubeConfig, reportingInstance: string) {
    this.#kc = kc;
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#reportingInstance = reportingInstance;
  }

  /**
   * Writes an ImageUpdate's status with server-side apply, conditional on the resourceVersion the
   * plan was made from: a stale cache gets a 409 and the reconcile starts over from fresh data, so
   * two writers can never both move an update forward.
   */
  async applyUpdateStatus(update: ImageUpdate, status: ImageUpdateStatus): Promise<void> {
    await this.#applyStatus(IMAGE_UPDATE, update.metadata, status);
  }

  /** Writes the controller-owned fields of a WatchedImage's status (the poller owns the others). */
  async applyWatchedImageStatus(wi: WatchedImage, status: ControllerStatus): Promise<void> {
    await this.#applyStatus(WATCHED_IMAGE, wi.metadata, status);
  }

  async #applyStatus(
    resource: { kind: string; plural: string },
    meta: { name: string; namespace?: string; resourceVersion?: string },
    status: unknown,
  ): Promise<void> {
    await applyStatus(this.#kc, {
      resource,
      namespace: meta.namespace!,
      name: meta.name,
      fieldManager: FIELD_MANAGER.controller,
      ...(meta.resourceVersion ? { resourceVersion: meta.resourceVersion } : {}),
      status,
    });
  }

  /** Strategic merge patch: containers merge by name, so only the named ones change. */
  async patchWorkload(namespace: string, patch: WorkloadPatch, updateName: string): Promise<void> {
    // Any kind of the table by its group, version and plural: the generic path takes a strategic
    // merge patch for built-in resources as their typed clients do.
    const { group, version, plural } = WORKLOAD_KINDS[patch.kind];
    await this.#custom.patchNamespacedCustomObject(
      {
        group,
        version,
        plural,
        namespace,
        name: patch.name,
        body: workloadPatchBody(patch, updateName),
        fieldManager: FIELD_MANAGER.controller,
      },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    );
  }

  /**
   * Creates or changes a generated WatchedImage with server-side apply. A change carries the
   * resourceVersion it was planned from, so an edit made meanwhile gets a 409 and a fresh plan rather
   * than being overwritten; a creation is not forced, so it never takes fields over from another
   * writer of an object of that name.
   */
  async applyGeneratedWatchedImage(wi: GeneratedWatchedImage, resourceVersion?: string): Promise<void> {
    const { namespace, name } = wi.metadata;
    await this.#custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: WATCHED_IMAGE.plural,
        namespace,
        name,
        body: resourceVersion ? { ...wi, metadata: { ...wi.metadata, resourceVersion } } : wi,
        fieldManager: FIELD_MANAGER.controller,
        force: resourceVersion !== undefined,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }

  /** Deletes a generated WatchedImage if it is still the version judged unused (its ImageUpdates go with it). */
  async deleteWatchedImage(
    namespace: string,
    name: string,
    preconditions: { uid?: string; resourceVersion?: string },
  ): Promise<void> {
    // Background: the garbage collector deletes its ImageUpdates (they are owned by it).
    await this.#delete(WATCHED_IMAGE.plural, namespace, name, {
      propagationPolicy: 'Background',
      preconditions,
    });
  }

  /**
   * Hands a generated WatchedImage over to the person who edited it: drops the generated label and
   * annotation (a merge patch at the version that was judged edited), leaving the spec as they made it.
   */
  async releaseWatchedImage(namespace: string, name: string, resourceVersion?: string): Promise<void> {
    await this.#custom.patchNamespacedCustomObject(
      {
        group: GROUP,
        version: VERSION,
        plural: WATCHED_IMAGE.plural,
        namespace,
        name,
        body: {
          metadata: {
            ...(resourceVersion ? { resourceVersion } : {}),
            labels: { [MANAGED_BY_LABEL]: null },
            annotations: { [AUTO_WATCH_ANNOTATION.generatedSpec]: null },
          },
        },
        fieldManager: FIELD_MANAGER.controller,
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  }

  /**
   * The RoleBinding that lets the poller read secrets in `namespace`: `grant.role` (a ClusterRole that
   * grants `get secrets`) bound to the poller's service account. Server-side apply, so it is made once
   * and left as it is after.
   */
  async applyPollerAccess(namespace: string, grant: PollerAccessGrant): Promise<void> {
    await requestJson(this.#kc, {
      method: 'PATCH',
      path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/rolebindings/${encodeURIComponent(grant.role)}`,
      query: { fieldManager: FIELD_MANAGER.controller, force: 'true' },
      contentType: PatchStrategy.ServerSideApply,
      body: {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: {
          name: grant.role,
          namespace,
          labels: { [LABEL.access]: POLLER_SECRETS_ACCESS, 'app.kubernetes.io/managed-by': 'kubewatcher' },
        },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: grant.role },
        subjects: [
          {
            kind: 'ServiceAccount',
            name: grant.serviceAccount.name,
            namespace: grant.serviceAccount.namespace,
          },
        ],
      },
    });
  }

  /** Removes the poller's secret access from `namespace`; already gone is fine. */
  async deletePollerAccess(namespace: string, grant: PollerAccessGrant): Promise<void> {
    try {
      await requestJson(this.#kc, {
        method: 'DELETE',
        path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/rolebindings/${encodeURIComponent(grant.role)}`,
      });
    } catch (err) {
      if (apiStatusCode(err) !== 404) throw err;
    }
  }

  /** Namespaces that hold a poller-access RoleBinding the controller made. */
  async listPollerAccessNamespaces(): Promise<string[]> {
    const list = (await requestJson(this.#kc, {
      method: 'GET',
      path: '/apis/rbac.authorization.k8s.io/v1/rolebindings',
      query: { labelSelector: `${LABEL.access}=${POLLER_SECRETS_ACCESS}` },
    })) as { items?: { metadata?: { namespace?: string } }[] };
    return (list.items ?? []).map((b) => b.metadata?.namespace ?? '').filter((ns) => ns !== '');
  }

  async deleteUpdate(namespace: string, name: string): Promise<void> {
    await this.#delete(IMAGE_UPDATE.plural, namespace, name);
  }

  /** Deletes one of Kubewatcher's objects; already gone (404) is done. */
  async #delete(plural: string, namespace: string, name: string, body?: object): Promise<void> {
    try {
      await this.#custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural,
        namespace,
        name,
        ...(body ? { body } : {}),
      });
    } catch (err) {
      if (apiStatusCode(err) !== 404) throw err;
    }
  }

  /** Records a core/v1 Event; failures to record are the caller's to log, never fatal. */
  async recordEvent(
    involved: { apiVersion: string; kind: string; name: string; namespace: string; uid?: string },
    event: Pick<PlannedEvent, 'type' | 'reason' | 'message'>,
    now: Date,
  ): Promise<void> {
    await this.#core.createNamespacedEvent({
      namespace: involved.namespace,
      body: {
        metadata: { generateName: `${involved.name}.`, namespace: involved.namespace },
        involvedObject: {
          apiVersion: involved.apiVersion,
          kind: involved.kind,
          name: involved.name,
          namespace: involved.namespace,
          ...(involved.uid ? { uid: involved.uid } : {}),
        },
        type: event.type,
        reason: event.reason,
        message: event.message.slice(0, 1024),
        firstTimestamp: now,
        lastTimestamp: now,
        count: 1,
        source: { component: 'kubewatcher-controller', host: this.#reportingInstance },
      },
    });
  }
}
