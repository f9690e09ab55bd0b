/**
 * Automatic rollback on the real node: a Deployment runs an image from the local registry; the tag is
 * re-pushed with an image whose command exits 1, so the new pods crash-loop for real (containerd, runc)
 * and the Deployment exceeds its progress deadline; the controller (rollback: OnFailure) puts the
 * exact previous image back and the old pods serve again.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startController } from '../packages/controller/test/controller-harness.ts';
import { pushBusyboxImage } from '../scripts/lib/images.ts';
import { type LocalCluster, startLocalCluster } from '../scripts/lib/local-cluster.ts';
import {
  clientsFor,
  createImageUpdate,
  createNamespace,
  createWatchedImage,
  deployment,
  deploymentRolledOut,
  imagesOf,
  installCrds,
  until,
  waitForPhase,
} from './support/controller-fixtures.ts';

const { binDir } = inject('localCluster');

describe('rollback on the real node', { timeout: 300_000 }, () => {
  let dir: string;
  let cluster: LocalCluster;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubewatcher-rollback-node-'));
    cluster = await startLocalCluster({ dir, binDir, realNode: true });
    await installCrds(cluster.info);
  }, 300_000);
  afterAll(async () => {
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a new image whose command exits 1 crash-loops, the update fails and is RolledBack, the old pods serve', async () => {
    const clients = clientsFor(cluster.info);
    const registry = cluster.info.realNode?.registries.open ?? '';
    const repository = 'test/rollback';
    const good = await pushBusyboxImage({ info: cluster.info, repository, tag: 'v1', content: 'good\n' });
    const ns = await createNamespace(clients, 'rollback-node');
    const watchedTag = `${registry}/${repository}:v1`;
    await clients.apps.createNamespacedDeployment({
      namespace: ns,
      body: deployment('web', {
        containers: { app: `${watchedTag}@${good.digest}` },
        replicas: 1,
        // Without a readiness probe a container is ready the moment it starts: a pod that crashes a
        // second later would already count as available (the rollout "done") unless it must stay
        // ready this long first. Measured: with 0 the broken image's rollout ended Succeeded.
        minReadySeconds: 10,
        progressDeadlineSeconds: 30,
      }),
    });
    await deploymentRolledOut(clients, ns, 'web');

    // The tag moves to an image that starts and exits 1 at once.
    const bad = await pushBusyboxImage({
      info: cluster.info,
      repository,
      tag: 'v1',
      entrypoint: ['/bin/busybox', 'sh', '-c', 'echo broken; exit 1'],
    });
    expect(bad.digest).not.toBe(good.digest);
    const wi = await createWatchedImage(clients, ns, 'web', { image: watchedTag, rollback: 'OnFailure' });
    const controller = await startController(clients.kc, { namespaces: [ns] });
    try {
      const iu = await createImageUpdate(clients, wi, bad.digest, { fromDigest: good.digest });
      // The new pod really runs and really fails: its container restarts.
      await until(
        () => clients.core.listNamespacedPod({ namespace: ns }),
        (pods) =>
          pods.items.some((p) =>
            p.status?.containerStatuses?.some(
              (c) => c.imageID?.endsWith(bad.digest) && (c.restartCount ?? 0) > 0,
            ),
          ),
        { what: 'a pod of the new image to crash and restart', timeoutMs: 120_000 },
      );
      const done = await waitForPhase(
        clients,
        ns,
        iu.metadata.name,
        ['RolledBack', 'Failed', 'Succeeded'],
        150_000,
      );
      expect(done.status?.phase).toBe('RolledBack');
      expect(done.status?.failureMessage).toContain('ProgressDeadlineExceeded');
      expect(done.status?.workloads?.map((r) => [r.name, r.state, r.previousImage])).toEqual([
        ['web', 'RolledBack', `${watchedTag}@${good.digest}`],
      ]);

      const web = await deploymentRolledOut(clients, ns, 'web');
      expect(imagesOf(web).app).toBe(`${watchedTag}@${good.digest}`);
      // The pods that serve are the old image's, ready, and none of the broken image is left.
      const pods = await until(
        () => clients.core.listNamespacedPod({ namespace: ns }),
        (list) =>
          list.items.length === 1 &&
          list.items[0]!.status?.containerStatuses?.[0]?.ready === true &&
          list.items[0]!.metadata?.deletionTimestamp === undefined,
        { what: 'only the old pod, ready', timeoutMs: 90_000 },
      );
      expect(pods.items[0]!.status?.containerStatuses?.[0]?.imageID).toBe(
        `${registry}/${repository}@${good.digest}`,
      );
    } finally {
      await controller.stop();
    }
  });
});
