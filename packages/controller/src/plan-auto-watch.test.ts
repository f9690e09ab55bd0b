import {
  type AutoWatchMode,
  generatedWatchedImageName,
  type ImageUpdate,
  SYSTEM_NAMESPACES,
  type WatchedImage,
} from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import {
  type AutoWatchInput,
  type AutoWatchWorkload,
  type NamespaceLike,
  planAutoWatch,
  specHash,
  workloadOptIn,
} from './plan-auto-watch.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;
const WEB = 'ghcr.io/acme/web:1.0';
const WEB_NAME = generatedWatchedImageName('ghcr.io/acme/web:1.0');

function scope(mode: AutoWatchMode = 'opted-in') {
  return { mode, excludedNamespaces: new Set([...SYSTEM_NAMESPACES, 'kubewatcher-system']) };
}

function ns(
  name = 'apps',
  labels?: Record<string, string>,
  annotations?: Record<string, string>,
): NamespaceLike {
  return { metadata: { name, ...(labels ? { labels } : {}), ...(annotations ? { annotations } : {}) } };
}

function workload(
  name: string,
  containers: Record<string, string>,
  o: {
    kind?: AutoWatchWorkload['kind'];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    init?: Record<string, string>;
    namespace?: string;
  } = {},
): AutoWatchWorkload {
  const list = (m: Record<string, string>) => Object.entries(m).map(([n, image]) => ({ name: n, image }));
  return {
    kind: o.kind ?? 'Deployment',
    metadata: {
      name,
      namespace: o.namespace ?? 'apps',
      uid: `uid-${name}`,
      ...(o.labels ? { labels: o.labels } : {}),
      ...(o.annotations ? { annotations: o.annotations } : {}),
    },
    spec: {
      template: {
        spec: { containers: list(containers), ...(o.init ? { initContainers: list(o.init) } : {}) },
      },
    },
  };
}

const optedIn = (name: string, image: string, extra: Parameters<typeof workload>[2] = {}) =>
  workload(name, { app: image }, { ...extra, labels: { 'kubewatcher.io/watch': 'true', ...extra.labels } });

function generatedSpec(image: string, over: Partial<WatchedImage['spec']> = {}): WatchedImage['spec'] {
  return {
    image,
    kinds: ['Deployment', 'StatefulSet', 'DaemonSet', 'CronJob'],
    updatePolicy: 'Auto',
    interval: '5m',
    suspend: false,
    historyLimit: 10,
    ...over,
  };
}

/** A WatchedImage as the cache holds it after the controller generated it (or a person edited it). */
function generated(
  name: string,
  spec: WatchedImage['spec'],
  writtenSpec = spec,
  extra: object = {},
): WatchedImage {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'WatchedImage',
    metadata: {
      name,
      namespace: 'apps',
      uid: `uid-${name}`,
      resourceVersion: '7',
      labels: { 'app.kubernetes.io/managed-by': 'kubewatcher' },
      annotations: { 'kubewatcher.io/generated-spec': specHash(writtenSpec) },
      ...extra,
    },
    spec,
  };
}

function personal(name: string, image: string): WatchedImage {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'WatchedImage',
    metadata: { name, namespace: 'apps', uid: `uid-${name}` },
    spec: { image },
  };
}

function update(
  name: string,
  watchedImage: string,
  phase?: NonNullable<ImageUpdate['status']>['phase'],
): ImageUpdate {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'ImageUpdate',
    metadata: { name, namespace: 'apps' },
    spec: { watchedImage, image: WEB, fromDigest: DIGEST, toDigest: DIGEST, approved: false },
    ...(phase ? { status: { phase } } : {}),
  } as ImageUpdate;
}

function input(over: Partial<AutoWatchInput>): AutoWatchInput {
  return {
    namespace: 'apps',
    namespaceObject: ns(),
    scope: scope(),
    workloads: [],
    watchedImages: [],
    updates: [],
    ...over,
  };
}

