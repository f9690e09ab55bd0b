import type { KubernetesObject } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import type { ListWatchSource } from './machinery/index.ts';
import type { Workload } from './plan-update.ts';
import { namespaceLabelsOnly } from './reconcile-auto-watch.ts';
import { matchingInputsChanged } from './reconcilers.ts';

const namespace = {
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: {
    name: 'apps',
    uid: 'u1',
    resourceVersion: '42',
    labels: { 'kubewatcher.io/watch': 'true', team: 'a' },
    annotations: {
      'kubewatcher.io/update-policy': 'Manual',
      'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(4096),
    },
    managedFields: [{ manager: 'kubectl' }],
  },
  spec: { finalizers: ['kubernetes'] },
  status: { phase: 'Active' },
};
const kept = {
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: {
    name: 'apps',
    uid: 'u1',
    resourceVersion: '42',
    labels: { 'kubewatcher.io/watch': 'true', team: 'a' },
    annotations: { 'kubewatcher.io/update-policy': 'Manual' },
  },
};

describe('namespaceLabelsOnly', () => {
  it('keeps name, uid, version, labels and Kubewatcher annotations of listed and watched Namespaces', async () => {
    const watched: unknown[] = [];
    const source: ListWatchSource = {
      list: async () => ({
        apiVersion: 'v1',
        kind: 'NamespaceList',
        metadata: {},
        items: [namespace as KubernetesObject],
      }),
      watch: async (_path, _params, callback) => {
        callback('MODIFIED', namespace, namespace);
        return new AbortController();
      },
    };
    const wrapped = namespaceLabelsOnly(source);
    expect((await wrapped.list('/api/v1/namespaces', {})).items).toEqual([kept]);
    await wrapped.watch(
      '/api/v1/namespaces',
      {},
      (_phase, obj) => watched.push(obj),
      () => undefined,
    );
    expect(watched).toEqual([kept]);
  });

  it('passes ERROR and BOOKMARK events untouched (a 410 Status keeps its code, so ListWatch lists again)', async () => {
    const gone = { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', code: 410 };
    const bookmark = { kind: 'Namespace', apiVersion: 'v1', metadata: { resourceVersion: '77' } };
    const watched: unknown[] = [];
    const source: ListWatchSource = {
      list: async () => ({ apiVersion: 'v1', kind: 'NamespaceList', metadata: {}, items: [] }),
      watch: async (_path, _params, callback) => {
        callback('ERROR', gone, { type: 'ERROR', object: gone });
        callback('BOOKMARK', bookmark, { type: 'BOOKMARK', object: bookmark });
        callback('DELETED', namespace, { type: 'DELETED', object: namespace });
        return new AbortController();
      },
    };
    await namespaceLabelsOnly(source).watch(
      '/api/v1/namespaces',
      {},
      (phase, obj) => watched.push([phase, obj]),
      () => undefined,
    );
    expect(watched).toEqual([
      ['ERROR', gone],
      ['BOOKMARK', bookmark],
      ['DELETED', kept],
    ]);
  });
});

describe('matchingInputsChanged', () => {
  const w = (meta: Partial<Workload['metadata']> = {}, image = 'nginx:1.27', status = {}): Workload =>
    ({
      kind: 'Deployment',
      metadata: { name: 'web', namespace: 'apps', ...meta },
      spec: { template: { spec: { containers: [{ name: 'app', image }] } } },
      status,
    }) as Workload;
  it.each([
    ['a status change', w(), w({}, 'nginx:1.27', { replicas: 3 }), false],
    ['another annotation', w(), w({ annotations: { 'deployment.kubernetes.io/revision': '2' } }), false],
    ['an image', w(), w({}, 'nginx:1.28'), true],
    ['a label', w(), w({ labels: { 'kubewatcher.io/watch': 'true' } }), true],
    ['a Kubewatcher annotation', w(), w({ annotations: { 'kubewatcher.io/watch': 'false' } }), true],
  ])('%s: %s', (_what, a, b, changed) => {
    expect(matchingInputsChanged(a, b)).toBe(changed);
  });
});
