/**
 * The shipping manifests: the bundle matches its renderer, RBAC is least privilege and explicit, every
 * pod is hardened, the namespaced overlay has no cluster-wide grants, and the Helm chart renders the
 * same objects as the kustomize base. Needs kubectl (scripts/build-binaries.sh) and builds helm
 * (scripts/build-helm.sh) when missing; scripts/test has built both before the tests run.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type {
  V1ClusterRoleBinding,
  V1Container,
  V1CronJob,
  V1Deployment,
  V1EnvVar,
  V1PodDisruptionBudget,
  V1PodSpec,
  V1PolicyRule,
  V1Role,
  V1RoleBinding,
  V1Service,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { writeLocalHelmValues } from './lib/local-helm.ts';
import { writeLocalKustomization } from './lib/local-overlay.ts';
import { imageCommand } from './lib/programs.ts';
import {
  BUNDLE,
  driftedFiles,
  findKubectl,
  renderManifests,
  renderWorkloadRules,
  repoRoot,
  workloadRules,
} from './render-manifests.ts';

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}

const SYSTEM_NS = 'kubewatcher-system';
const REGISTRIES_FILE = '/etc/kubewatcher/registries/registries.yaml';
const IMAGE_REPO = 'ghcr.io/kubewatcher/kubewatcher';
const version = (
  JSON.parse(readFileSync(join(repoRoot, 'packages/controller/package.json'), 'utf8')) as { version: string }
).version;
const image = `${IMAGE_REPO}:${version}`;

/** What each service account may do, as `group/resource: verbs` (group '' is core). */
const NAMESPACED_CONTROLLER_RULES = {
  // create, patch (server-side apply) and delete: the generated WatchedImages of auto-watch.
  'kubewatcher.io/watchedimages': ['create', 'delete', 'get', 'list', 'patch', 'watch'],
  'kubewatcher.io/watchedimages/status': ['patch'],
  'kubewatcher.io/imageupdates': ['delete', 'get', 'list', 'watch'],
  'kubewatcher.io/imageupdates/status': ['patch'],
  'apps/deployments': ['get', 'list', 'patch', 'watch'],
  'apps/statefulsets': ['get', 'list', 'patch', 'watch'],
  'apps/daemonsets': ['get', 'list', 'patch', 'watch'],
  'batch/cronjobs': ['get', 'list', 'patch', 'watch'],
  '/events': ['create', 'patch'],
};
/** Auto-watch reads Namespace labels: cluster-scoped, so a ClusterRole of its own. */
const NAMESPACE_RULES = { '/namespaces': ['list', 'watch'] };
/** Cluster-wide, the controller also binds the poller's secrets role in each watched namespace. */
const CONTROLLER_RULES = {
  ...NAMESPACED_CONTROLLER_RULES,
  'rbac.authorization.k8s.io/rolebindings': ['create', 'list'],
  'rbac.authorization.k8s.io/rolebindings#kubewatcher-poller-secrets': ['delete', 'get', 'patch'],
  'rbac.authorization.k8s.io/clusterroles#kubewatcher-poller-secrets': ['bind', 'get'],
};
/** Create cannot be limited to a name; reads and renewals can. */
const LEADER_ELECTION_RULES = {
  'coordination.k8s.io/leases': ['create'],
  'coordination.k8s.io/leases#kubewatcher-controller': ['get', 'update'],
};
/** Webhook-started poller runs, in kubewatcher-system only. */
const POLLER_RUNS_RULES = {
  'batch/cronjobs#kubewatcher-poller': ['get'],
  'batch/jobs': ['create'],
};
const POLLER_RULES = {
  'kubewatcher.io/watchedimages': ['list'],
  'kubewatcher.io/watchedimages/status': ['patch'],
  'kubewatcher.io/imageupdates': ['create', 'get'],
  'apps/deployments': ['list'],
  'apps/statefulsets': ['list'],
  'apps/daemonsets': ['list'],
  'batch/cronjobs': ['list'],
  '/serviceaccounts': ['get'],
};
/** Never bound cluster-wide: the controller binds it per namespace that holds WatchedImages. */
const POLLER_SECRETS_RULES = { '/secrets': ['get'] };
/** The check record, in kubewatcher-system: read and replaced by name, never created, listed or deleted. */
const CHECK_RECORD = 'kubewatcher-poller-checks';
const POLLER_CHECKS_RULES = { [`/configmaps#${CHECK_RECORD}`]: ['get', 'update'] };
const CHECK_RECORD_ARG = `--check-record=$(POD_NAMESPACE)/${CHECK_RECORD}`;

/** Labels only Helm adds; everything else must match the kustomize base. */
const HELM_ONLY_KEYS = new Set([
  'helm.sh/chart',
  'app.kubernetes.io/managed-by',
  'app.kubernetes.io/instance',
  'helm.sh/resource-policy',
]);

function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('\n'));
      return doc.toJS() as K8sObject | null;
    })
    .filter((o): o is K8sObject => o !== null);
}

const idOf = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
const byKind = <T>(objects: K8sObject[], kind: string) =>
  objects.filter((o) => o.kind === kind) as unknown as T[];
const one = <T>(objects: K8sObject[], kind: string, name: string): T => {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  expect(found.map(idOf), `exactly one ${kind} ${name}`).toHaveLength(1);
  return found[0] as unknown as T;
};

/**
 * A Role's or ClusterRole's rules as `group/resource: sorted verbs` (`group/resource#name` for rules
 * limited to names); fails on anything implicit.
 */
function grants(rules: V1PolicyRule[] | undefined): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const rule of rules ?? []) {
    expect(rule.nonResourceURLs, 'no nonResourceURLs').toBeUndefined();
    expect(rule.apiGroups?.length, 'apiGroups named').toBeGreaterThan(0);
    expect(rule.resources?.length, 'resources named').toBeGreaterThan(0);
    expect(rule.verbs.length, 'verbs named').toBeGreaterThan(0);
    for (const list of [rule.apiGroups ?? [], rule.resources ?? [], rule.verbs, rule.resourceNames ?? []]) {
      for (const item of list) expect(item, `no wildcard in ${JSON.stringify(rule)}`).not.toContain('*');
    }
    for (const group of rule.apiGroups ?? []) {
      for (const resource of rule.resources ?? []) {
        for (const name of rule.resourceNames?.length ? rule.resourceNames : ['']) {
          const key = `${group}/${resource}${name ? `#${name}` : ''}`;
          out[key] = [...new Set([...(out[key] ?? []), ...rule.verbs])].sort();
        }
      }
    }
  }
  return out;
}

