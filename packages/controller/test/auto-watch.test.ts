/**
 * Zero-configuration watching against the real local control plane: the controller runs cluster-wide
 * (Namespaces are cluster-scoped, so namespace labels are read only then) with the default
 * `--auto-watch=opted-in`, so it only ever acts on the namespaces and workloads these tests label.
 * Nothing here writes a WatchedImage for a workload by hand, except to show that a person's wins.
 */
import type { V1Deployment } from '@kubernetes/client-node';
import {
  apiStatusCode,
  generatedWatchedImageName,
  normalizeReference,
  phaseOf,
  referenceString,
  TERMINAL_PHASES,
  type WatchedImage,
} from '@kubewatcher/shared';
import { describe, expect, inject, it } from 'vitest';
import {
  approve,
  createImageUpdate,
  createWatchedImage,
  deployment,
  eventsIn,
  getImageUpdate,
  getWatchedImage,
  mergePatch,
  statefulSet,
  testDigest,
  until,
  WI,
  waitForPhase,
} from '../../../test/support/controller-fixtures.ts';
import type { RunningController } from './controller-harness.ts';
import { useControllerTestBed } from './controller-test-bed.ts';

const { clients, newNamespace, startController } = useControllerTestBed(inject('localCluster'));
const WEB = 'ghcr.io/acme/web:1.0';
const MIGRATE = 'ghcr.io/acme/migrate:3';
const CACHE = 'ghcr.io/acme/cache:7';
const DIGEST = `sha256:${'d'.repeat(64)}`;
/** The generated WatchedImage's name for the tag `image` runs. */
function nameOf(image: string): string {
  const { domain, path, tag } = normalizeReference(image);
  return generatedWatchedImageName(referenceString({ domain, path, ...(tag ? { tag } : {}) }));
}

async function start(opts: Parameters<typeof startController>[0] = {}) {
  return startController({ ownNamespace: 'kubewatcher-system', ...opts });
}

const writes = (c: RunningController) => c.metric('kubewatcher_generated_watchedimage_writes_total');

/** The generated WatchedImages of a namespace, by name. */
async function generatedIn(ns: string): Promise<Map<string, WatchedImage>> {
  const list = (await clients.custom.listNamespacedCustomObject({
    ...WI,
    namespace: ns,
    labelSelector: 'app.kubernetes.io/managed-by=kubewatcher',
  })) as { items: WatchedImage[] };
  return new Map(list.items.map((wi) => [wi.metadata.name, wi]));
}

/** Waits until the namespace's generated WatchedImages are those of exactly `images`. */
function generatedFor(ns: string, images: string[], what: string) {
  const want = images.map(nameOf).sort();
  return until(
    () => generatedIn(ns),
    (m) => JSON.stringify([...m.keys()].sort()) === JSON.stringify(want),
    { what: `${what}: generated WatchedImages for ${images.join(', ') || 'nothing'}` },
  );
}

const labelNamespace = (ns: string, value: string | null) =>
  clients.core.patchNamespace(
    { name: ns, body: { metadata: { labels: { 'kubewatcher.io/watch': value } } } },
    mergePatch,
  );

const optedIn = (d: V1Deployment): V1Deployment => ({
  ...d,
  metadata: { ...d.metadata, labels: { ...d.metadata?.labels, 'kubewatcher.io/watch': 'true' } },
});

