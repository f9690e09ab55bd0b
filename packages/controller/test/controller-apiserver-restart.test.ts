/**
 * Watches broken by a kube-apiserver restart: on a private control plane (restarting the shared one
 * would disturb the other test files), kube-apiserver is stopped and started again on the same port
 * with the same etcd while the controller runs; updates created around the restart still succeed, and
 * WatchedImages deleted while the informers reconnect leave their caches.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalCluster, startLocalCluster } from '../../../scripts/lib/local-cluster.ts';
import {
  type Clients,
  clientsFor,
  createImageUpdate,
  createNamespace,
  createWatchedImage,
  deployment,
  getImageUpdate,
  imagesOf,
  installCrds,
  testDigest,
  until,
  WI,
  waitForPhase,
} from '../../../test/support/controller-fixtures.ts';
import { type RunningController, startController } from './controller-harness.ts';

const WEB = 'ghcr.io/acme/web:1.0';
let dir: string;
let cluster: LocalCluster;
let clients: Clients;
let running: RunningController | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kubewatcher-restart-test-'));
  cluster = await startLocalCluster({ dir });
  clients = clientsFor(cluster.info);
  await installCrds(cluster.info);
});

afterAll(async () => {
  await running?.stop();
  await cluster?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a kube-apiserver restart', () => {
  it('breaks the watches; the controller recovers them and loses no update', async () => {
    const ns = await createNamespace(clients, 'restart');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    // Cluster-wide informers, and no relist for the length of the test: recovery must come from the
    // informers noticing the broken watch, not from the periodic relist.
    running = await startController(clients.kc, { relistIntervalMs: 0 });

    const first = await createImageUpdate(clients, wi, testDigest(1));
    await waitForPhase(clients, ns, first.metadata.name, 'Succeeded');
    const restartsBefore = await running.metric('kubewatcher_informer_restarts_total', { reason: 'error' });

    // One update right before the restart (its events may be in flight when the watch breaks), one
    // right after the API server is back.
    const before = await createImageUpdate(clients, wi, testDigest(2));
    await cluster.restartApiServer({ downMs: 2000 });
    const after = await until(
      () => createImageUpdate(clients, wi, testDigest(3)),
      () => true,
      { what: 'the API server to accept the update', ignoreErrors: true },
    );

    const done = await waitForPhase(clients, ns, after.metadata.name, ['Succeeded', 'Failed'], 120_000);
    expect(done.status?.phase).toBe('Succeeded');
    const older = await getImageUpdate(clients, ns, before.metadata.name);
    // The update created before the restart was either applied or superseded by the newer one: never lost.
    expect(['Succeeded', 'Superseded']).toContain(older.status?.phase);
    const web = await clients.apps.readNamespacedDeployment({ namespace: ns, name: 'web' });
    expect(imagesOf(web)).toEqual({ app: `${WEB}@${after.spec.toDigest}` });

    // The watches really broke and the informers started over.
    expect(await running.metric('kubewatcher_informer_restarts_total', { reason: 'error' })).toBeGreaterThan(
      restartsBefore,
    );
    for (const informer of running.controller.informers) {
      expect(informer.status()).toMatchObject({ synced: true, stalled: false });
    }
  });

  it('a WatchedImage deleted while the informers reconnect leaves the cache', async () => {
    await running?.stop();
    running = await startController(clients.kc, { relistIntervalMs: 0 });
    const c = running;
    const ns = await createNamespace(clients, 'restart-delete');
    const cached = (name: string) => c.controller.caches.watchedImages.get(`${ns}/${name}`);
    // Created while the controller runs, so the watch (not a list) brought it into the cache.
    await createWatchedImage(clients, ns, 'early', { image: WEB });
    await until(
      () => cached('early'),
      (wi) => wi?.status?.conditions?.some((x) => x.type === 'Ready') === true,
      { what: 'the controller to set Ready on early' },
    );
    const restartsBefore = await c.metric('kubewatcher_informer_restarts_total', {
      informer: 'watchedimages',
      reason: 'error',
    });

    await cluster.restartApiServer({ downMs: 2000 });
    // The API server is back; the informers are still in their restart backoff or relisting.
    await until(
      () => clients.custom.deleteNamespacedCustomObject({ ...WI, namespace: ns, name: 'early' }),
      () => true,
      { what: 'the API server to accept the deletion', ignoreErrors: true },
    );
    // Created and deleted at once while the watch may not be open yet.
    await createWatchedImage(clients, ns, 'blink', { image: WEB });
    await clients.custom.deleteNamespacedCustomObject({ ...WI, namespace: ns, name: 'blink' });
    await createWatchedImage(clients, ns, 'late', { image: WEB });

    await until(
      () => cached('late'),
      (wi) => wi?.status?.conditions?.some((x) => x.type === 'Ready') === true,
      { what: 'the controller to set Ready on late, created after the restart' },
    );
    await until(
      () => c.controller.caches.watchedImages.listByNamespace(ns).map((wi) => wi.metadata.name),
      (names) => names.length === 1,
      { what: `the deleted WatchedImages of ${ns} to leave the cache` },
    );
    expect(cached('early')).toBeUndefined();
    expect(cached('blink')).toBeUndefined();
    expect(
      await c.metric('kubewatcher_informer_restarts_total', { informer: 'watchedimages', reason: 'error' }),
    ).toBeGreaterThan(restartsBefore);
  });
});