/** Every pod spec in the objects, with where it came from. */
function podSpecs(objects: K8sObject[]): { where: string; spec: V1PodSpec }[] {
  const out: { where: string; spec: V1PodSpec }[] = [];
  for (const o of objects) {
    if (o.kind === 'Deployment')
      out.push({ where: idOf(o), spec: (o as unknown as V1Deployment).spec!.template.spec! });
    if (o.kind === 'CronJob') {
      out.push({ where: idOf(o), spec: (o as unknown as V1CronJob).spec!.jobTemplate.spec!.template.spec! });
    }
    expect(['DaemonSet', 'StatefulSet', 'Job', 'Pod', 'ReplicaSet']).not.toContain(o.kind);
  }
  return out;
}

function expectHardened(
  where: string,
  spec: V1PodSpec,
  opts: { hostNetwork?: boolean; image?: string } = {},
): void {
  expect(spec.automountServiceAccountToken, `${where}: automountServiceAccountToken`).toBe(true);
  expect(spec.hostNetwork ?? false, where).toBe(opts.hostNetwork ?? false);
  expect(spec.hostPID ?? false, where).toBe(false);
  expect(spec.securityContext, `${where}: pod securityContext`).toMatchObject({
    runAsNonRoot: true,
    runAsUser: 65532,
    seccompProfile: { type: 'RuntimeDefault' },
  });
  const containers: V1Container[] = [...(spec.initContainers ?? []), ...spec.containers];
  for (const c of containers) {
    const at = `${where} container ${c.name}`;
    expect(c.securityContext, `${at}: securityContext`).toEqual({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    for (const kind of ['requests', 'limits'] as const) {
      expect(c.resources?.[kind], `${at}: resources.${kind}`).toMatchObject({
        cpu: expect.any(String),
        memory: expect.any(String),
      });
    }
    expect(c.image, `${at}: image`).toBe(opts.image ?? image);
    expect(c.command?.[0], `${at}: node is the entry point`).toBe('node');
  }
}

/** Drops what only Helm adds (its labels, the keep policy), so the rest can be compared exactly. */
function withoutHelmKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutHelmKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (HELM_ONLY_KEYS.has(k)) continue;
    const cleaned = withoutHelmKeys(v);
    if (k === 'annotations' && Object.keys(cleaned as object).length === 0) continue;
    out[k] = cleaned;
  }
  return out;
}

function sortedById(objects: K8sObject[]): Record<string, unknown> {
  return Object.fromEntries(
    objects.map((o) => [idOf(o), withoutHelmKeys(o)]).sort(([a], [b]) => String(a).localeCompare(String(b))),
  );
}

let kubectl: string;
let helm: string | undefined;
let helmMissing = '';
let base: K8sObject[];
let namespaced: K8sObject[];

const kustomize = (dir: string) =>
  parseObjects(
    execFileSync(kubectl, ['kustomize', join(repoRoot, dir)], { encoding: 'utf8', maxBuffer: 64 << 20 }),
  );

function helmTemplate(...args: string[]): K8sObject[] {
  return helmTemplateAs('kubewatcher', ...args);
}

