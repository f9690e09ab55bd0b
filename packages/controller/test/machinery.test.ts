/**
 * The machinery against the real local kube-apiserver (started by the integration global setup):
 * informers over ConfigMaps, recovery from a broken watch, and Lease-based leader election.
 */
import { randomBytes } from 'node:crypto';
import { CoreV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { createLogger, loadKubeConfig } from '@kubewatcher/shared';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  coordinationLeaseClient,
  type EventHandler,
  Informer,
  kubeConfigSource,
  type LeaderElectionEnd,
  LeaderElector,
  type LeaseClient,
  type ListWatchSource,
  type RestartReason,
} from '../src/machinery/index.ts';

const cluster = inject('localCluster');
const kc = loadKubeConfig(cluster.kubeconfig);
const core = kc.makeApiClient(CoreV1Api);
const logger = createLogger({
  component: 'machinery-test',
  level: process.env.KUBEWATCHER_TEST_VERBOSE === '1' ? 'debug' : 'warn',
});
const namespace = `machinery-${randomBytes(3).toString('hex')}`;
const CONFIGMAPS = { apiVersion: 'v1', kind: 'ConfigMap', plural: 'configmaps' };

/** Retries `check` until it stops throwing, or fails with its last error after `timeoutMs`. */
async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 20_000, intervalMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, intervalMs));
    }
  }
}

const stops: Array<() => unknown> = [];

