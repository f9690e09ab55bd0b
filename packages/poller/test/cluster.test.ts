/**
 * KubePollerCluster against the real local API server: its API calls share one connection (client-node's
 * own makeApiClient opens one per call), and WatchedImages are listed in pages, without managedFields.
 */
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import { AppsV1Api, CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { loadKubeConfig } from '@kubewatcher/shared';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createWatchedImage } from '../../../test/support/controller-fixtures.ts';
import { installCrds } from '../../../test/support/crds.ts';
import { KubePollerCluster } from '../src/cluster.ts';

const info = inject('localCluster');
const kc = loadKubeConfig(info.kubeconfig);
const namespace = `poller-cluster-${randomBytes(3).toString('hex')}`;

beforeAll(async () => {
  await installCrds(info);
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
  const custom = kc.makeApiClient(CustomObjectsApi);
  for (let i = 0; i < 5; i++) {
    await createWatchedImage({ custom }, namespace, `wi-${i}`, { image: `example.com/team/app-${i}:v1` });
  }
});

/** Counts the TLS connections opened while `work` runs (undici dials through tls.connect). */
async function tlsConnections(work: () => Promise<unknown>): Promise<number> {
  const original = tls.connect;
  let count = 0;
  (tls as { connect: typeof tls.connect }).connect = ((...args: Parameters<typeof tls.connect>) => {
    count++;
    return original(...args);
  }) as typeof tls.connect;
  try {
    await work();
  } finally {
    (tls as { connect: typeof tls.connect }).connect = original;
  }
  return count;
}

describe('KubePollerCluster', () => {
  afterEach(() => {
    expect(tls.connect.name).toBe('connect');
  });

  it('sends all its API calls over one connection', async () => {
    // A KubeConfig of its own, with no pooled connection yet: the cluster must set up the pooling.
    const own = new KubeConfig();
    own.loadFromFile(info.kubeconfig);
    const cluster = new KubePollerCluster(own);
    const connections = await tlsConnections(async () => {
      for (let i = 0; i < 10; i++) {
        await cluster.listWatchedImages(namespace);
        await cluster.getServiceAccountPullSecrets(namespace, 'nobody');
        await cluster.listWorkloads(namespace, ['Deployment', 'StatefulSet', 'DaemonSet', 'CronJob']);
      }
      // Concurrent calls may open a few more, never one each.
      await Promise.all(Array.from({ length: 20 }, () => cluster.getSecret(namespace, 'nothing')));
    });
    expect(connections).toBeGreaterThanOrEqual(1);
    expect(connections).toBeLessThanOrEqual(4);
  });

  it('lists WatchedImages in pages, all of them, without managedFields', async () => {
    const paged = new KubePollerCluster(kc, { listPageSize: 2 });
    const items = await paged.listWatchedImages(namespace);
    expect(items.map((wi) => wi.metadata.name).sort()).toEqual(['wi-0', 'wi-1', 'wi-2', 'wi-3', 'wi-4']);
    for (const wi of items) {
      expect(wi.metadata).not.toHaveProperty('managedFields');
      expect(wi.metadata.uid).toBeTruthy();
      expect(wi.spec.image).toMatch(/^example\.com\/team\/app-\d:v1$/);
    }
    const all = await paged.listWatchedImages();
    expect(all.filter((wi) => wi.metadata.namespace === namespace)).toHaveLength(5);
  });

  it('lists workloads in pages, all of them, keeping only what matching reads', async () => {
    const apps = kc.makeApiClient(AppsV1Api);
    for (let i = 0; i < 5; i++) {
      await apps.createNamespacedDeployment({
        namespace,
        body: {
          metadata: { name: `d-${i}`, labels: { app: `d-${i}` }, annotations: { big: 'x'.repeat(50_000) } },
          spec: {
            selector: { matchLabels: { app: `d-${i}` } },
            template: {
              metadata: { labels: { app: `d-${i}` } },
              spec: {
                containers: [
                  { name: 'app', image: `example.com/team/app-${i}:v1`, env: [{ name: 'A', value: 'b' }] },
                ],
              },
            },
          },
        },
      });
    }
    const paged = new KubePollerCluster(kc, { listPageSize: 2 });
    const items = await paged.listWorkloads(namespace, ['Deployment']);
    expect(items.map((w) => w.metadata.name).sort()).toEqual(['d-0', 'd-1', 'd-2', 'd-3', 'd-4']);
    expect(items.find((w) => w.metadata.name === 'd-3')).toEqual({
      kind: 'Deployment',
      metadata: { name: 'd-3', namespace, labels: { app: 'd-3' } },
      spec: { template: { spec: { containers: [{ name: 'app', image: 'example.com/team/app-3:v1' }] } } },
    });
  });
});