function helmTemplateAs(release: string, ...args: string[]): K8sObject[] {
  const out = execFileSync(
    helm!,
    ['template', release, join(repoRoot, 'manifests/helm/kubewatcher'), '--namespace', SYSTEM_NS, ...args],
    { encoding: 'utf8', maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return parseObjects(out);
}

function needHelm(ctx: TestContext): void {
  if (!helm) ctx.skip(helmMissing);
}

beforeAll(async () => {
  kubectl = await findKubectl();
  base = parseObjects(readFileSync(join(repoRoot, BUNDLE), 'utf8'));
  namespaced = kustomize('manifests/overlays/namespaced');
  try {
    helm = execFileSync('bash', [join(repoRoot, 'scripts/build-helm.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    })
      .trim()
      .split('\n')
      .at(-1);
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? '').trim();
    helmMissing = `helm could not be built (scripts/build-helm.sh needs Go): ${stderr.split('\n').at(-1) ?? ''}`;
  }
}, 15 * 60_000);

describe('the release bundle', () => {
  it('is what scripts/render-manifests.ts renders (run it after changing manifests/base or crds/)', () => {
    expect(driftedFiles(renderManifests(kubectl))).toEqual([]);
  });

  it('equals `kubectl kustomize manifests/base`', () => {
    expect(sortedById(base)).toEqual(sortedById(kustomize('manifests/base')));
  });

  it('holds the namespace, both CRDs, the service accounts, RBAC and the workloads', () => {
    expect(base.map(idOf).sort()).toEqual(
      [
        `Namespace//${SYSTEM_NS}`,
        'CustomResourceDefinition//imageupdates.kubewatcher.io',
        'CustomResourceDefinition//watchedimages.kubewatcher.io',
        `ServiceAccount/${SYSTEM_NS}/kubewatcher-controller`,
        `ServiceAccount/${SYSTEM_NS}/kubewatcher-poller`,
        'ClusterRole//kubewatcher-controller',
        'ClusterRole//kubewatcher-controller-namespaces',
        'ClusterRole//kubewatcher-poller',
        'ClusterRoleBinding//kubewatcher-controller',
        'ClusterRoleBinding//kubewatcher-controller-namespaces',
        'ClusterRoleBinding//kubewatcher-poller',
        'ClusterRole//kubewatcher-poller-secrets',
        'ValidatingAdmissionPolicy//kubewatcher-imageupdates',
        'ValidatingAdmissionPolicyBinding//kubewatcher-imageupdates',
        'ValidatingAdmissionPolicy//kubewatcher-controller-writes',
        'ValidatingAdmissionPolicyBinding//kubewatcher-controller-writes',
        `NetworkPolicy/${SYSTEM_NS}/kubewatcher-controller`,
        `NetworkPolicy/${SYSTEM_NS}/kubewatcher-poller`,
        `Role/${SYSTEM_NS}/kubewatcher-controller-leader-election`,
        `RoleBinding/${SYSTEM_NS}/kubewatcher-controller-leader-election`,
        `Role/${SYSTEM_NS}/kubewatcher-controller-poller-runs`,
        `RoleBinding/${SYSTEM_NS}/kubewatcher-controller-poller-runs`,
        `Role/${SYSTEM_NS}/${CHECK_RECORD}`,
        `RoleBinding/${SYSTEM_NS}/${CHECK_RECORD}`,
        `Deployment/${SYSTEM_NS}/kubewatcher-controller`,
        `Service/${SYSTEM_NS}/kubewatcher-controller-metrics`,
        `PodDisruptionBudget/${SYSTEM_NS}/kubewatcher-controller`,
        `CronJob/${SYSTEM_NS}/kubewatcher-poller`,
        `ConfigMap/${SYSTEM_NS}/kubewatcher-poller-registries`,
        `ConfigMap/${SYSTEM_NS}/${CHECK_RECORD}`,
      ].sort(),
    );
  });

  it('carries the CRDs exactly as crds/ has them', () => {
    for (const name of ['watchedimages', 'imageupdates']) {
      const [source] = parseObjects(readFileSync(join(repoRoot, `crds/kubewatcher.io_${name}.yaml`), 'utf8'));
      const bundled = one<K8sObject>(base, 'CustomResourceDefinition', `${name}.kubewatcher.io`);
      expect(bundled.spec).toEqual(source!.spec);
    }
  });

  it('labels every object as part of kubewatcher, at one version', () => {
    for (const o of base) {
      expect(o.metadata.labels, idOf(o)).toMatchObject({
        'app.kubernetes.io/name': 'kubewatcher',
        'app.kubernetes.io/part-of': 'kubewatcher',
        'app.kubernetes.io/version': version,
      });
    }
    const chart = parseYaml(
      readFileSync(join(repoRoot, 'manifests/helm/kubewatcher/Chart.yaml'), 'utf8'),
    ) as {
      version: string;
      appVersion: string;
    };
    expect({ version: chart.version, appVersion: chart.appVersion }).toEqual({
      version,
      appVersion: version,
    });
    for (const pkg of ['shared', 'poller']) {
      const p = JSON.parse(readFileSync(join(repoRoot, `packages/${pkg}/package.json`), 'utf8')) as {
        version: string;
      };
      expect(p.version, pkg).toBe(version);
    }
  });
});

describe('RBAC', () => {
  it('grants the controller and the poller exactly what they use, cluster-wide', () => {
    expect(grants(one<V1Role>(base, 'ClusterRole', 'kubewatcher-controller').rules)).toEqual(
      CONTROLLER_RULES,
    );
    expect(grants(one<V1Role>(base, 'ClusterRole', 'kubewatcher-poller').rules)).toEqual(POLLER_RULES);
    expect(grants(one<V1Role>(base, 'ClusterRole', 'kubewatcher-controller-namespaces').rules)).toEqual(
      NAMESPACE_RULES,
    );
    expect(grants(one<V1Role>(base, 'ClusterRole', 'kubewatcher-poller-secrets').rules)).toEqual(
      POLLER_SECRETS_RULES,
    );
  });

  it('never binds secrets to the poller cluster-wide', () => {
    const secretRoles = [...byKind<V1Role>(base, 'ClusterRole')]
      .filter((r) => grants(r.rules)['/secrets'])
      .map((r) => r.metadata!.name);
    expect(secretRoles).toEqual(['kubewatcher-poller-secrets']);
    const bound = byKind<V1ClusterRoleBinding>(base, 'ClusterRoleBinding').map((b) => b.roleRef.name);
    expect(bound).not.toContain('kubewatcher-poller-secrets');
  });

  it('grants leases only in kubewatcher-system, with a Role', () => {
    const role = one<V1Role>(base, 'Role', 'kubewatcher-controller-leader-election');
    expect(role.metadata?.namespace).toBe(SYSTEM_NS);
    expect(grants(role.rules)).toEqual(LEADER_ELECTION_RULES);
  });

  it('lets the controller start poller runs only in kubewatcher-system: get the CronJob, create Jobs', () => {
    const role = one<V1Role>(base, 'Role', 'kubewatcher-controller-poller-runs');
    expect(role.metadata?.namespace).toBe(SYSTEM_NS);
    expect(grants(role.rules)).toEqual(POLLER_RUNS_RULES);
    const everyGrant = [...byKind<V1Role>(base, 'Role'), ...byKind<V1Role>(base, 'ClusterRole')].flatMap(
      (r) => Object.keys(grants(r.rules)),
    );
    // Besides that Role, batch appears only as the CronJob workload kind, in the controller's and the
    // poller's ClusterRoles (rendered from the kinds table); Jobs are created nowhere else.
    expect(everyGrant.filter((g) => g.startsWith('batch/')).sort()).toEqual(
      [...Object.keys(POLLER_RUNS_RULES), 'batch/cronjobs', 'batch/cronjobs'].sort(),
    );
  });

  it('binds each role to its own service account in kubewatcher-system', () => {
    for (const binding of [
      ...byKind<V1ClusterRoleBinding>(base, 'ClusterRoleBinding'),
      ...byKind<V1ClusterRoleBinding>(base, 'RoleBinding'),
    ]) {
      const sa = binding.metadata!.name!.replace(/-(leader-election|namespaces|poller-runs|checks)$/, '');
      expect(binding.roleRef.name).toBe(binding.metadata!.name);
      expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: sa, namespace: SYSTEM_NS }]);
    }
  });

  it('lets the poller get and update its check record, by name, only in kubewatcher-system', () => {
    const role = one<V1Role>(base, 'Role', CHECK_RECORD);
    expect(role.metadata?.namespace).toBe(SYSTEM_NS);
    expect(grants(role.rules)).toEqual(POLLER_CHECKS_RULES);
    const binding = one<V1RoleBinding>(base, 'RoleBinding', CHECK_RECORD);
    expect(binding.metadata?.namespace).toBe(SYSTEM_NS);
    expect(binding.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'Role',
      name: CHECK_RECORD,
    });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'kubewatcher-poller', namespace: SYSTEM_NS },
    ]);
  });

  it('grants ConfigMaps only as the check record, get and update by name, in every rendering', (ctx) => {
    const renderings: [string, K8sObject[], string][] = [
      ['base', base, CHECK_RECORD],
      ['namespaced overlay', namespaced, CHECK_RECORD],
    ];
    if (helm)
      renderings.push(
        ['helm', helmTemplate(), CHECK_RECORD],
        ['helm namespaced', helmTemplate('--set', 'watchNamespaces={apps,team-b}'), CHECK_RECORD],
        ['helm release edge', helmTemplateAs('edge'), `edge-${CHECK_RECORD}`],
      );
    else ctx.annotate(`helm renderings not checked: ${helmMissing}`);
    for (const [what, objects, name] of renderings) {
      const configMapGrants = [
        ...byKind<V1Role>(objects, 'Role'),
        ...byKind<V1Role>(objects, 'ClusterRole'),
      ].flatMap((role) =>
        Object.entries(grants(role.rules))
          .filter(([key]) => key.startsWith('/configmaps'))
          .map(([key, verbs]) => ({ role: idOf(role as unknown as K8sObject), key, verbs })),
      );
      // No create, list, watch, patch or delete of ConfigMaps, and no other ConfigMap, anywhere.
      expect(configMapGrants, what).toEqual([
        { role: `Role/${SYSTEM_NS}/${name}`, key: `/configmaps#${name}`, verbs: ['get', 'update'] },
      ]);
      const bound = [
        ...byKind<V1RoleBinding>(objects, 'RoleBinding'),
        ...byKind<V1RoleBinding>(objects, 'ClusterRoleBinding'),
      ]
        .filter((b) => b.roleRef.name === name)
        .map((b) => ({ namespace: b.metadata?.namespace, subjects: b.subjects }));
      expect(bound, what).toEqual([
        {
          namespace: SYSTEM_NS,
          subjects: [{ kind: 'ServiceAccount', name: name.replace(/-checks$/, ''), namespace: SYSTEM_NS }],
        },
      ]);
    }
  });

  it('names every verb, resource and group, and reads secrets only with get, in every rendering', (ctx) => {
    const renderings: [string, K8sObject[]][] = [
      ['base', base],
      ['namespaced overlay', namespaced],
    ];
    if (helm)
      renderings.push(
        ['helm', helmTemplate()],
        ['helm namespaced', helmTemplate('--set', 'watchNamespaces={apps,team-b}')],
      );
    else ctx.annotate(`helm renderings not checked: ${helmMissing}`);
    for (const [what, objects] of renderings) {
      const roles = [...byKind<V1Role>(objects, 'Role'), ...byKind<V1Role>(objects, 'ClusterRole')];
      expect(roles.length, what).toBeGreaterThan(0);
      for (const role of roles) {
        for (const [key, verbs] of Object.entries(grants(role.rules))) {
          if (key === '/secrets') expect(verbs, `${what} ${role.metadata?.name}`).toEqual(['get']);
        }
      }
    }
  });
});