/** The images of the WatchedImages a plan creates or changes. */
const applied = (i: AutoWatchInput) => planAutoWatch(i).apply.map((w) => w.spec.image);

describe('planAutoWatch: who is watched', () => {
  const web = (extra: Parameters<typeof workload>[2] = {}) => workload('web', { app: WEB }, extra);
  const cases: {
    name: string;
    mode?: AutoWatchMode;
    namespace?: NamespaceLike;
    workload: AutoWatchWorkload;
    watched: boolean;
  }[] = [
    { name: 'opted-in: nothing labelled', workload: web(), watched: false },
    {
      name: 'opted-in: workload label true',
      workload: web({ labels: { 'kubewatcher.io/watch': 'true' } }),
      watched: true,
    },
    {
      name: 'opted-in: workload annotation true',
      workload: web({ annotations: { 'kubewatcher.io/watch': 'true' } }),
      watched: true,
    },
    {
      name: 'opted-in: namespace label true',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'true' }),
      workload: web(),
      watched: true,
    },
    {
      name: 'opted-in: namespace true, workload label false',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'true' }),
      workload: web({ labels: { 'kubewatcher.io/watch': 'false' } }),
      watched: false,
    },
    {
      name: 'opted-in: namespace true, workload annotation false',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'true' }),
      workload: web({ annotations: { 'kubewatcher.io/watch': 'false' } }),
      watched: false,
    },
    {
      name: 'label true and annotation false: false wins',
      workload: web({
        labels: { 'kubewatcher.io/watch': 'true' },
        annotations: { 'kubewatcher.io/watch': 'false' },
      }),
      watched: false,
    },
    {
      name: 'opted-in: namespace false, workload true (the most specific wins)',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'false' }),
      workload: web({ labels: { 'kubewatcher.io/watch': 'true' } }),
      watched: true,
    },
    {
      name: 'opted-in: namespace annotation (not label) true is no opt-in',
      namespace: ns('apps', {}, { 'kubewatcher.io/watch': 'true' }),
      workload: web(),
      watched: false,
    },
    { name: 'all: nothing labelled', mode: 'all', workload: web(), watched: true },
    {
      name: 'all: workload false',
      mode: 'all',
      workload: web({ labels: { 'kubewatcher.io/watch': 'false' } }),
      watched: false,
    },
    {
      name: 'all: namespace false',
      mode: 'all',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'false' }),
      workload: web(),
      watched: false,
    },
    ...['kube-system', 'kube-public', 'kube-node-lease', 'kubewatcher-system'].flatMap((n) => [
      {
        name: `all: ${n} left out`,
        mode: 'all' as const,
        namespace: ns(n),
        workload: web({ namespace: n }),
        watched: false,
      },
      {
        name: `all: ${n} labelled true`,
        mode: 'all' as const,
        namespace: ns(n, { 'kubewatcher.io/watch': 'true' }),
        workload: web({ namespace: n }),
        watched: true,
      },
    ]),
    {
      name: 'off: workload true',
      mode: 'off',
      workload: web({ labels: { 'kubewatcher.io/watch': 'true' } }),
      watched: false,
    },
    {
      name: 'off: namespace true',
      mode: 'off',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'true' }),
      workload: web(),
      watched: false,
    },
    {
      name: 'namespace not in the cache: workload label alone decides',
      namespace: undefined,
      workload: web({ labels: { 'kubewatcher.io/watch': 'true' } }),
      watched: true,
    },
    {
      name: 'bad workload value: not watched',
      mode: 'all',
      workload: web({ labels: { 'kubewatcher.io/watch': 'yes' } }),
      watched: false,
    },
    {
      name: 'bad namespace value: not watched',
      mode: 'all',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'on' }),
      workload: web(),
      watched: false,
    },
  ];
  it.each(cases)('$name', (c) => {
    const i = input({
      namespace: c.workload.metadata.namespace!,
      namespaceObject: 'namespace' in c ? c.namespace : ns(),
      scope: scope(c.mode),
      workloads: [c.workload],
    });
    expect(applied(i)).toEqual(c.watched ? ['ghcr.io/acme/web:1.0'] : []);
    expect(workloadOptIn(c.workload, i.namespaceObject, i.scope).watched).toBe(c.watched);
  });
});

