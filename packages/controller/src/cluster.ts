import { type CoreV1Event, type KubeConfig, PatchStrategy } from '@kubernetes/client-node';
import {
  ANNOTATION,
  AUTO_WATCH_ANNOTATION,
  applyStatus,
  boundMessage,
  createObject,
  deleteObject,
  FIELD_MANAGER,
  getObject,
  IMAGE_UPDATE,
  type ImageUpdate,
  type ImageUpdateStatus,
  LABEL,
  listObjects,
  MANAGED_BY_LABEL,
  patchObject,
  RESOURCE,
  underPodTemplate,
  WATCHED_IMAGE,
  type WatchedImage,
  workloadResource,
} from '@kubewatcher/shared';
import type { GeneratedWatchedImage } from './plan-auto-watch.ts';
import type { PlannedEvent, WorkloadPatch } from './plan-update.ts';
import type { ControllerStatus } from './plan-watched-image.ts';
import {
  POLLER_SECRETS_ACCESS,
  type PollerAccessGrant,
  pollerAccessBinding,
  type RoleBindingSeen,
} from './poller-access.ts';

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

/**
 * Every write the controller makes, in one place: the thin "apply" of gather → plan → apply. Plain JSON
 * requests (packages/shared's `patchObject`, `createObject`...), not client-node's generated API classes,
 * which would load all of its ~900 generated models into the process.
 */
export class ControllerWriter {
  readonly #kc: KubeConfig;
  readonly #reportingInstance: string;

  constructor(kc: KubeConfig, reportingInstance: string) {
    this.#kc = kc;
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
    await patchObject(
      this.#kc,
      workloadResource(patch.kind),
      namespace,
      patch.name,
      workloadPatchBody(patch, updateName),
      {
        strategy: PatchStrategy.StrategicMergePatch,
        fieldManager: FIELD_MANAGER.controller,
      },
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
    const body = resourceVersion ? { ...wi, metadata: { ...wi.metadata, resourceVersion } } : wi;
    await patchObject(this.#kc, RESOURCE.watchedImage, namespace, name, body, {
      strategy: PatchStrategy.ServerSideApply,
      fieldManager: FIELD_MANAGER.controller,
      force: resourceVersion !== undefined,
    });
  }

  /** Deletes a generated WatchedImage if it is still the version judged unused (its ImageUpdates go with it). */
  async deleteWatchedImage(
    namespace: string,
    name: string,
    preconditions: { uid?: string; resourceVersion?: string },
  ): Promise<void> {
    // Background: the garbage collector deletes its ImageUpdates (they are owned by it). Already gone
    // (404) is done.
    await deleteObject(this.#kc, RESOURCE.watchedImage, namespace, name, {
      propagationPolicy: 'Background',
      preconditions,
    });
  }

  /**
   * Hands a generated WatchedImage over to the person who edited it: drops the generated label and
   * annotation (a merge patch at the version that was judged edited), leaving the spec as they made it.
   */
  async releaseWatchedImage(namespace: string, name: string, resourceVersion?: string): Promise<void> {
    const body = {
      metadata: {
        ...(resourceVersion ? { resourceVersion } : {}),
        labels: { [MANAGED_BY_LABEL]: null },
        annotations: { [AUTO_WATCH_ANNOTATION.generatedSpec]: null },
      },
    };
    await patchObject(this.#kc, RESOURCE.watchedImage, namespace, name, body, {
      strategy: PatchStrategy.MergePatch,
      fieldManager: FIELD_MANAGER.controller,
    });
  }

  /** The RoleBinding named like the poller's grant in `namespace`, whoever made it; undefined when none. */
  async readPollerAccess(namespace: string, grant: PollerAccessGrant): Promise<RoleBindingSeen | undefined> {
    return await getObject<RoleBindingSeen>(this.#kc, RESOURCE.roleBinding, namespace, grant.role);
  }

  /** The ClusterRole the poller's bindings bind (and are owned by); undefined when it does not exist. */
  async readPollerRole(grant: PollerAccessGrant): Promise<{ metadata?: { uid?: string } } | undefined> {
    return await getObject(this.#kc, RESOURCE.clusterRole, '', grant.role);
  }

  /** Makes the poller's secret access in `namespace`; a 409 when a binding of that name appeared meanwhile. */
  async createPollerAccess(namespace: string, grant: PollerAccessGrant, roleUid?: string): Promise<void> {
    const binding = pollerAccessBinding(namespace, grant, roleUid);
    await createObject(this.#kc, RESOURCE.roleBinding, namespace, binding, {
      fieldManager: FIELD_MANAGER.controller,
    });
  }

  /**
   * Brings the controller's binding in `namespace` to the grant (server-side apply), at the version
   * judged the controller's: a binding replaced since gets a 409, never taken over.
   */
  async updatePollerAccess(
    namespace: string,
    grant: PollerAccessGrant,
    resourceVersion: string,
    roleUid?: string,
  ): Promise<void> {
    const binding = pollerAccessBinding(namespace, grant, roleUid);
    await patchObject(
      this.#kc,
      RESOURCE.roleBinding,
      namespace,
      grant.role,
      { ...binding, metadata: { ...binding.metadata, resourceVersion } },
      { strategy: PatchStrategy.ServerSideApply, fieldManager: FIELD_MANAGER.controller, force: true },
    );
  }

  /** Removes the poller's secret access from `namespace` if it is still the version judged the controller's; already gone is fine. */
  async deletePollerAccess(
    namespace: string,
    grant: PollerAccessGrant,
    preconditions: { uid: string; resourceVersion: string },
  ): Promise<void> {
    await deleteObject(this.#kc, RESOURCE.roleBinding, namespace, grant.role, { preconditions });
  }

  /** Namespaces that hold a poller-access RoleBinding the controller made. */
  async listPollerAccessNamespaces(): Promise<string[]> {
    const namespaces = await listObjects(this.#kc, RESOURCE.roleBinding, {
      labelSelector: `${LABEL.access}=${POLLER_SECRETS_ACCESS}`,
      keep: (binding) => (binding as { metadata?: { namespace?: string } }).metadata?.namespace ?? '',
    });
    return namespaces.filter((ns) => ns !== '');
  }

  /** Deletes an ImageUpdate; one already gone (404) is done. */
  async deleteUpdate(namespace: string, name: string): Promise<void> {
    await deleteObject(this.#kc, RESOURCE.imageUpdate, namespace, name);
  }

  /** Records a core/v1 Event; failures to record are the caller's to log, never fatal. */
  async recordEvent(
    involved: { apiVersion: string; kind: string; name: string; namespace: string; uid?: string },
    event: Pick<PlannedEvent, 'type' | 'reason' | 'message'>,
    now: Date,
  ): Promise<void> {
    // A Date is sent as its ISO string (RFC 3339 with milliseconds), as the generated client sent it.
    const body: CoreV1Event = {
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
      // One line, no control characters, at most 1 KiB: the text may come from a registry or a tenant.
      message: boundMessage(event.message),
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      source: { component: 'kubewatcher-controller', host: this.#reportingInstance },
    };
    await createObject(this.#kc, RESOURCE.event, involved.namespace, body);
  }
}