describe('workloads', () => {
  it('run hardened, as uid 65532, with requests and limits, from the release image', () => {
    for (const objects of [base, namespaced]) {
      const specs = podSpecs(objects);
      expect(specs).toHaveLength(2);
      for (const { where, spec } of specs) expectHardened(where, spec);
    }
  });

  it('controller: two replicas, leader election, no unavailable replica during a rollout, probes', () => {
    const d = one<V1Deployment>(base, 'Deployment', 'kubewatcher-controller');
    const spec = d.spec!;
    expect(spec.replicas).toBe(2);
    expect(spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxUnavailable: 0, maxSurge: 1 },
    });
    const pod = spec.template.spec!;
    expect(pod.serviceAccountName).toBe('kubewatcher-controller');
    const [c] = pod.containers;
    // Exactly what bench/startup.ts measures, from the image's file tree (scripts/lib/programs.ts).
    expect(c!.command).toEqual(imageCommand('controller'));
    expect(c!.args).toEqual(['--leader-elect', '--log-format=json', '--metrics-addr=:8080']);
    expect(c!.ports).toEqual([{ name: 'metrics', containerPort: 8080, protocol: 'TCP' }]);
    expect(c!.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
    expect(c!.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(c!.resources).toEqual({
      requests: { cpu: '50m', memory: '128Mi' },
      limits: { cpu: '500m', memory: '256Mi' },
    });
    expect(pod.topologySpreadConstraints?.[0]).toMatchObject({
      topologyKey: 'kubernetes.io/hostname',
      whenUnsatisfiable: 'ScheduleAnyway',
    });
    const podLabels = spec.template.metadata!.labels!;
    expect(podLabels).toMatchObject(spec.selector.matchLabels!);
    expect(podLabels['app.kubernetes.io/component']).toBe('controller');

    const pdb = one<V1PodDisruptionBudget>(base, 'PodDisruptionBudget', 'kubewatcher-controller');
    expect(pdb.spec?.minAvailable).toBe(1);
    expect(pdb.spec?.selector?.matchLabels).toEqual(spec.selector.matchLabels);
    const svc = one<V1Service>(base, 'Service', 'kubewatcher-controller-metrics');
    expect(svc.spec?.selector).toEqual(spec.selector.matchLabels);
    expect(svc.spec?.ports).toEqual([
      { name: 'metrics', port: 8080, targetPort: 'metrics', protocol: 'TCP' },
    ]);
  });

  it('poller: every minute, never overlapping, no retries, bounded run time', () => {
    const cj = one<V1CronJob>(base, 'CronJob', 'kubewatcher-poller');
    const spec = cj.spec!;
    expect(spec).toMatchObject({
      schedule: '* * * * *',
      concurrencyPolicy: 'Forbid',
      startingDeadlineSeconds: 60,
      successfulJobsHistoryLimit: 3,
      failedJobsHistoryLimit: 3,
    });
    const job = spec.jobTemplate.spec!;
    expect(job).toMatchObject({ backoffLimit: 0, activeDeadlineSeconds: 300 });
    const pod = job.template.spec!;
    expect(pod.restartPolicy).toBe('Never');
    expect(pod.serviceAccountName).toBe('kubewatcher-poller');
    expect(pod.containers[0]!.command).toEqual(imageCommand('poller'));
    expect(pod.containers[0]!.args).toEqual([
      '--log-format=json',
      `--registries-config=${REGISTRIES_FILE}`,
      CHECK_RECORD_ARG,
    ]);
  });

  it('poller: keeps its check record in the ConfigMap shipped empty in its own namespace', () => {
    const container = one<V1CronJob>(base, 'CronJob', 'kubewatcher-poller').spec!.jobTemplate.spec!.template
      .spec!.containers[0]!;
    // $(POD_NAMESPACE) in the flag is expanded by the kubelet from this variable.
    expect(container.env).toEqual([
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    ]);
    const cm = one<K8sObject>(base, 'ConfigMap', CHECK_RECORD);
    expect(cm.metadata.namespace).toBe(SYSTEM_NS);
    // No data at all: applying the manifests again never resets what the poller wrote.
    expect(Object.keys(cm).sort()).toEqual(['apiVersion', 'kind', 'metadata']);
  });

  it('poller: reads its registries config from a ConfigMap and CA bundles from an optional ConfigMap or Secret', () => {
    const pod = one<V1CronJob>(base, 'CronJob', 'kubewatcher-poller').spec!.jobTemplate.spec!.template.spec!;
    expect(pod.containers[0]!.volumeMounts).toEqual([
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'registries', mountPath: '/etc/kubewatcher/registries', readOnly: true },
      { name: 'registry-cas', mountPath: '/etc/kubewatcher/ca', readOnly: true },
    ]);
    const volumes = Object.fromEntries((pod.volumes ?? []).map((v) => [v.name, v]));
    expect(volumes.registries?.configMap).toEqual({ name: 'kubewatcher-poller-registries' });
    expect(volumes['registry-cas']?.projected?.sources).toEqual([
      { configMap: { name: 'kubewatcher-registry-cas', optional: true } },
      { secret: { name: 'kubewatcher-registry-cas', optional: true } },
    ]);
    // The shipped config names no registry: every host gets TLS with the system's CAs.
    const cm = one<K8sObject>(base, 'ConfigMap', 'kubewatcher-poller-registries') as K8sObject & {
      data: Record<string, string>;
    };
    expect(Object.keys(cm.data)).toEqual([REGISTRIES_FILE.split('/').at(-1)]);
    expect(parseYaml(cm.data['registries.yaml']!)).toEqual({});
  });
});

