import { matchWorkloads, type WorkloadLike } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import { cachedWorkload } from './cached-workload.ts';
import { rolloutState } from './rollout.ts';

/** A Deployment as a tenant may write it: large everywhere the controller does not look. */
function bigDeployment(image: string) {
  const blob = 'x'.repeat(200_000);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'front',
      namespace: 'apps',
      uid: 'u1',
      resourceVersion: '42',
      generation: 3,
      labels: { app: 'front' },
      annotations: {
        'kubectl.kubernetes.io/last-applied-configuration': blob,
        'kubewatcher.io/image-update': 'front-abc',
      },
      managedFields: [{ manager: 'kubectl', fieldsV1: { blob } }],
      ownerReferences: [],
    },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: 'front' } },
      template: {
        metadata: { labels: { app: 'front' }, annotations: { big: blob } },
        spec: {
          serviceAccountName: 'front',
          imagePullSecrets: [{ name: 'regcred' }],
          volumes: [{ name: 'v', configMap: { name: blob } }],
          initContainers: [{ name: 'init', image: 'busybox:1', command: [blob] }],
          containers: [{ name: 'app', image, env: [{ name: 'BIG', value: blob }] }],
        },
      },
    },
    status: {
      observedGeneration: 3,
      replicas: 3,
      updatedReplicas: 2,
      availableReplicas: 3,
      conditions: [{ type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated', message: blob }],
    },
  };
}

describe('cachedWorkload', () => {
  it('keeps what matching, planning and rollouts read, and drops the rest of a large object', () => {
    const full = bigDeployment('nginx:1.27');
    const cached = cachedWorkload(full, 'Deployment');
    expect(JSON.stringify(full).length).toBeGreaterThan(1_000_000);
    expect(JSON.stringify(cached).length).toBeLessThan(2_000);
    expect(cached.metadata).toEqual({
      name: 'front',
      namespace: 'apps',
      uid: 'u1',
      resourceVersion: '42',
      generation: 3,
      labels: { app: 'front' },
      annotations: { 'kubewatcher.io/image-update': 'front-abc' },
    });
    expect((cached.spec as { template?: { spec?: unknown } } | undefined)?.template?.spec).toEqual({
      serviceAccountName: 'front',
      imagePullSecrets: [{ name: 'regcred' }],
      containers: [{ name: 'app', image: 'nginx:1.27' }],
      initContainers: [{ name: 'init', image: 'busybox:1' }],
    });
  });

  it('keeps only the annotations Kubewatcher reads, however a tenant names the others', () => {
    const blob = 'x'.repeat(200_000);
    const full = bigDeployment('nginx:1.27');
    Object.assign(full.metadata.annotations, {
      'kubewatcher.io/watch': 'true',
      'kubewatcher.io/update-policy': 'Manual',
      'kubewatcher.io/interval': '10m',
      'kubewatcher.io/padding': blob,
      ...Object.fromEntries(
        Array.from({ length: 1000 }, (_, i) => [`kubewatcher.io/p${i}`, 'y'.repeat(200)]),
      ),
    });
    const cached = cachedWorkload(full, 'Deployment');
    expect(cached.metadata.annotations).toEqual({
      'kubewatcher.io/image-update': 'front-abc',
      'kubewatcher.io/watch': 'true',
      'kubewatcher.io/update-policy': 'Manual',
      'kubewatcher.io/interval': '10m',
    });
    expect(JSON.stringify(cached).length).toBeLessThan(2_000);
  });

  it.each(['nginx:1.27', 'redis:7'])(
    'matching and rollout state are the same on the cached copy (%s)',
    (image) => {
      const full = bigDeployment(image);
      const cached = cachedWorkload(full, 'Deployment');
      const spec = { image: 'nginx:1.27' };
      const names = (w: unknown) =>
        matchWorkloads(spec, [w as WorkloadLike]).map((m) => m.containers.map((c) => c.name));
      expect(names(cached)).toEqual(names(full));
      const state = rolloutState(cached);
      expect(state.done).toBe(rolloutState(full as unknown as typeof cached).done);
      expect(state.message.length).toBeLessThanOrEqual(1024);
    },
  );

  it("keeps a CronJob's pod template where the kind has it", () => {
    const cached = cachedWorkload(
      {
        metadata: { name: 'nightly' },
        spec: {
          schedule: '0 3 * * *',
          jobTemplate: {
            spec: { template: { spec: { containers: [{ name: 'job', image: 'nginx:1.27', args: ['x'] }] } } },
          },
        },
      },
      'CronJob',
    );
    expect(cached.spec).toEqual({
      jobTemplate: { spec: { template: { spec: { containers: [{ name: 'job', image: 'nginx:1.27' }] } } } },
    });
  });

  it("gives an object of a list (which carries no kind) the informer's kind", () => {
    expect(cachedWorkload({ metadata: { name: 'd' } }, 'StatefulSet')).toEqual({
      kind: 'StatefulSet',
      metadata: { name: 'd' },
    });
  });

  it('adds no field the object lacked', () => {
    const cached = cachedWorkload({ kind: 'DaemonSet', metadata: { name: 'd' } }, 'DaemonSet');
    expect(cached).toEqual({ kind: 'DaemonSet', metadata: { name: 'd' } });
  });
});
