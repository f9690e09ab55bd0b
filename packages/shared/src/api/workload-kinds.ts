/**
 * The workload kinds Kubewatcher updates, described once. The controller (informers, patches,
 * rollouts), the poller (listing workloads for their pull secrets), the API schema (`spec.kinds`) and
 * the RBAC rules that scripts/render-manifests.ts writes all read this table, so a new kind is one
 * entry here (and, if it rolls out in a new way, one rule in the controller's rollout.ts).
 *
 * No imports: scripts/render-manifests.ts loads this file with plain Node.js.
 */

/**
 * How the controller knows an update has landed on a workload of the kind: by following its rollout
 * the way `kubectl rollout status` does (one rule per kind of status), or, for kinds with nothing to
 * roll out, once the pod template is patched.
 */
export type RolloutRule = 'Deployment' | 'StatefulSet' | 'DaemonSet' | 'TemplatePatched';

export interface WorkloadKindInfo {
  /** API group and version, e.g. `apps` and `v1`. */
  group: string;
  version: string;
  /** The resource's plural, e.g. `deployments`. */
  plural: string;
  /** Where the pod template sits in the object. */
  podTemplatePath: readonly string[];
  rollout: RolloutRule;
  /** For descriptions: how an update of the kind ends. */
  note: string;
}

export const WORKLOAD_KINDS = {
  Deployment: {
    group: 'apps',
    version: 'v1',
    plural: 'deployments',
    podTemplatePath: ['spec', 'template'],
    rollout: 'Deployment',
    note: 'followed until every replica runs the new template',
  },
  StatefulSet: {
    group: 'apps',
    version: 'v1',
    plural: 'statefulsets',
    podTemplatePath: ['spec', 'template'],
    rollout: 'StatefulSet',
    note: 'followed until every replica runs the new revision',
  },
  DaemonSet: {
    group: 'apps',
    version: 'v1',
    plural: 'daemonsets',
    podTemplatePath: ['spec', 'template'],
    rollout: 'DaemonSet',
    note: 'followed until every scheduled pod runs the new template',
  },
  CronJob: {
    group: 'batch',
    version: 'v1',
    plural: 'cronjobs',
    podTemplatePath: ['spec', 'jobTemplate', 'spec', 'template'],
    rollout: 'TemplatePatched',
    note: 'done once the job template is patched: the next Job runs the new digest',
  },
} as const satisfies Record<string, WorkloadKindInfo>;

export type WorkloadKind = keyof typeof WORKLOAD_KINDS;

/** The kind names as an enum-like object, e.g. `WORKLOAD_KIND.CronJob === 'CronJob'`. */
export const WORKLOAD_KIND = Object.fromEntries(Object.keys(WORKLOAD_KINDS).map((k) => [k, k])) as {
  readonly [K in WorkloadKind]: K;
};

/** Every kind name, in table order. */
export const WORKLOAD_KIND_NAMES = Object.keys(WORKLOAD_KINDS) as WorkloadKind[];

export function isWorkloadKind(kind: string): kind is WorkloadKind {
  return Object.hasOwn(WORKLOAD_KINDS, kind);
}

export function workloadKindInfo(kind: WorkloadKind): WorkloadKindInfo {
  return WORKLOAD_KINDS[kind];
}

/** `apps/v1`, `batch/v1`. */
export function apiVersionOf(kind: WorkloadKind): string {
  const { group, version } = WORKLOAD_KINDS[kind];
  return `${group}/${version}`;
}

/** The pod template of a workload object, found by its kind's path; undefined when absent. */
export function podTemplateOf<T = unknown>(kind: WorkloadKind, workload: unknown): T | undefined {
  let node: unknown = workload;
  for (const key of WORKLOAD_KINDS[kind].podTemplatePath) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return (node ?? undefined) as T | undefined;
}

/** `value` nested under the kind's pod template path: the body of a patch to the template. */
export function underPodTemplate(kind: WorkloadKind, value: unknown): Record<string, unknown> {
  return WORKLOAD_KINDS[kind].podTemplatePath.reduceRight<unknown>(
    (inner, key) => ({ [key]: inner }),
    value,
  ) as Record<string, unknown>;
}