describe('network policies', () => {
  it('keep both pods off the link-local metadata ranges and /metrics off other namespaces', () => {
    for (const name of ['kubewatcher-controller', 'kubewatcher-poller']) {
      const np = one<K8sObject>(base, 'NetworkPolicy', name) as unknown as {
        spec: {
          policyTypes: string[];
          ingress?: { from?: unknown[] }[];
          egress: { to?: { ipBlock?: { cidr: string; except?: string[] } }[] }[];
        };
      };
      expect(np.spec.policyTypes).toEqual(['Ingress', 'Egress']);
      for (const rule of np.spec.egress) {
        for (const peer of rule.to ?? []) {
          const except = peer.ipBlock?.except ?? [];
          expect(
            except.some((c) => c === '169.254.0.0/16' || c === 'fe80::/10'),
            name,
          ).toBe(true);
        }
      }
      for (const rule of np.spec.ingress ?? []) expect(rule.from?.length, name).toBeGreaterThan(0);
    }
  });
});

describe('the namespaced overlay', () => {
  it('has no cluster-wide grants; Roles in the watched namespace grant what the ClusterRoles did', () => {
    expect(namespaced.filter((o) => o.kind.startsWith('Cluster')).map(idOf)).toEqual([]);
    const roles = byKind<V1Role>(namespaced, 'Role').filter((r) => r.metadata?.namespace === 'apps');
    expect(Object.fromEntries(roles.map((r) => [r.metadata!.name, grants(r.rules)]))).toEqual({
      'kubewatcher-controller': NAMESPACED_CONTROLLER_RULES,
      'kubewatcher-poller': { ...POLLER_RULES, ...POLLER_SECRETS_RULES },
    });
    for (const b of byKind<V1ClusterRoleBinding>(namespaced, 'RoleBinding')) {
      expect(b.subjects?.[0]?.namespace, `${b.metadata?.name}: subject in ${SYSTEM_NS}`).toBe(SYSTEM_NS);
    }
    const lease = one<V1Role>(namespaced, 'Role', 'kubewatcher-controller-leader-election');
    expect(lease.metadata?.namespace).toBe(SYSTEM_NS);
  });

  it('passes --namespace=apps to the controller and the poller', () => {
    for (const { where, spec } of podSpecs(namespaced)) {
      expect(spec.containers[0]!.args, where).toContain('--namespace=apps');
    }
  });

  it('changes nothing else of the base', () => {
    const strip = (objects: K8sObject[]) =>
      sortedById(
        objects.filter(
          (o) => !['ClusterRole', 'ClusterRoleBinding'].includes(o.kind) && o.metadata.namespace !== 'apps',
        ),
      );
    const withoutNamespaceArgs = JSON.parse(
      JSON.stringify(strip(namespaced)).replaceAll(',"--namespace=apps"', ''),
    );
    expect(withoutNamespaceArgs).toEqual(strip(base));
  });
});

describe('the auto-watch-all overlay', () => {
  it('adds --auto-watch=all to the controller and changes nothing else of the base', () => {
    const overlay = kustomize('manifests/overlays/auto-watch-all');
    const args = one<V1Deployment>(overlay, 'Deployment', 'kubewatcher-controller').spec?.template.spec
      ?.containers[0]?.args;
    expect(args).toContain('--auto-watch=all');
    const withoutFlag = JSON.parse(JSON.stringify(sortedById(overlay)).replaceAll(',"--auto-watch=all"', ''));
    expect(withoutFlag).toEqual(sortedById(base));
  });
});

