import { boundMessage, readAnnotations, type WorkloadKind, workloadLikeOf } from '@kubewatcher/shared';
import type { Workload } from './plan-update.ts';

/**
 * The fields of a Deployment, StatefulSet or DaemonSet the controller reads (matching, planning,
 * rollouts, its own conflict checks), and nothing else: what the informer caches keep. A workload's
 * owner can make it large (env, volumes, annotations, a 1 MiB last-applied-configuration); keeping
 * whole objects let one tenant's big workloads push the controller past its memory limit.
 * Annotations: only the ones Kubewatcher reads (READ_ANNOTATIONS). Condition messages are bounded.
 */
/** `kind`: the informer's (objects of a list carry none). */
export function cachedWorkload(obj: unknown, kind: WorkloadKind): Workload {
  const w = obj as Workload & {
    apiVersion?: string;
    metadata: Workload['metadata'] & { resourceVersion?: string; namespace?: string };
  };
  const m = w.metadata ?? {};
  const matched = workloadLikeOf(w, kind);
  const strategy = w.spec?.updateStrategy;
  const status = w.status;
  return pick({
    apiVersion: w.apiVersion,
    kind: w.kind ?? kind,
    metadata: pick({
      ...matched.metadata,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      generation: m.generation,
      annotations: readAnnotations(m.annotations),
    }),
    // The pod template where the kind keeps it (a CronJob's under spec.jobTemplate), from workloadLikeOf.
    spec: w.spec
      ? pick({
          ...(matched.spec as Record<string, unknown> | undefined),
          replicas: w.spec.replicas,
          updateStrategy: strategy
            ? pick({
                type: strategy.type,
                rollingUpdate: strategy.rollingUpdate
                  ? pick({ partition: strategy.rollingUpdate.partition })
                  : undefined,
              })
            : undefined,
        })
      : undefined,
    status: status
      ? pick({
          observedGeneration: status.observedGeneration,
          replicas: status.replicas,
          updatedReplicas: status.updatedReplicas,
          availableReplicas: status.availableReplicas,
          readyReplicas: status.readyReplicas,
          unavailableReplicas: status.unavailableReplicas,
          currentRevision: status.currentRevision,
          updateRevision: status.updateRevision,
          desiredNumberScheduled: status.desiredNumberScheduled,
          updatedNumberScheduled: status.updatedNumberScheduled,
          numberAvailable: status.numberAvailable,
          conditions: status.conditions?.map((c) =>
            pick({
              type: c.type,
              status: c.status,
              reason: c.reason,
              message: c.message === undefined ? undefined : boundMessage(c.message),
            }),
          ),
        })
      : undefined,
  }) as unknown as Workload;
}

/** The object without its undefined fields, so a cached copy has no keys the original lacked. */
function pick<T extends Record<string, unknown>>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