describe('planAutoWatch: which WatchedImages', () => {
  it('one per tag across containers and init containers, the familiar spelling, deterministic names', () => {
    const plan = planAutoWatch(
      input({
        workloads: [
          workload(
            'web',
            { app: WEB, proxy: 'nginx:1.27', sidecar: 'docker.io/library/nginx:1.27' },
            { labels: { 'kubewatcher.io/watch': 'true' }, init: { migrate: 'ghcr.io/acme/migrate:3' } },
          ),
          optedIn('db', 'postgres', { kind: 'StatefulSet' }),
        ],
      }),
    );
    expect(plan.apply.map((w) => [w.metadata.name, w.spec.image])).toEqual([
      [generatedWatchedImageName('docker.io/library/nginx:1.27'), 'nginx:1.27'],
      [generatedWatchedImageName('docker.io/library/postgres:latest'), 'postgres:latest'],
      [generatedWatchedImageName('ghcr.io/acme/migrate:3'), 'ghcr.io/acme/migrate:3'],
      [WEB_NAME, WEB],
    ]);
    expect(plan.apply[0]).toEqual({
      apiVersion: 'kubewatcher.io/v1alpha1',
      kind: 'WatchedImage',
      metadata: {
        name: generatedWatchedImageName('docker.io/library/nginx:1.27'),
        namespace: 'apps',
        labels: { 'app.kubernetes.io/managed-by': 'kubewatcher' },
        annotations: { 'kubewatcher.io/generated-spec': specHash(generatedSpec('nginx:1.27')) },
      },
      spec: generatedSpec('nginx:1.27'),
    });
    expect(plan.reports).toEqual([]);
  });

  it('a pinned reference (repo:tag@sha256:…) is tracked by its tag', () => {
    expect(applied(input({ workloads: [optedIn('web', `${WEB}@${DIGEST}`)] }))).toEqual([WEB]);
  });

  it('several tags of one repository: one WatchedImage per tag', () => {
    const plan = planAutoWatch(
      input({ workloads: [optedIn('a', 'ghcr.io/acme/web:1.0'), optedIn('b', 'ghcr.io/acme/web:2.0')] }),
    );
    expect(plan.apply.map((w) => w.spec.image)).toEqual(['ghcr.io/acme/web:1.0', 'ghcr.io/acme/web:2.0']);
    expect(new Set(plan.apply.map((w) => w.metadata.name)).size).toBe(2);
  });

  it('a digest-only reference is reported on its workload, not guessed', () => {
    const plan = planAutoWatch(input({ workloads: [optedIn('web', `ghcr.io/acme/web@${DIGEST}`)] }));
    expect(plan.apply).toEqual([]);
    expect(plan.reports).toEqual([
      {
        on: { kind: 'Deployment', name: 'web', uid: 'uid-web' },
        reason: 'DigestOnlyImage',
        message: expect.stringContaining(`container app runs ghcr.io/acme/web@${DIGEST} with no tag`),
      },
    ]);
  });

  it('an invalid image is reported', () => {
    const plan = planAutoWatch(input({ workloads: [optedIn('web', 'Not A Reference')] }));
    expect(plan.apply).toEqual([]);
    expect(plan.reports.map((r) => r.reason)).toEqual(['InvalidImage']);
  });

  it('workloads not opted in add nothing, even when they run a watched tag', () => {
    const plan = planAutoWatch(
      input({ workloads: [workload('plain', { app: 'redis:7' }), optedIn('web', WEB)] }),
    );
    expect(plan.apply.map((w) => w.spec.image)).toEqual([WEB]);
  });
});