describe('the Helm chart', () => {
  it('passes helm lint --strict', (ctx) => {
    needHelm(ctx);
    execFileSync(helm!, ['lint', '--strict', join(repoRoot, 'manifests/helm/kubewatcher')], {
      stdio: 'pipe',
    });
  });

  it('renders the objects of the kustomize base with default values (the release namespace is not its to create)', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplate();
    expect(sortedById(rendered)).toEqual(sortedById(base.filter((o) => o.kind !== 'Namespace')));
  });

  it('renders the objects of the namespaced overlay with watchNamespaces', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplate('--set', 'watchNamespaces={apps}');
    expect(sortedById(rendered)).toEqual(sortedById(namespaced.filter((o) => o.kind !== 'Namespace')));
  });

  it('drops leader election, its Role and the budget for a single replica', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplate('--set', 'leaderElection.enabled=false', '--set', 'controller.replicas=1');
    const d = one<V1Deployment>(rendered, 'Deployment', 'kubewatcher-controller');
    expect(d.spec?.template.spec?.containers[0]?.args).not.toContain('--leader-elect');
    expect(
      rendered.filter((o) => o.metadata.name.endsWith('leader-election') || o.kind === 'PodDisruptionBudget'),
    ).toEqual([]);
    for (const { where, spec } of podSpecs(rendered)) expectHardened(where, spec);
  });

  it('names objects and the leader Lease after another release, and grants that Lease', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplateAs('edge');
    const lease = 'edge-kubewatcher-controller';
    const d = one<V1Deployment>(rendered, 'Deployment', lease);
    expect(d.spec?.template.spec?.containers[0]?.args).toContain(`--leader-election-id=${lease}`);
    const role = one<V1Role>(rendered, 'Role', `${lease}-leader-election`);
    expect(grants(role.rules)).toEqual({
      'coordination.k8s.io/leases': ['create'],
      [`coordination.k8s.io/leases#${lease}`]: ['get', 'update'],
    });
    for (const b of byKind<V1ClusterRoleBinding>(rendered, 'ClusterRoleBinding')) {
      expect(b.subjects?.[0]?.name).toBe(b.metadata?.name?.replace(/-namespaces$/, ''));
    }
  });

  it('names the admission policies, their service accounts and the secrets role after another release', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplateAs('edge');
    const policies = rendered.filter((o) => o.kind.startsWith('ValidatingAdmissionPolicy'));
    expect(policies.map(idOf).sort()).toEqual([
      'ValidatingAdmissionPolicy//edge-kubewatcher-controller-writes',
      'ValidatingAdmissionPolicy//edge-kubewatcher-imageupdates',
      'ValidatingAdmissionPolicyBinding//edge-kubewatcher-controller-writes',
      'ValidatingAdmissionPolicyBinding//edge-kubewatcher-imageupdates',
    ]);
    const text = JSON.stringify(policies);
    expect(text).toContain(`system:serviceaccount:${SYSTEM_NS}:edge-kubewatcher-poller`);
    expect(text).toContain(`system:serviceaccount:${SYSTEM_NS}:edge-kubewatcher-controller`);
    expect(text).toContain("'edge-kubewatcher-poller-secrets'");
    expect(text).not.toMatch(/[':]kubewatcher-(poller|controller)\b/);
    const d = one<V1Deployment>(rendered, 'Deployment', 'edge-kubewatcher-controller');
    expect(d.spec?.template.spec?.containers[0]?.args).toEqual(
      expect.arrayContaining([
        '--poller-secrets-role=edge-kubewatcher-poller-secrets',
        `--poller-service-account=${SYSTEM_NS}/edge-kubewatcher-poller`,
      ]),
    );
  });

  it('rejects values its schema does not know (typos, bad log levels, bad digests)', (ctx) => {
    needHelm(ctx);
    expect(() => helmTemplate('--set', 'controler.replicas=3')).toThrow(/additional properties 'controler'/);
    expect(() => helmTemplate('--set', 'logLevel=verbose')).toThrow(/logLevel/);
    expect(() => helmTemplate('--set', 'image.digest=latest')).toThrow(/digest/);
  });

  it('renders the auto-watch-all overlay with autoWatch=all, and refuses an unknown mode', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplate('--set', 'autoWatch=all');
    expect(sortedById(rendered)).toEqual(
      sortedById(kustomize('manifests/overlays/auto-watch-all').filter((o) => o.kind !== 'Namespace')),
    );
    expect(() => helmTemplate('--set', 'autoWatch=everything')).toThrow(/autoWatch/);
  });

  it('refuses several replicas without leader election', (ctx) => {
    needHelm(ctx);
    expect(() => helmTemplate('--set', 'leaderElection.enabled=false')).toThrow(
      /needs leaderElection.enabled/,
    );
  });

  it('leaves the CRDs out with crds.install=false and passes image, log level and extra flags through', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplate(
      '--set',
      'crds.install=false',
      '--set',
      'image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
      '--set',
      'logLevel=debug',
      '--set',
      'poller.extraArgs={--plain-http=registry.local:5000}',
    );
    expect(rendered.filter((o) => o.kind === 'CustomResourceDefinition')).toEqual([]);
    const controller = one<V1Deployment>(rendered, 'Deployment', 'kubewatcher-controller').spec?.template.spec
      ?.containers[0];
    const poller = one<V1CronJob>(rendered, 'CronJob', 'kubewatcher-poller').spec?.jobTemplate.spec?.template
      .spec?.containers[0];
    expect(controller!.image).toBe(
      `${IMAGE_REPO}@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef`,
    );
    expect(controller!.args).toContain('--log-level=debug');
    expect(controller!.args).not.toContain('--auto-watch=opted-in');
    expect(poller!.args).toEqual([
      '--log-format=json',
      `--registries-config=${REGISTRIES_FILE}`,
      CHECK_RECORD_ARG,
      '--log-level=debug',
      '--plain-http=registry.local:5000',
    ]);
  });

  it('with webhook.enabled and notifications.enabled: the flags, the port, the Service and both Secrets mounted', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplateAs(
      'edge',
      '--set',
      'webhook.enabled=true',
      '--set',
      'notifications.enabled=true',
    );
    const pod = one<V1Deployment>(rendered, 'Deployment', 'edge-kubewatcher-controller').spec!.template.spec!;
    const container = pod.containers[0]!;
    expect(container.args).toEqual(
      expect.arrayContaining([
        '--webhook-bind-address=:9292',
        '--poller-cronjob=edge-kubewatcher-poller',
        '--notifications-config=/etc/kubewatcher/notifications/notifications.yaml',
      ]),
    );
    expect(container.ports).toContainEqual({ name: 'webhook', containerPort: 9292, protocol: 'TCP' });
    expect(container.volumeMounts).toEqual(
      expect.arrayContaining([
        { name: 'webhook-receivers', mountPath: '/etc/kubewatcher/webhooks', readOnly: true },
        { name: 'notifications', mountPath: '/etc/kubewatcher/notifications', readOnly: true },
      ]),
    );
    expect(pod.volumes?.map((v) => v.secret?.secretName).filter(Boolean)).toEqual([
      'kubewatcher-webhooks',
      'kubewatcher-notifications',
    ]);
    const service = one<V1Service>(rendered, 'Service', 'edge-kubewatcher-controller-webhook');
    expect(service.spec?.ports).toEqual([
      { name: 'webhook', port: 9292, targetPort: 'webhook', protocol: 'TCP' },
    ]);
    const role = one<V1Role>(rendered, 'Role', 'edge-kubewatcher-controller-poller-runs');
    expect(grants(role.rules)).toEqual({
      'batch/cronjobs#edge-kubewatcher-poller': ['get'],
      'batch/jobs': ['create'],
    });
  });
});

