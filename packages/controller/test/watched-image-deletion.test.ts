/**
 * A deleted WatchedImage leaves the controller's cache, and the controller acts on it, however it
 * came and went: created while the controller runs, created and deleted at once, deleted while the
 * watch reconnects, deleted in the foreground behind a finalizer. Against the real local control
 * plane; the controller runs in this process and watches its own namespace only.
 */
import { RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { API_VERSION, objectKey, WATCHED_IMAGE, type WatchedImage } from '@kubewatcher/shared';
import { describe, expect, inject, it } from 'vitest';
import { createWatchedImage, mergePatch, until, WI } from '../../../test/support/controller-fixtures.ts';
import { Informer, kubeConfigSource, withoutManagedFields } from '../src/machinery/index.ts';
import { type RunningController, testLogger } from './controller-harness.ts';
import { useControllerTestBed } from './controller-test-bed.ts';

const { clients, newNamespace, startController } = useControllerTestBed(inject('localCluster'));
const rbac = clients.kc.makeApiClient(RbacAuthorizationV1Api);
const IMAGE = 'ghcr.io/acme/shop:2.0';
// The controller binds this ClusterRole by name; the binding is what the test watches, so the role
// itself need not exist (the admin identity may bind any name).
const POLLER_ROLE = 'kubewatcher-test-poller-secrets';
const FINALIZER = 'test.kubewatcher.io/hold';

async function setup(prefix: string, opts: Parameters<typeof startController>[0] = {}) {
  const ns = await newNamespace(prefix);
  const c = await startController({
    namespaces: [ns],
    ...opts,
    pollerAccess: { role: POLLER_ROLE, serviceAccount: { namespace: 'default', name: 'test-poller' } },
  });
  await until(
    () => c.controller.informers.every((i) => i.hasSynced()),
    (synced) => synced,
    { what: 'the controller caches to sync' },
  );
  return { ns, c };
}

const cached = (c: RunningController, ns: string, name: string) =>
  c.controller.caches.watchedImages.get(objectKey({ metadata: { namespace: ns, name } }));

const bindingNames = async (ns: string) =>
  (await rbac.listNamespacedRoleBinding({ namespace: ns })).items.map((b) => b.metadata?.name);

const deleteWatchedImage = (ns: string, name: string, propagationPolicy?: 'Foreground') =>
  clients.custom.deleteNamespacedCustomObject({
    ...WI,
    namespace: ns,
    name,
    ...(propagationPolicy ? { propagationPolicy } : {}),
  });

/** Waits until the controller's cache holds no `ns/name` and the namespace's poller binding is gone. */
async function expectGone(c: RunningController, ns: string, name: string) {
  await until(
    () => cached(c, ns, name),
    (obj) => obj === undefined,
    { what: `WatchedImage ${ns}/${name} to leave the controller's cache` },
  );
  expect(c.controller.caches.watchedImages.listByNamespace(ns)).toEqual([]);
  await until(
    () => bindingNames(ns),
    (names) => !names.includes(POLLER_ROLE),
    { what: `the poller binding in ${ns} to be removed` },
  );
}

/** Waits until the controller has reconciled `ns/name` (its Ready condition is the controller's). */
async function seenByController(c: RunningController, ns: string, name: string): Promise<WatchedImage> {
  return until(
    () => cached(c, ns, name),
    (obj) => obj?.status?.conditions?.some((x) => x.type === 'Ready') === true,
    { what: `the controller to set Ready on ${ns}/${name}` },
  ) as Promise<WatchedImage>;
}

describe('a deleted WatchedImage', () => {
  it('leaves the cache when it was created while the controller ran', async () => {
    const { ns, c } = await setup('wi-delete');
    await createWatchedImage(clients, ns, 'shop', { image: IMAGE });
    await seenByController(c, ns, 'shop');
    await until(
      () => bindingNames(ns),
      (names) => names.includes(POLLER_ROLE),
      { what: `the poller binding in ${ns}` },
    );
    await deleteWatchedImage(ns, 'shop');
    await expectGone(c, ns, 'shop');
  });

  it('leaves the cache when the controller watches all namespaces', async () => {
    const { ns, c } = await setup('wi-all', { namespaces: [] });
    await createWatchedImage(clients, ns, 'shop', { image: IMAGE });
    await seenByController(c, ns, 'shop');
    await deleteWatchedImage(ns, 'shop');
    await expectGone(c, ns, 'shop');
  });

  it('leaves the cache when it was created and deleted at once', async () => {
    const { ns, c } = await setup('wi-blink');
    await createWatchedImage(clients, ns, 'blink', { image: IMAGE });
    await deleteWatchedImage(ns, 'blink');
    // A second one proves the watch delivered events past the first one's deletion.
    await createWatchedImage(clients, ns, 'after', { image: IMAGE });
    await seenByController(c, ns, 'after');
    expect(cached(c, ns, 'blink')).toBeUndefined();
    await deleteWatchedImage(ns, 'after');
    await expectGone(c, ns, 'after');
  });

  it('leaves the cache when it was deleted while the watch reconnected', async () => {
    // Every stream starts over (a fresh list, then a new watch) about every 300 ms: deletions land
    // before, during and after the reconnects.
    const { ns, c } = await setup('wi-reconnect', { relistIntervalMs: 300 });
    const restarts = () => c.metric('kubewatcher_informer_restarts_total', { informer: 'watchedimages' });
    const before = await restarts();
    for (let round = 0; round < 4; round++) {
      const name = `shop-${round}`;
      await createWatchedImage(clients, ns, name, { image: IMAGE });
      await seenByController(c, ns, name);
      await deleteWatchedImage(ns, name);
      await expectGone(c, ns, name);
    }
    expect(await restarts()).toBeGreaterThan(before);
  });

  it('leaves the cache after a foreground deletion held by a finalizer', async () => {
    const { ns, c } = await setup('wi-finalizer');
    await clients.custom.createNamespacedCustomObject({
      ...WI,
      namespace: ns,
      body: {
        apiVersion: 'kubewatcher.io/v1alpha1',
        kind: 'WatchedImage',
        metadata: { name: 'held', namespace: ns, finalizers: [FINALIZER] },
        spec: { image: IMAGE },
      },
    });
    await seenByController(c, ns, 'held');
    await deleteWatchedImage(ns, 'held', 'Foreground');
    // Held by the finalizers: still there, marked for deletion.
    await until(
      () => cached(c, ns, 'held'),
      (obj) => obj?.metadata?.deletionTimestamp !== undefined,
      { what: `the controller's cache to see ${ns}/held marked for deletion` },
    );
    await clients.custom.patchNamespacedCustomObject(
      { ...WI, namespace: ns, name: 'held', body: { metadata: { finalizers: null } } },
      mergePatch,
    );
    await expectGone(c, ns, 'held');
  });

  it('leaves the cache when deleted while the watch reopens after its inactivity timeout', async () => {
    // The controller's WatchedImage informer, but with a watch that times out after 1 s without data:
    // client-node's ListWatch then reopens it from its last resourceVersion by itself (no informer
    // restart, no list), the path a quiet watch takes every 90 s in production.
    const ns = await newNamespace('wi-reopen');
    const source = withoutManagedFields(kubeConfigSource(clients.kc, { watchTimeoutMs: 1000 }));
    let watchesOpened = 0;
    let restarts = 0;
    const informer = new Informer<WatchedImage>({
      source: {
        list: (path, query) => source.list(path, query),
        watch: (...args) => {
          watchesOpened++;
          return source.watch(...args);
        },
      },
      resource: { apiVersion: API_VERSION, kind: WATCHED_IMAGE.kind, plural: WATCHED_IMAGE.plural },
      namespaces: [ns],
      relistIntervalMs: 0,
      onRestart: () => restarts++,
      logger: testLogger,
    });
    try {
      informer.start();
      expect(await informer.waitForSync(AbortSignal.timeout(30_000))).toBe(true);
      for (let round = 0; round < 3; round++) {
        const name = `quiet-${round}`;
        await createWatchedImage(clients, ns, name, { image: IMAGE });
        await until(
          () => informer.get(`${ns}/${name}`),
          (wi) => wi !== undefined,
          { what: `${ns}/${name} in the cache` },
        );
        // Until the watch has timed out and been reopened; the deletion lands at varying points of
        // the next one (the rounds wait different fractions of the timeout).
        const opened = watchesOpened;
        await until(
          () => watchesOpened,
          (n) => n > opened,
          { what: 'the watch to be reopened' },
        );
        await new Promise((resolve) => setTimeout(resolve, round * 450));
        await deleteWatchedImage(ns, name);
        await until(
          () => informer.keys(),
          (keys) => keys.length === 0,
          { what: `${ns}/${name} to leave the cache` },
        );
      }
      // ListWatch reopened the watch itself each time: the informer never started over.
      expect(restarts).toBe(0);
    } finally {
      informer.stop();
    }
  });
});