describe('planAutoWatch: spec from annotations', () => {
  const cases: {
    name: string;
    namespace?: NamespaceLike;
    workloads: AutoWatchWorkload[];
    spec?: Partial<WatchedImage['spec']>;
    report?: RegExp;
  }[] = [
    { name: 'defaults', workloads: [optedIn('web', WEB)], spec: {} },
    {
      name: 'workload annotations',
      workloads: [
        optedIn('web', WEB, {
          annotations: { 'kubewatcher.io/update-policy': 'Manual', 'kubewatcher.io/interval': '10m' },
        }),
      ],
      spec: { updatePolicy: 'Manual', interval: '10m' },
    },
    {
      name: 'namespace annotations',
      namespace: ns(
        'apps',
        { 'kubewatcher.io/watch': 'true' },
        { 'kubewatcher.io/update-policy': 'Observe', 'kubewatcher.io/interval': '1h' },
      ),
      workloads: [workload('web', { app: WEB })],
      spec: { updatePolicy: 'Observe', interval: '1h' },
    },
    {
      name: 'the workload overrides its namespace',
      namespace: ns(
        'apps',
        {},
        { 'kubewatcher.io/update-policy': 'Observe', 'kubewatcher.io/interval': '1h' },
      ),
      workloads: [optedIn('web', WEB, { annotations: { 'kubewatcher.io/update-policy': 'Auto' } })],
      spec: { updatePolicy: 'Auto', interval: '1h' },
    },
    {
      name: 'workloads of one tag disagree: the most cautious policy and the shortest interval',
      workloads: [
        optedIn('a', WEB, {
          annotations: { 'kubewatcher.io/update-policy': 'Manual', 'kubewatcher.io/interval': '1h' },
        }),
        optedIn('b', WEB, { annotations: { 'kubewatcher.io/interval': '90s' } }),
        optedIn('c', WEB, { annotations: { 'kubewatcher.io/interval': '2m' } }),
      ],
      spec: { updatePolicy: 'Manual', interval: '90s' },
    },
    {
      name: 'a bad policy is reported and the workload not watched (never read as Auto)',
      workloads: [optedIn('web', WEB, { annotations: { 'kubewatcher.io/update-policy': 'Manul' } })],
      report:
        /Deployment web: annotation kubewatcher.io\/update-policy is "Manul"; want one of Auto, Manual, Observe/,
    },
    {
      name: 'an interval below the minimum',
      workloads: [optedIn('web', WEB, { annotations: { 'kubewatcher.io/interval': '30s' } })],
      report: /annotation kubewatcher.io\/interval is "30s"; want at least 1m/,
    },
    {
      name: 'an interval that is no duration',
      workloads: [optedIn('web', WEB, { annotations: { 'kubewatcher.io/interval': 'hourly' } })],
      report: /"hourly"; want a Go duration/,
    },
    {
      name: 'a bad namespace annotation is reported once, on the Namespace',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'true' }, { 'kubewatcher.io/interval': '0' }),
      workloads: [workload('a', { app: WEB }), workload('b', { app: WEB })],
      report: /^Namespace apps: annotation kubewatcher.io\/interval is "0"/,
    },
    {
      name: 'a bad namespace label is reported once',
      namespace: ns('apps', { 'kubewatcher.io/watch': 'True' }),
      workloads: [workload('a', { app: WEB }), workload('b', { app: WEB })],
      report: /^Namespace apps: label kubewatcher.io\/watch is "True"; want "true" or "false"/,
    },
  ];
  it.each(cases)('$name', (c) => {
    const plan = planAutoWatch(input({ namespaceObject: c.namespace ?? ns(), workloads: c.workloads }));
    if (c.spec) {
      expect(plan.apply.map((w) => w.spec)).toEqual([generatedSpec(WEB, c.spec)]);
      expect(plan.reports).toEqual([]);
    } else {
      expect(plan.apply).toEqual([]);
      expect(plan.reports).toHaveLength(1);
      expect(plan.reports[0]!.reason).toBe('InvalidAutoWatchSetting');
      expect(plan.reports[0]!.message).toMatch(c.report!);
    }
  });
});

