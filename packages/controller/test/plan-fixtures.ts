/**
 * Plain objects for the controller's pure planners' table tests (plan-update, plan-watched-image):
 * a WatchedImage, its ImageUpdates and Deployments in namespace `apps`, as the informer caches hold
 * them. No cluster: the integration fixtures are in test/support/controller-fixtures.ts.
 */
import type { ImageUpdate, WatchedImage } from '@kubewatcher/shared';
import type { Workload } from '../src/plan-update.ts';

export const A = `sha256:${'a'.repeat(64)}`;
export const B = `sha256:${'b'.repeat(64)}`;
export const C = `sha256:${'c'.repeat(64)}`;
export const NOW = new Date('2026-11-25T12:00:00Z');

/** A WatchedImage whose poller last saw B behind the tag (most updates below move to B). */
export function watched(
  spec: Partial<WatchedImage['spec']> = {},
  status: WatchedImage['status'] = { digest: B },
): WatchedImage {
  return {
    status,
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'WatchedImage',
    metadata: { name: 'web', namespace: 'apps', uid: 'wi-uid', generation: 1 },
    spec: {
      image: 'nginx:1.27',
      kinds: ['Deployment'],
      updatePolicy: 'Auto',
      interval: '5m',
      historyLimit: 10,
      ...spec,
    },
  } as WatchedImage;
}

export function update(
  name: string,
  to: string,
  status?: ImageUpdate['status'],
  extra: Partial<ImageUpdate['spec']> = {},
  created = '2026-11-25T11:00:00Z',
): ImageUpdate {
  return {
    apiVersion: 'kubewatcher.io/v1alpha1',
    kind: 'ImageUpdate',
    metadata: {
      name,
      namespace: 'apps',
      generation: 1,
      creationTimestamp: created,
      // Owned by watched(), as the poller's are.
      ownerReferences: [
        {
          apiVersion: 'kubewatcher.io/v1alpha1',
          kind: 'WatchedImage',
          name: 'web',
          uid: 'wi-uid',
          controller: true,
        },
      ],
    },
    spec: {
      watchedImage: 'web',
      image: 'nginx:1.27',
      fromDigest: A,
      toDigest: to,
      approved: false,
      ...extra,
    },
    ...(status ? { status } : {}),
  } as ImageUpdate;
}

/** A Deployment `name` whose container `app` runs `image` beside a `busybox:1` sidecar, rolled out. */
export function deployment(
  name: string,
  image: string,
  status: Partial<NonNullable<Workload['status']>> = {},
  generation = 1,
): Workload {
  return {
    kind: 'Deployment',
    metadata: { name, namespace: 'apps', generation, labels: { app: name } },
    spec: {
      replicas: 2,
      template: {
        spec: {
          containers: [
            { name: 'app', image },
            { name: 'sidecar', image: 'busybox:1' },
          ],
        },
      },
    },
    status: {
      observedGeneration: generation,
      replicas: 2,
      updatedReplicas: 2,
      availableReplicas: 2,
      ...status,
    },
  } as Workload;
}
