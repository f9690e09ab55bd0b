import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { ManualClock } from './clock.ts';
import { createControllerMetrics, reconcileMetricsRecorder, workQueueHooks } from './metrics.ts';
import { done, retry, runWorker } from './outcome.ts';
import {
  cachesSyncedOrStandby,
  type InformerHealth,
  informersNotStalled,
  type ProbeServer,
  parseAddress,
  startProbeServer,
} from './server.ts';
import { WorkQueue } from './workqueue.ts';

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('parseAddress', () => {
  it.each([
    [':8080', { host: undefined, port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    ['[::1]:9090', { host: '::1', port: 9090 }],
    ['0', { host: undefined, port: 0 }],
    ['localhost:443', { host: 'localhost', port: 443 }],
  ])('%s', (address, expected) => {
    expect(parseAddress(address)).toEqual(expected);
  });

  it.each(['', 'host', ':99999', 'a:b'])('rejects %j', (address) => {
    expect(() => parseAddress(address)).toThrow(/invalid listen address/);
  });
});

describe('probe server', () => {
  let server: ProbeServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('serves metrics, liveness and readiness', async () => {
    const registry = new Registry();
    const metrics = createControllerMetrics(registry);
    metrics.updatesApplied.inc({ kind: 'Deployment' });
    const informer: InformerHealth & { synced: boolean; stalled: boolean } = {
      name: 'watchedimages',
      synced: false,
      stalled: false,
      hasSynced() {
        return this.synced;
      },
      isStalled() {
        return this.stalled;
      },
    };
    let leader = true;
    server = await startProbeServer({
      address: '127.0.0.1:0',
      registry,
      liveness: [informersNotStalled([informer])],
      readiness: [cachesSyncedOrStandby([informer], { isLeader: () => leader })],
    });
    const get = async (path: string) => {
      const res = await fetch(`${server?.url}${path}`);
      return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
    };

    const scraped = await get('/metrics');
    expect(scraped.status).toBe(200);
    expect(scraped.type).toContain('text/plain');
    expect(scraped.body).toContain('kubewatcher_updates_applied_total{kind="Deployment"} 1');
    expect(scraped.body).toContain('kubewatcher_leader 0');

    expect(await get('/healthz')).toMatchObject({ status: 200, body: 'ok\n' });
    expect(await get('/readyz')).toMatchObject({
      status: 500,
      body: '[-]caches failed: not synced: watchedimages\ncheck failed\n',
    });
    leader = false;
    expect(await get('/readyz')).toMatchObject({ status: 200 });
    leader = true;
    informer.synced = true;
    expect(await get('/readyz?verbose')).toMatchObject({ status: 200, body: '[+]caches ok\nok\n' });
    informer.stalled = true;
    expect(await get('/healthz')).toMatchObject({
      status: 500,
      body: '[-]informers failed: stalled: watchedimages\ncheck failed\n',
    });
    expect((await get('/nope')).status).toBe(404);
    expect((await fetch(`${server.url}/healthz`, { method: 'POST' })).status).toBe(405);
  });

  it('reports a check that throws as failed', async () => {
    server = await startProbeServer({
      address: '127.0.0.1:0',
      registry: new Registry(),
      liveness: [
        {
          name: 'broken',
          check: () => {
            throw new Error('oops');
          },
        },
      ],
    });
    const res = await fetch(`${server.url}/healthz`);
    expect(res.status).toBe(500);
    expect(await res.text()).toContain('[-]broken failed: check threw: oops');
  });

  it('fails to start on an address in use', async () => {
    server = await startProbeServer({ address: '127.0.0.1:0', registry: new Registry() });
    await expect(
      startProbeServer({ address: `127.0.0.1:${server.port}`, registry: new Registry() }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('metrics wiring', () => {
  it('feeds queue and reconcile metrics, one registry per test', async () => {
    const registry = new Registry();
    const metrics = createControllerMetrics(registry);
    const clock = new ManualClock();
    const queue = new WorkQueue({ clock, hooks: workQueueHooks(metrics, 'watchedimage') });
    let calls = 0;
    const worker = runWorker(queue, () => (++calls === 1 ? retry(new Error('x')) : done()), {
      clock,
      onOutcome: reconcileMetricsRecorder(metrics, 'watchedimage'),
    });
    queue.add('ns/a');
    await flush();
    clock.advance(5);
    await flush();
    queue.shutDown();
    await worker;
    const text = await registry.metrics();
    expect(text).toContain('kubewatcher_reconcile_total{controller="watchedimage",result="error"} 1');
    expect(text).toContain('kubewatcher_reconcile_total{controller="watchedimage",result="success"} 1');
    expect(text).toContain('kubewatcher_reconcile_errors_total{controller="watchedimage"} 1');
    expect(text).toContain('kubewatcher_workqueue_adds_total{name="watchedimage"} 2');
    expect(text).toContain('kubewatcher_workqueue_retries_total{name="watchedimage"} 1');
    expect(text).toContain('kubewatcher_workqueue_depth{name="watchedimage"} 0');
    expect(text).toContain('kubewatcher_reconcile_duration_seconds_count{controller="watchedimage"} 2');
    // A second registry gets its own metrics without "already registered" errors.
    expect(() => createControllerMetrics(new Registry())).not.toThrow();
  });
});