describe('planAutoWatch: against what exists', () => {
  const spec = generatedSpec(WEB);
  const web = optedIn('web', WEB);
  const cases: {
    name: string;
    workloads?: AutoWatchWorkload[];
    watchedImages: WatchedImage[];
    updates?: ImageUpdate[];
    mode?: AutoWatchMode;
    expected: { apply?: string[]; delete?: string[]; release?: string[]; waiting?: string[] };
  }[] = [
    {
      name: 'up to date: nothing to write (no churn)',
      workloads: [web],
      watchedImages: [generated(WEB_NAME, spec)],
      expected: {},
    },
    {
      name: 'up to date with keys in another order: nothing to write',
      workloads: [web],
      watchedImages: [
        generated(WEB_NAME, Object.fromEntries(Object.entries(spec).reverse()) as WatchedImage['spec'], spec),
      ],
      expected: {},
    },
    {
      name: 'a field the server defaults that the controller did not write (a newer schema) is no edit',
      workloads: [web],
      watchedImages: [
        generated(
          WEB_NAME,
          spec,
          Object.fromEntries(Object.entries(spec).filter(([k]) => k !== 'suspend')) as WatchedImage['spec'],
        ),
      ],
      expected: {},
    },
    {
      name: 'a defaulted field set to another value is an edit',
      workloads: [web],
      watchedImages: [generated(WEB_NAME, { ...spec, suspend: true }, spec)],
      expected: { release: [WEB_NAME] },
    },
    {
      name: 'the annotations changed: applied again',
      workloads: [optedIn('web', WEB, { annotations: { 'kubewatcher.io/update-policy': 'Manual' } })],
      watchedImages: [generated(WEB_NAME, spec)],
      expected: { apply: [WEB_NAME] },
    },
    {
      name: "a person's WatchedImage for the same tag wins: no twin",
      workloads: [web],
      watchedImages: [personal('mine', 'ghcr.io/acme/web:1.0')],
      expected: {},
    },
    {
      name: "a person's WatchedImage in another spelling still wins",
      workloads: [optedIn('web', 'nginx')],
      watchedImages: [personal('mine', 'docker.io/library/nginx:latest')],
      expected: {},
    },
    {
      name: "a person's WatchedImage appears: the generated one is deleted",
      workloads: [web],
      watchedImages: [generated(WEB_NAME, spec), personal('mine', WEB)],
      expected: { delete: [WEB_NAME] },
    },
    {
      name: "a person's WatchedImage for another tag does not count",
      workloads: [web],
      watchedImages: [personal('mine', 'ghcr.io/acme/web:2.0')],
      expected: { apply: [WEB_NAME] },
    },
    {
      name: 'no workload runs it any more: deleted',
      watchedImages: [generated(WEB_NAME, spec)],
      updates: [update('web-1', WEB_NAME, 'Succeeded'), update('web-2', WEB_NAME, 'Superseded')],
      expected: { delete: [WEB_NAME] },
    },
    {
      name: 'unused but an ImageUpdate is still rolling out: waits',
      watchedImages: [generated(WEB_NAME, spec)],
      updates: [
        update('web-1', WEB_NAME, 'Succeeded'),
        update('web-2', WEB_NAME, 'RollingOut'),
        update('web-3', WEB_NAME),
      ],
      expected: { waiting: [WEB_NAME] },
    },
    {
      name: "another WatchedImage's unfinished update does not hold it",
      watchedImages: [generated(WEB_NAME, spec)],
      updates: [update('other-1', 'other', 'Applying')],
      expected: { delete: [WEB_NAME] },
    },
    {
      name: '--auto-watch=off: generated ones go',
      mode: 'off',
      workloads: [web],
      watchedImages: [generated(WEB_NAME, spec)],
      expected: { delete: [WEB_NAME] },
    },
    {
      name: "a person's WatchedImage is never deleted, even unused",
      watchedImages: [personal('mine', WEB)],
      expected: {},
    },
    {
      name: 'edited by a person while in use: released (kept, no longer generated)',
      workloads: [web],
      watchedImages: [generated(WEB_NAME, { ...spec, updatePolicy: 'Manual' }, spec)],
      expected: { release: [WEB_NAME] },
    },
    {
      name: 'edited by a person (a field added) and unused: released, not deleted',
      watchedImages: [
        generated(WEB_NAME, { ...spec, workloadSelector: { matchLabels: { tier: 'web' } } }, spec),
      ],
      expected: { release: [WEB_NAME] },
    },
    {
      name: 'being deleted and still wanted: made again once gone',
      workloads: [web],
      watchedImages: [generated(WEB_NAME, spec, spec, { deletionTimestamp: '2026-11-25T12:00:00Z' })],
      expected: {},
    },
  ];
  it.each(cases)('$name', (c) => {
    const plan = planAutoWatch(
      input({
        scope: scope(c.mode),
        workloads: c.workloads ?? [],
        watchedImages: c.watchedImages,
        updates: c.updates ?? [],
      }),
    );
    expect({
      apply: plan.apply.map((w) => w.metadata.name),
      delete: plan.delete.map((d) => d.name),
      release: plan.release.map((d) => d.name),
      waiting: plan.waiting.map((d) => d.name),
    }).toEqual({ apply: [], delete: [], release: [], waiting: [], ...c.expected });
    expect(plan.reports).toEqual([]);
  });

  it('deletes at the version it judged, and names what it waits for', () => {
    const wi = generated(WEB_NAME, spec);
    expect(planAutoWatch(input({ watchedImages: [wi] })).delete).toEqual([
      { name: WEB_NAME, uid: `uid-${WEB_NAME}`, resourceVersion: '7' },
    ]);
    const waiting = planAutoWatch(
      input({
        watchedImages: [wi],
        updates: [update('web-b', WEB_NAME, 'RollingOut'), update('web-a', WEB_NAME, 'Pending')],
      }),
    ).waiting;
    expect(waiting).toEqual([{ name: WEB_NAME, updates: ['web-a', 'web-b'] }]);
  });

  it("a person's WatchedImage that holds the generated name for another image: reported, left alone", () => {
    const plan = planAutoWatch(input({ workloads: [web], watchedImages: [personal(WEB_NAME, 'redis:7')] }));
    expect(plan.apply).toEqual([]);
    expect(plan.delete).toEqual([]);
    expect(plan.reports.map((r) => r.reason)).toEqual(['WatchedImageNameTaken']);
  });
});

describe('generatedWatchedImageName', () => {
  it.each([
    ['docker.io/library/nginx:1.27', /^nginx-1\.27-[0-9a-f]{8}$/],
    ['ghcr.io/acme/web:stable', /^web-stable-[0-9a-f]{8}$/],
    ['127.0.0.1:5000/team/API_Server:V2__rc-.1', /^api-server-v2-rc\.1-[0-9a-f]{8}$/],
    [`ghcr.io/acme/${'x'.repeat(200)}:${'t'.repeat(128)}`, /^x{54}-[0-9a-f]{8}$/],
    ['ghcr.io/acme/web:___', /^web-[0-9a-f]{8}$/],
  ])('%s', (reference, want) => {
    const name = generatedWatchedImageName(reference);
    expect(name).toMatch(want);
    expect(name.length).toBeLessThanOrEqual(63);
    expect(name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
  });

  it('differs for references that read the same', () => {
    expect(generatedWatchedImageName('ghcr.io/a/web:1.0')).not.toBe(
      generatedWatchedImageName('ghcr.io/b/web:1.0'),
    );
  });
});
