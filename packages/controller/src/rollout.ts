/**
 * Whether a workload's rollout is done, still going or stuck, read from its status the way
 * `kubectl rollout status` reads it. Pure: the caller passes the object from the informer cache.
 */

import { isWorkloadKind, type RolloutRule, WORKLOAD_KINDS } from '@kubewatcher/shared';

export type RolloutState =
  | { done: true; message: string }
  | { done: false; failed: false; message: string }
  | { done: false; failed: true; message: string };

interface Condition {
  type?: string;
  status?: string;
  reason?: string;
  message?: string;
}

export interface RolloutWorkload {
  kind: string;
  metadata: { generation?: number; name: string };
  spec?: {
    replicas?: number;
    updateStrategy?: { type?: string; rollingUpdate?: { partition?: number } };
  };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    availableReplicas?: number;
    readyReplicas?: number;
    unavailableReplicas?: number;
    currentRevision?: string;
    updateRevision?: string;
    desiredNumberScheduled?: number;
    updatedNumberScheduled?: number;
    numberAvailable?: number;
    conditions?: Condition[];
  };
}

const going = (message: string): RolloutState => ({ done: false, failed: false, message });
const failed = (message: string): RolloutState => ({ done: false, failed: true, message });

/** One reading per rollout rule of the workload kinds table (packages/shared). */
const RULES: Record<RolloutRule, (w: RolloutWorkload) => RolloutState> = {
  Deployment: deploymentState,
  StatefulSet: statefulSetState,
  DaemonSet: daemonSetState,
  // Nothing rolls out: the patched template is what the next object made from it (a Job) runs.
  TemplatePatched: (w) => ({
    done: true,
    message: `${w.kind} template patched: the next run uses the new image`,
  }),
};

export function rolloutState(w: RolloutWorkload): RolloutState {
  if (!isWorkloadKind(w.kind)) return failed(`unsupported kind ${w.kind}`);
  const rule = WORKLOAD_KINDS[w.kind].rollout;
  if (rule === 'TemplatePatched') return RULES[rule](w);
  const status = w.status ?? {};
  const generation = w.metadata.generation ?? 0;
  if ((status.observedGeneration ?? 0) < generation) {
    return going(`waiting for the ${w.kind} controller to observe generation ${generation}`);
  }
  return RULES[rule](w);
}

function deploymentState(w: RolloutWorkload): RolloutState {
  const s = w.status ?? {};
  const progressing = s.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.reason === 'ProgressDeadlineExceeded') {
    return failed(
      `ProgressDeadlineExceeded: ${progressing.message ?? 'the rollout made no progress in time'}`,
    );
  }
  const desired = w.spec?.replicas ?? 1;
  const updated = s.updatedReplicas ?? 0;
  const total = s.replicas ?? 0;
  const available = s.availableReplicas ?? 0;
  if (updated < desired) return going(`${updated} of ${desired} replicas updated`);
  if (total > updated) return going(`${total - updated} old replicas pending termination`);
  if (available < updated) return going(`${available} of ${updated} updated replicas available`);
  return { done: true, message: `${updated} of ${desired} replicas updated and available` };
}

function statefulSetState(w: RolloutWorkload): RolloutState {
  const s = w.status ?? {};
  if (w.spec?.updateStrategy?.type === 'OnDelete') {
    return { done: true, message: 'updateStrategy OnDelete: pods update when deleted' };
  }
  const desired = w.spec?.replicas ?? 1;
  const ready = s.readyReplicas ?? 0;
  if (ready < desired) return going(`${ready} of ${desired} replicas ready`);
  const partition = w.spec?.updateStrategy?.rollingUpdate?.partition ?? 0;
  if (partition > 0) {
    const wanted = desired - partition;
    const updated = s.updatedReplicas ?? 0;
    if (updated < wanted) return going(`${updated} of ${wanted} replicas above the partition updated`);
    return { done: true, message: `${updated} replicas above partition ${partition} updated` };
  }
  if (s.updateRevision && s.currentRevision !== s.updateRevision) {
    return going(`${s.updatedReplicas ?? 0} of ${desired} replicas on the new revision`);
  }
  return { done: true, message: `${desired} replicas updated and ready` };
}

function daemonSetState(w: RolloutWorkload): RolloutState {
  const s = w.status ?? {};
  if (w.spec?.updateStrategy?.type === 'OnDelete') {
    return { done: true, message: 'updateStrategy OnDelete: pods update when deleted' };
  }
  const desired = s.desiredNumberScheduled ?? 0;
  const updated = s.updatedNumberScheduled ?? 0;
  const available = s.numberAvailable ?? 0;
  if (updated < desired) return going(`${updated} of ${desired} pods updated`);
  if (available < desired) return going(`${available} of ${desired} updated pods available`);
  return { done: true, message: `${desired} pods updated and available` };
}