describe('auto-watch', () => {
  it('follows workload and namespace labels: one WatchedImage per tag (init containers too), updating only watched workloads', async () => {
    const ns = await newNamespace('aw-scopes');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: optedIn(
        deployment('web', { containers: { app: `${WEB}@${DIGEST}` }, initContainers: { migrate: MIGRATE } }),
      ),
    });
    // Runs the same tag but is not opted in: no WatchedImage stands for it, and none updates it.
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('plain', { containers: { app: WEB, cache: CACHE } }),
    });
    await start();

    const first = await generatedFor(ns, [WEB, MIGRATE], 'workload label');
    const web = first.get(nameOf(WEB))!;
    expect(web.spec).toEqual({
      image: WEB,
      kinds: ['Deployment', 'StatefulSet', 'DaemonSet', 'CronJob'],
      updatePolicy: 'Auto',
      interval: '5m',
      suspend: false,
      historyLimit: 10,
      rollback: 'Never',
    });
    const status = await until(
      () => getWatchedImage(clients, ns, web.metadata.name),
      (w) => w.status?.workloadCount !== undefined,
      { what: 'the generated WatchedImage status' },
    );
    expect(status.status?.workloads).toEqual([{ kind: 'Deployment', name: 'web', containers: ['app'] }]);

    // The namespace opts in: `plain` and its cache image join; a StatefulSet counts too.
    await clients.apps.createNamespacedStatefulSet({
      namespace: ns,
      body: statefulSet('db', { containers: { db: 'ghcr.io/acme/db:15' }, replicas: 0 }),
    });
    await labelNamespace(ns, 'true');
    await generatedFor(ns, [WEB, MIGRATE, CACHE, 'ghcr.io/acme/db:15'], 'namespace label');
    await until(
      () => getWatchedImage(clients, ns, nameOf(WEB)),
      (w) => w.status?.workloadCount === 2,
      { what: 'plain to join the WatchedImage of web:1.0' },
    );

    // An annotation on one workload: the most cautious policy among those running the tag.
    await clients.apps.patchNamespacedDeployment(
      {
        namespace: ns,
        name: 'plain',
        body: { metadata: { annotations: { 'kubewatcher.io/update-policy': 'Manual' } } },
      },
      mergePatch,
    );
    await until(
      () => getWatchedImage(clients, ns, nameOf(WEB)),
      (w) => w.spec.updatePolicy === 'Manual',
      { what: 'the generated WatchedImage to turn Manual' },
    );

    // `plain` opts out; its cache image is no longer run by a watched workload.
    await clients.apps.patchNamespacedDeployment(
      { namespace: ns, name: 'plain', body: { metadata: { labels: { 'kubewatcher.io/watch': 'false' } } } },
      mergePatch,
    );
    await generatedFor(ns, [WEB, MIGRATE, 'ghcr.io/acme/db:15'], 'opt-out');
    expect((await getWatchedImage(clients, ns, nameOf(WEB))).spec.updatePolicy).toBe('Auto');

    // The namespace label goes: only the workload labelled itself stays watched.
    await labelNamespace(ns, null);
    await generatedFor(ns, [WEB, MIGRATE], 'namespace label removed');

    // Its workload goes: so do its WatchedImages.
    await clients.apps.deleteNamespacedDeployment({ namespace: ns, name: 'web' });
    await generatedFor(ns, [], 'workload deleted');
  });

  it("a person's WatchedImage wins: the generated one goes, and comes back when the person's goes", async () => {
    const ns = await newNamespace('aw-person');
    await labelNamespace(ns, 'true');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    await start();
    await generatedFor(ns, [WEB], 'first');

    await createWatchedImage(clients, ns, 'mine', { image: 'ghcr.io/acme/web:1.0', updatePolicy: 'Observe' });
    await generatedFor(ns, [], "a person's WatchedImage appears");
    const mine = await until(
      () => getWatchedImage(clients, ns, 'mine'),
      (w) => w.status?.workloadCount === 1,
      { what: "the person's WatchedImage to find the workload" },
    );
    expect(mine.metadata.labels?.['app.kubernetes.io/managed-by']).toBeUndefined();

    await clients.custom.deleteNamespacedCustomObject({ ...WI, namespace: ns, name: 'mine' });
    await generatedFor(ns, [WEB], "the person's WatchedImage deleted");
  });

  it('a generated WatchedImage a person edits is kept as theirs, with an Event, and no longer deleted', async () => {
    const ns = await newNamespace('aw-edit');
    await labelNamespace(ns, 'true');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    const c = await start();
    const name = nameOf(WEB);
    await generatedFor(ns, [WEB], 'first');

    await clients.custom.patchNamespacedCustomObject(
      { ...WI, namespace: ns, name, body: { spec: { interval: '1h' } } },
      mergePatch,
    );
    const kept = await until(
      () => getWatchedImage(clients, ns, name),
      (w) => w.metadata.labels?.['app.kubernetes.io/managed-by'] === undefined,
      { what: 'the edited WatchedImage to be handed over' },
    );
    expect(kept.spec.interval).toBe('1h');
    expect(kept.metadata.annotations?.['kubewatcher.io/generated-spec']).toBeUndefined();
    const events = await until(
      () => eventsIn(clients, ns, { kind: 'WatchedImage', name }),
      (e) => e.some((x) => x.reason === 'NoLongerGenerated'),
      { what: 'the NoLongerGenerated Event' },
    );
    expect(events.find((x) => x.reason === 'NoLongerGenerated')?.message).toMatch(/edited/);

    // Unused now, yet it stays: it is the person's. (The cache workload's WatchedImage appearing shows
    // the namespace was planned after the deletion: one informer delivers both, in order.)
    await clients.apps.deleteNamespacedDeployment({ namespace: ns, name: 'web' });
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('cache', { containers: { app: CACHE } }),
    });
    await generatedFor(ns, [CACHE], 'after the deletion');
    expect((await getWatchedImage(clients, ns, name)).spec.interval).toBe('1h');
    expect(await c.metric('kubewatcher_generated_watchedimage_writes_total', { action: 'release' })).toBe(1);
  });

  it('an unused generated WatchedImage waits for its last ImageUpdate to finish; a digest-only image is reported', async () => {
    const ns = await newNamespace('aw-wait');
    await labelNamespace(ns, 'true');
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', { containers: { app: WEB } }),
    });
    await clients.core.patchNamespace(
      { name: ns, body: { metadata: { annotations: { 'kubewatcher.io/update-policy': 'Manual' } } } },
      mergePatch,
    );
    await start();
    const name = nameOf(WEB);
    const wi = await until(
      () => generatedIn(ns).then((m) => m.get(name)),
      (w) => w?.spec.updatePolicy === 'Manual',
      { what: 'a Manual generated WatchedImage' },
    );
    const update = await createImageUpdate(clients, wi!, testDigest(1), { fromDigest: testDigest(0) });
    await waitForPhase(clients, ns, update.metadata.name, 'AwaitingApproval');

    await clients.apps.deleteNamespacedDeployment({ namespace: ns, name: 'web' });
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('pinned', { containers: { app: `ghcr.io/acme/pinned@${DIGEST}` } }),
    });
    const reported = await until(
      () => eventsIn(clients, ns, { kind: 'Deployment', name: 'pinned' }),
      (e) => e.some((x) => x.reason === 'DigestOnlyImage'),
      { what: 'the DigestOnlyImage Event' },
    );
    expect(reported.find((x) => x.reason === 'DigestOnlyImage')?.message).toContain('no tag');
    // Planned after the deletion (the Event came from that plan), and still there: it waits.
    expect((await generatedIn(ns)).has(name)).toBe(true);

    await approve(clients, ns, update.metadata.name);
    // Once it finishes, the generated WatchedImage goes and its ImageUpdates with it (owner
    // references), so the update is seen either finished or already collected.
    await until(
      () =>
        getImageUpdate(clients, ns, update.metadata.name).catch((err: unknown) =>
          apiStatusCode(err) === 404 ? undefined : Promise.reject(err),
        ),
      (u) => u === undefined || TERMINAL_PHASES.includes(phaseOf(u)),
      { what: 'the update finished (or collected with its WatchedImage)' },
    );
    await generatedFor(ns, [], 'the update finished');
  });

  it('a restart and relists write nothing', async () => {
    const ns = await newNamespace('aw-restart');
    await labelNamespace(ns, 'true');
    const images = ['ghcr.io/acme/a:1', 'ghcr.io/acme/b:1', 'ghcr.io/acme/c:1'];
    for (const [i, image] of images.entries()) {
      await clients.apps.createNamespacedDeployment({
        namespace: ns,
        body: deployment(`w${i}`, { containers: { app: image }, replicas: 0 }),
      });
    }
    const first = await start();
    const before = await generatedFor(ns, images, 'first');
    await first.stop();

    const second = await start({ relistIntervalMs: 1000 });
    await until(
      () =>
        second.metric('kubewatcher_informer_restarts_total', { informer: 'namespaces', reason: 'relist' }),
      (n) => n >= 3,
      { what: 'three relists', timeoutMs: 30_000 },
    );
    // One change after the restart and the relists: its WatchedImage is the only write.
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('late', { containers: { app: 'ghcr.io/acme/late:1' }, replicas: 0 }),
    });
    const after = await generatedFor(ns, [...images, 'ghcr.io/acme/late:1'], 'after the restart');
    expect(await writes(second)).toBe(1);
    for (const [name, wi] of before)
      expect(after.get(name)?.metadata.generation).toBe(wi.metadata.generation);
  });
});