beforeAll(async () => {
  await core.createNamespace({ body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  for (const stop of stops.reverse()) await stop();
  await core.deleteNamespace({ name: namespace }).catch(() => undefined);
});

function configMap(name: string, labels: Record<string, string>, data: Record<string, string>): V1ConfigMap {
  return { metadata: { name, namespace, labels }, data };
}

/** What the API server holds for a label selector: name → data.v. */
async function serverState(selector: string): Promise<Record<string, string | undefined>> {
  const list = await core.listNamespacedConfigMap({ namespace, labelSelector: selector });
  return Object.fromEntries(list.items.map((cm) => [cm.metadata?.name ?? '', cm.data?.v]));
}

function cacheState(informer: Informer<V1ConfigMap>): Record<string, string | undefined> {
  return Object.fromEntries(informer.list().map((cm) => [cm.metadata?.name ?? '', cm.data?.v]));
}

/** A source that can be broken: open watches are destroyed and every list and watch fails until healed. */
function breakable(inner: ListWatchSource) {
  let broken = false;
  let failedCalls = 0;
  const open = new Set<AbortController>();
  const source: ListWatchSource = {
    async list(path, query) {
      if (broken) {
        failedCalls++;
        throw Object.assign(new Error('injected: API server unreachable'), { statusCode: 503 });
      }
      return inner.list(path, query);
    },
    async watch(path, params, callback, done) {
      if (broken) {
        failedCalls++;
        const dead = new AbortController();
        queueMicrotask(() => done(new Error('injected: watch refused')));
        return dead;
      }
      const controller = await inner.watch(path, params, callback, done);
      open.add(controller);
      controller.signal.addEventListener('abort', () => open.delete(controller));
      return controller;
    },
  };
  return {
    source,
    failedCalls: () => failedCalls,
    breakNow() {
      broken = true;
      for (const controller of [...open]) controller.abort();
    },
    heal() {
      broken = false;
    },
  };
}

describe('Informer against the API server', () => {
  it('sees ConfigMaps created, updated and deleted', async () => {
    const selector = 'test=informer-basic';
    const events: string[] = [];
    const informer = new Informer<V1ConfigMap>({
      kubeConfig: kc,
      resource: CONFIGMAPS,
      namespaces: [namespace],
      labelSelector: selector,
      logger,
    });
    stops.push(() => informer.stop());
    const handler: EventHandler<V1ConfigMap> = {
      add: (cm) => events.push(`add ${cm.metadata?.name} ${cm.data?.v}`),
      update: (old, cm) => events.push(`update ${cm.metadata?.name} ${old.data?.v}->${cm.data?.v}`),
      delete: (cm) => events.push(`delete ${cm.metadata?.name}`),
    };
    informer.addEventHandler(handler);
    await core.createNamespacedConfigMap({
      namespace,
      body: configMap('before', { test: 'informer-basic' }, { v: '0' }),
    });
    informer.start();
    expect(await informer.waitForSync(AbortSignal.timeout(30_000))).toBe(true);
    expect(informer.get(`${namespace}/before`)).toMatchObject({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      data: { v: '0' },
    });

    await core.createNamespacedConfigMap({
      namespace,
      body: configMap('cm', { test: 'informer-basic' }, { v: '1' }),
    });
    await core.createNamespacedConfigMap({
      namespace,
      body: configMap('other', { test: 'not-selected' }, { v: '1' }),
    });
    await eventually(() => expect(informer.get(`${namespace}/cm`)?.data?.v).toBe('1'));

    await core.patchNamespacedConfigMap({
      name: 'cm',
      namespace,
      body: [{ op: 'replace', path: '/data/v', value: '2' }],
    });
    await eventually(() => expect(informer.get(`${namespace}/cm`)?.data?.v).toBe('2'));
    const cached = informer.get(`${namespace}/cm`)!;
    expect(Object.isFrozen(cached) && Object.isFrozen(cached.data)).toBe(true);
    expect(cached.kind).toBe('ConfigMap');

    await core.deleteNamespacedConfigMap({ name: 'cm', namespace });
    await eventually(() => expect(informer.get(`${namespace}/cm`)).toBeUndefined());
    expect(informer.get(`${namespace}/other`)).toBeUndefined();
    expect(events).toEqual(['add before 0', 'add cm 1', 'update cm 1->2', 'delete cm']);
    expect(informer.status()).toMatchObject({ synced: true, stalled: false, objects: 1 });
    informer.stop();
  });

  it('recovers from a destroyed watch and converges on changes made while it was down', async () => {
    const selector = 'test=informer-restart';
    const labels = { test: 'informer-restart' };
    // Small pages, so listing follows continue tokens too.
    const link = breakable(kubeConfigSource(kc, { pageSize: 2 }));
    const restarts: RestartReason[] = [];
    const informer = new Informer<V1ConfigMap>({
      source: link.source,
      resource: CONFIGMAPS,
      namespaces: [namespace],
      labelSelector: selector,
      restartBackoff: { initialMs: 100, maxMs: 500 },
      onRestart: (reason) => restarts.push(reason),
      logger,
    });
    stops.push(() => informer.stop());
    for (const name of ['keep', 'change', 'remove', 'extra-1', 'extra-2']) {
      await core.createNamespacedConfigMap({ namespace, body: configMap(name, labels, { v: '1' }) });
    }
    informer.start();
    expect(await informer.waitForSync(AbortSignal.timeout(30_000))).toBe(true);
    expect(cacheState(informer)).toEqual(await serverState(selector));

    link.breakNow();
    await eventually(() => expect(restarts).toContain('error'));
    await core.patchNamespacedConfigMap({
      name: 'change',
      namespace,
      body: [{ op: 'replace', path: '/data/v', value: '2' }],
    });
    await core.deleteNamespacedConfigMap({ name: 'remove', namespace });
    await core.createNamespacedConfigMap({ namespace, body: configMap('added', labels, { v: '1' }) });
    // It keeps trying (and failing) while down, and has seen none of the changes.
    await eventually(() => expect(link.failedCalls()).toBeGreaterThanOrEqual(2));
    expect(informer.get(`${namespace}/added`)).toBeUndefined();
    expect(informer.get(`${namespace}/change`)?.data?.v).toBe('1');
    expect(informer.get(`${namespace}/remove`)).toBeDefined();

    link.heal();
    const expected = await serverState(selector);
    expect(expected).toMatchObject({ change: '2', added: '1' });
    await eventually(() => expect(cacheState(informer)).toEqual(expected));

    // And it watches again: a change after recovery arrives by the watch.
    await core.patchNamespacedConfigMap({
      name: 'keep',
      namespace,
      body: [{ op: 'replace', path: '/data/v', value: '3' }],
    });
    await eventually(() => expect(informer.get(`${namespace}/keep`)?.data?.v).toBe('3'));
    expect(informer.isStalled()).toBe(false);
    informer.stop();
  });
});

describe('LeaderElector against the API server', () => {
  const timing = { leaseDurationSeconds: 4, renewDeadlineMs: 2500, retryPeriodMs: 500 };

  function candidate(lease: string, identity: string, journal: string[], client?: LeaseClient) {
    const elector = new LeaderElector({
      kubeConfig: kc,
      client,
      namespace,
      name: lease,
      identity,
      ...timing,
      logger,
      onStartedLeading: (signal) => {
        journal.push(`${identity} started`);
        signal.addEventListener('abort', () => journal.push(`${identity} signal aborted`));
      },
      onStoppedLeading: () => {
        journal.push(`${identity} stopped`);
      },
    });
    let end: LeaderElectionEnd | undefined;
    const running = elector.run().then((e) => {
      end = e;
    });
    stops.push(() => elector.stop());
    return { elector, running, end: () => end };
  }

  async function holder(lease: string): Promise<string | undefined> {
    return (await coordinationLeaseClient(kc).read(namespace, lease))?.spec?.holderIdentity;
  }

  it('lets exactly one of two candidates lead; on release the other takes over within the lease duration', async () => {
    const journal: string[] = [];
    const a = candidate('handover', 'candidate-a', journal);
    const b = candidate('handover', 'candidate-b', journal);
    const first = await eventually(() => {
      const leaders = [a, b].filter((c) => c.elector.isLeader());
      expect(leaders).toHaveLength(1);
      return leaders[0]!;
    });
    const second = first === a ? b : a;
    // Several renewals later, still exactly one.
    await new Promise((resolve) => setTimeout(resolve, 2 * timing.retryPeriodMs));
    expect(first.elector.isLeader()).toBe(true);
    expect(second.elector.isLeader()).toBe(false);
    expect(await holder('handover')).toBe(first.elector.identity);

    const stoppedAt = Date.now();
    await first.elector.stop();
    expect(first.end()).toBe('stopped');
    expect(first.elector.isLeader()).toBe(false);
    await eventually(() => expect(second.elector.isLeader()).toBe(true), timing.leaseDurationSeconds * 1000);
    // Released, so no need to wait out the lease: well within one lease duration.
    expect(Date.now() - stoppedAt).toBeLessThan(timing.leaseDurationSeconds * 1000);
    expect(await holder('handover')).toBe(second.elector.identity);
    const id = (c: typeof a) => c.elector.identity;
    expect(journal).toEqual([
      `${id(first)} started`,
      `${id(first)} signal aborted`,
      `${id(first)} stopped`,
      `${id(second)} started`,
    ]);
    await second.elector.stop();
  });

  it('takes over from a holder that stops renewing once its lease expires', async () => {
    const journal: string[] = [];
    let cut = false;
    const real = coordinationLeaseClient(kc);
    const guard = <T>(call: () => Promise<T>) =>
      cut
        ? Promise.reject(Object.assign(new Error('injected: network partition'), { code: 'ECONNRESET' }))
        : call();
    const partitioned: LeaseClient = {
      read: (ns, name) => guard(() => real.read(ns, name)),
      create: (ns, lease) => guard(() => real.create(ns, lease)),
      replace: (ns, name, lease) => guard(() => real.replace(ns, name, lease)),
    };
    const a = candidate('expiry', 'holder-a', journal, partitioned);
    await eventually(() => expect(a.elector.isLeader()).toBe(true));
    const b = candidate('expiry', 'standby-b', journal);
    await new Promise((resolve) => setTimeout(resolve, 2 * timing.retryPeriodMs));
    expect(b.elector.isLeader()).toBe(false);

    cut = true;
    await eventually(() => expect(a.end()).toBe('lost'), 10_000);
    await eventually(() => expect(b.elector.isLeader()).toBe(true), 10_000);
    expect(await holder('expiry')).toBe('standby-b');
    // a stopped leading (on its own clock, at the renew deadline) before b started.
    expect(journal).toEqual([
      'holder-a started',
      'holder-a signal aborted',
      'holder-a stopped',
      'standby-b started',
    ]);
    const lease = await real.read(namespace, 'expiry');
    expect(lease?.spec?.leaseTransitions).toBe(1);
    await b.elector.stop();
    expect(await holder('expiry')).toBe('');
  });
});