describe("the Helm chart's poller registries", () => {
  it('renders poller.registries into the ConfigMap the poller reads, and mounts the named CA bundles', (ctx) => {
    needHelm(ctx);
    const rendered = helmTemplate(
      '--set',
      'poller.registries.registry\\.local:5000.plainHttp=true',
      '--set',
      'poller.registries.registry\\.internal.caFile=/etc/kubewatcher/ca/internal.crt',
      '--set',
      'poller.caBundles.secret=corporate-cas',
    );
    const cm = one<K8sObject>(rendered, 'ConfigMap', 'kubewatcher-poller-registries') as K8sObject & {
      data: Record<string, string>;
    };
    expect(parseYaml(cm.data['registries.yaml']!)).toEqual({
      'registry.local:5000': { plainHttp: true },
      'registry.internal': { caFile: '/etc/kubewatcher/ca/internal.crt' },
    });
    const pod = one<V1CronJob>(rendered, 'CronJob', 'kubewatcher-poller').spec!.jobTemplate.spec!.template
      .spec!;
    const cas = pod.volumes?.find((v) => v.name === 'registry-cas');
    expect(cas?.projected?.sources).toEqual([
      { configMap: { name: 'kubewatcher-registry-cas', optional: true } },
      { secret: { name: 'corporate-cas', optional: true } },
    ]);
    expect(() => helmTemplate('--set', 'poller.registries.r\\.io.plainHTTP=true')).toThrow(/plainHTTP/);
  });
});

describe("the Helm chart's check record", () => {
  it('names the ConfigMap, its Role and the flag after the release, and leaves all three out with poller.checkRecord.enabled=false', (ctx) => {
    needHelm(ctx);
    const edge = helmTemplateAs('edge');
    const name = `edge-${CHECK_RECORD}`;
    expect(one<K8sObject>(edge, 'ConfigMap', name).metadata.namespace).toBe(SYSTEM_NS);
    expect(grants(one<V1Role>(edge, 'Role', name).rules)).toEqual({
      [`/configmaps#${name}`]: ['get', 'update'],
    });
    const edgePoller = one<V1CronJob>(edge, 'CronJob', 'edge-kubewatcher-poller').spec!.jobTemplate.spec!
      .template.spec!.containers[0]!;
    expect(edgePoller.args).toContain(`--check-record=$(POD_NAMESPACE)/${name}`);

    const off = helmTemplate(
      '--set',
      'poller.checkRecord.enabled=false',
      '--set',
      'poller.extraEnv[0].name=A,poller.extraEnv[0].value=b',
    );
    expect(off.filter((o) => o.metadata.name === CHECK_RECORD).map(idOf)).toEqual([]);
    const poller = one<V1CronJob>(off, 'CronJob', 'kubewatcher-poller').spec!.jobTemplate.spec!.template.spec!
      .containers[0]!;
    expect(poller.args).toEqual(['--log-format=json', `--registries-config=${REGISTRIES_FILE}`]);
    expect(poller.env).toEqual([{ name: 'A', value: 'b' }]);
    expect(() => helmTemplate('--set', 'poller.checkRecord.enable=false')).toThrow(/enable/);
  });
});

describe('the local overlay (the real node of scripts/local-cluster)', () => {
  let local: K8sObject[];
  let work: string;
  const digest = `sha256:${'ab'.repeat(32)}`;
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'kubewatcher-local-overlay-'));
    local = kustomize('manifests/overlays/local');
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const apiEnv = (c: V1Container | undefined) =>
    Object.fromEntries(
      (c?.env ?? []).filter((e) => e.name.startsWith('KUBERNETES_')).map((e) => [e.name, e.value]),
    );

  it('runs the pods on the host network against 127.0.0.1, hardened as the base, the probes on the host IP', () => {
    const specs = podSpecs(local);
    expect(specs).toHaveLength(2);
    for (const { where, spec } of specs) {
      expectHardened(where, spec, {
        hostNetwork: true,
        image: '127.0.0.1:5000/kubewatcher/kubewatcher:local',
      });
      expect(apiEnv(spec.containers[0]), where).toEqual({
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: '6443',
      });
    }
    const controller = one<V1Deployment>(local, 'Deployment', 'kubewatcher-controller').spec!.template.spec!
      .containers[0]!;
    expect(controller.args).toContain('--metrics-addr=$(HOST_IP):8080');
    // One node: a rolling update could never start a new pod while an old one holds the port.
    expect(one<V1Deployment>(local, 'Deployment', 'kubewatcher-controller').spec?.strategy).toEqual({
      type: 'Recreate',
    });
    expect(controller.env?.find((e) => e.name === 'HOST_IP')?.valueFrom?.fieldRef?.fieldPath).toBe(
      'status.hostIP',
    );
  });

  it("admits hostNetwork pods to the namespace: Pod Security enforces 'privileged', audits 'restricted'", () => {
    const labels = one<K8sObject & { metadata: { labels?: Record<string, string> } }>(
      local,
      'Namespace',
      'kubewatcher-system',
    ).metadata.labels;
    expect(labels).toMatchObject({
      'pod-security.kubernetes.io/enforce': 'privileged',
      'pod-security.kubernetes.io/audit': 'restricted',
    });
  });

  it('changes nothing else of the base', () => {
    const strip = (objects: K8sObject[]) => {
      const text = JSON.stringify(sortedById(objects))
        .replace(
          '"pod-security.kubernetes.io/audit":"restricted","pod-security.kubernetes.io/audit-version":"latest","pod-security.kubernetes.io/enforce":"privileged"',
          '"pod-security.kubernetes.io/enforce":"restricted"',
        )
        .replaceAll('127.0.0.1:5000/kubewatcher/kubewatcher:local', image)
        .replaceAll('--metrics-addr=$(HOST_IP):8080', '--metrics-addr=:8080')
        .replaceAll(',"hostNetwork":true', '')
        .replace(
          '"strategy":{"type":"Recreate"}',
          '"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0},"type":"RollingUpdate"}',
        );
      const tree = JSON.parse(text) as Record<string, unknown>;
      const containers = (o: unknown): V1Container[] => {
        const spec =
          (o as V1Deployment).spec?.template?.spec ??
          (o as V1CronJob).spec?.jobTemplate?.spec?.template?.spec;
        return spec?.containers ?? [];
      };
      for (const o of Object.values(tree)) {
        for (const c of containers(o)) {
          c.env = c.env?.filter(
            (e) => !['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT', 'HOST_IP'].includes(e.name),
          );
          if (c.env?.length === 0) delete c.env;
        }
      }
      return tree;
    };
    expect(strip(local)).toEqual(strip(base));
  });

  it("writeLocalKustomization sets the pushed image, the API server port and the environment's registries", async () => {
    const caFile = join(work, 'ca.crt');
    writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const info = {
      apiServer: 'https://127.0.0.1:40123',
      registries: {
        open: { host: '127.0.0.1:40001', url: 'http://127.0.0.1:40001' },
        basic: {
          host: '127.0.0.1:40002',
          url: 'https://127.0.0.1:40002',
          username: 'u',
          password: 'p',
          caFile,
        },
        token: {
          host: '127.0.0.1:40003',
          url: 'http://127.0.0.1:40003',
          tokenRealm: 'http://127.0.0.1:40004/token',
          tokenService: 'registry',
        },
      },
    };
    const dir = await writeLocalKustomization(
      join(work, 'install'),
      info,
      `127.0.0.1:40001/kubewatcher/kubewatcher:dev@${digest}`,
    );
    const rendered = parseObjects(
      execFileSync(kubectl, ['kustomize', dir], { encoding: 'utf8', maxBuffer: 64 << 20 }),
    );
    for (const { where, spec } of podSpecs(rendered)) {
      expectHardened(where, spec, {
        hostNetwork: true,
        image: `127.0.0.1:40001/kubewatcher/kubewatcher@${digest}`,
      });
      expect(apiEnv(spec.containers[0]), where).toEqual({
        KUBERNETES_SERVICE_HOST: '127.0.0.1',
        KUBERNETES_SERVICE_PORT: '40123',
      });
    }
    const registries = one<K8sObject>(rendered, 'ConfigMap', 'kubewatcher-poller-registries') as K8sObject & {
      data: Record<string, string>;
    };
    expect(registries.metadata.namespace).toBe(SYSTEM_NS);
    expect(parseYaml(registries.data['registries.yaml']!)).toEqual({
      '127.0.0.1:40001': { plainHttp: true },
      '127.0.0.1:40003': { plainHttp: true, realmHosts: ['127.0.0.1:40004'] },
      '127.0.0.1:40004': { plainHttp: true },
      '127.0.0.1:40002': { caFile: '/etc/kubewatcher/ca/basic-registry-ca.crt' },
    });
    const cas = one<K8sObject>(rendered, 'ConfigMap', 'kubewatcher-registry-cas') as K8sObject & {
      data: Record<string, string>;
    };
    expect(cas.metadata.namespace).toBe(SYSTEM_NS);
    expect(cas.data['basic-registry-ca.crt']).toBe(readFileSync(caFile, 'utf8'));
  });

  it("the chart with writeLocalHelmValues renders the local overlay's controller and poller exactly", async (ctx) => {
    needHelm(ctx);
    const info = {
      apiServer: 'https://127.0.0.1:40123',
      registries: {
        open: { host: '127.0.0.1:40001', url: 'http://127.0.0.1:40001' },
        basic: { host: '127.0.0.1:40002', url: 'https://127.0.0.1:40002', username: 'u', password: 'p' },
        token: {
          host: '127.0.0.1:40003',
          url: 'http://127.0.0.1:40003',
          tokenRealm: 'http://127.0.0.1:40004/token',
          tokenService: 'registry',
        },
      },
    };
    const image = `127.0.0.1:40001/kubewatcher/kubewatcher:dev@${digest}`;
    const overlay = parseObjects(
      execFileSync(kubectl, ['kustomize', await writeLocalKustomization(join(work, 'same'), info, image)], {
        encoding: 'utf8',
        maxBuffer: 64 << 20,
      }),
    );
    const chart = helmTemplate('--values', await writeLocalHelmValues(work, info, image));
    // The same variables and registries, whichever order each tool writes them in.
    const normalized = (objects: K8sObject[]) =>
      sortedById(
        (
          JSON.parse(JSON.stringify(objects), (key, value) => {
            if (key === 'env')
              return [...value].sort((a: V1EnvVar, b: V1EnvVar) => a.name.localeCompare(b.name));
            if (key === 'registries.yaml') return parseYaml(value);
            return value;
          }) as K8sObject[]
        ).filter((o) => ['Deployment', 'CronJob', 'ConfigMap'].includes(o.kind)),
      );
    for (const { where, spec } of podSpecs(chart))
      expectHardened(where, spec, {
        hostNetwork: true,
        image: `127.0.0.1:40001/kubewatcher/kubewatcher@${digest}`,
      });
    expect(normalized(chart)).toEqual(normalized(overlay));
  });

  it('refuses an image reference or API server it cannot use, naming it', async () => {
    const info = { apiServer: 'https://10.0.0.1:6443', registries: {} as never };
    await expect(writeLocalKustomization(join(work, 'bad'), info, 'r/k@sha256:00')).rejects.toThrow(
      /digest "sha256:00"/,
    );
    await expect(writeLocalKustomization(join(work, 'bad'), info, `r.io/k@${digest}`)).rejects.toThrow(
      /https:\/\/10.0.0.1:6443: the local overlay reaches the API server on 127.0.0.1 only/,
    );
  });
});

describe('workload-kind rules', () => {
  it('come from the kinds table: one rule per API group, in every rendering', () => {
    const block = [
      '  # BEGIN workload kinds: poller (generated)',
      '  - apiGroups: [apps]',
      '    resources: [deployments]',
      '    verbs: [list]',
      '  # END workload kinds',
      '',
    ].join('\n');
    expect(renderWorkloadRules(`rules:\n${block}`, 'x.yaml')).toBe(
      `rules:\n  # BEGIN workload kinds: poller (generated)\n${workloadRules('poller', '  ')}  # END workload kinds\n`,
    );
    expect(workloadRules('controller', '')).toBe(
      [
        '- apiGroups: [apps]',
        '  resources: [deployments, statefulsets, daemonsets]',
        '  verbs: [get, list, watch, patch]',
        '- apiGroups: [batch]',
        '  resources: [cronjobs]',
        '  verbs: [get, list, watch, patch]',
        '',
      ].join('\n'),
    );
    expect(() => renderWorkloadRules('rules: []\n', 'x.yaml')).toThrow(
      'x.yaml: no "# BEGIN workload kinds" block',
    );
  });
});
