/**
 * The controller as the process it ships as (`main.ts`), against the real local control plane: killed
 * with SIGKILL in the middle of applying an update and started again, and two replicas with leader
 * election sharing one Lease.
 */
import { AdmissionregistrationV1Api, Watch } from '@kubernetes/client-node';
import { ANNOTATION, type ImageUpdate } from '@kubewatcher/shared';
import { afterEach, describe, expect, inject, it } from 'vitest';
import {
  ControllerProcess,
  createImageUpdate,
  createWatchedImage,
  deployment,
  eventsIn,
  getImageUpdate,
  getWatchedImage,
  imagesOf,
  metricValue,
  type Sample,
  scrape,
  testDigest,
  until,
  waitForPhase,
} from '../../../test/support/controller-fixtures.ts';
import { useControllerTestBed } from './controller-test-bed.ts';

const info = inject('localCluster');
const { clients, newNamespace } = useControllerTestBed(info);
const WEB = 'ghcr.io/acme/web:1.0';

const processes: ControllerProcess[] = [];

afterEach(async () => {
  // Only the processes this file started, each by its own pid.
  for (const p of processes.splice(0)) await p.kill('SIGKILL');
});

function startProcess(args: string[]): ControllerProcess {
  // Echoed to the console: vitest shows the lines only with a failing test (vitest.config.ts).
  const p = new ControllerProcess(info.kubeconfig, args, { echo: true });
  processes.push(p);
  return p;
}

/** A replica watching `ns` that elects its leader with a Lease there, of 8 s. */
const leaderElectedIn = (ns: string) => [
  '--namespace',
  ns,
  '--leader-elect',
  '--leader-election-namespace',
  ns,
  '--lease-duration',
  '8s',
];

async function listDeployments(ns: string) {
  return (await clients.apps.listNamespacedDeployment({ namespace: ns })).items;
}

describe('a controller killed in the middle of applying', () => {
  it('finishes the update after a restart without patching any workload twice', async () => {
    const ns = await newNamespace('killed');
    const count = 40;
    for (let i = 0; i < count; i++) {
      await clients.apps.createNamespacedDeployment({
        namespace: ns,
        body: deployment(`web-${String(i).padStart(2, '0')}`, { containers: { app: WEB } }),
      });
    }
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    const first = startProcess(['--namespace', ns]);
    await first.ready;
    // The controller has synced and reconciles once its WatchedImage status lists every Deployment.
    await until(
      () => getWatchedImage(clients, ns, 'web'),
      (w) => w.status?.workloadCount === count,
      { what: `the WatchedImage to list ${count} workloads`, timeoutMs: 60_000 },
    );

    // SIGKILL the moment the first patched Deployment shows up in a watch.
    const watching = new AbortController();
    let killedAt: string | undefined;
    const controller = await new Watch(clients.kc).watch(
      `/apis/apps/v1/namespaces/${ns}/deployments`,
      {},
      (phase, obj: { metadata?: { name?: string; annotations?: Record<string, string> } }) => {
        if (killedAt || phase !== 'MODIFIED' || !obj.metadata?.annotations?.[ANNOTATION.imageUpdate]) return;
        killedAt = obj.metadata.name;
        first.child.kill('SIGKILL');
      },
      () => undefined,
    );
    watching.signal.addEventListener('abort', () => controller.abort());

    const toDigest = testDigest(1);
    const pinned = `${WEB}@${toDigest}`;
    const iu = await createImageUpdate(clients, wi, toDigest);
    const exit = await first.exited;
    watching.abort();
    expect(exit.signal).toBe('SIGKILL');
    expect(killedAt).toBeDefined();

    // Requests the dead process had in flight may still land: let the API server settle first.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const atKill = await listDeployments(ns);
    const patchedAtKill = atKill.filter((d) => imagesOf(d).app === pinned).length;
    const stranded = await getImageUpdate(clients, ns, iu.metadata.name);
    // Killed mid-apply: some workloads patched, not all, and the status still says Applying with
    // every planned result recorded before the first patch.
    expect(patchedAtKill).toBeGreaterThan(0);
    expect(patchedAtKill).toBeLessThan(count);
    expect(stranded.status?.phase).toBe('Applying');
    expect(stranded.status?.workloads).toHaveLength(count);

    const second = startProcess(['--namespace', ns]);
    await second.ready;
    const done = await waitForPhase(clients, ns, iu.metadata.name, ['Succeeded', 'Failed'], 120_000);
    expect(done.status?.phase).toBe('Succeeded');
    expect(done.status?.workloads).toHaveLength(count);
    expect(done.status?.workloads?.every((r) => r.state === 'RolledOut')).toBe(true);
    expect(done.status?.progress).toBe(`${count}/${count}`);

    for (const d of await listDeployments(ns)) {
      expect({ name: d.metadata?.name, generation: d.metadata?.generation, image: imagesOf(d).app }).toEqual({
        name: d.metadata?.name,
        generation: 2,
        image: pinned,
      });
      expect(d.metadata?.annotations?.[ANNOTATION.imageUpdate]).toBe(iu.metadata.name);
    }
    // The second process patched exactly the ones the first did not reach.
    const patchedBySecond = second.logs.filter((l) => l.message === 'workload patched').length;
    expect(patchedBySecond).toBe(count - patchedAtKill);
  });
});

describe('two replicas with leader election', () => {
  it('only the Lease holder acts, and the standby takes over pending work when the leader dies', async () => {
    const ns = await newNamespace('replicas');
    const args = leaderElectedIn(ns);
    const replicas = [startProcess(args), startProcess(args)];
    const started = await Promise.all(replicas.map((r) => r.ready));
    const identities = started.map((s) => s.identity);
    expect(new Set(identities).size).toBe(2);

    const leaderGauges = async () =>
      Promise.all(started.map(async (s) => metricValue(await scrape(s.url), 'kubewatcher_leader')));
    const lease = () =>
      clients.coordination.readNamespacedLease({ namespace: ns, name: 'kubewatcher-controller' });

    const held = await until(lease, (l) => identities.includes(l.spec?.holderIdentity ?? ''), {
      what: 'one replica to hold the Lease',
      ignoreErrors: true,
    });
    const leaderIndex = identities.indexOf(held.spec!.holderIdentity!);
    const follower = 1 - leaderIndex;
    await until(leaderGauges, (g) => g[leaderIndex] === 1, {
      what: 'the leader to report kubewatcher_leader 1',
    });

    // Sample both replicas' kubewatcher_leader while they work: never 1 on both.
    let sampling = true;
    const overlaps: number[][] = [];
    const sampler = (async () => {
      while (sampling) {
        const alive = replicas.map((r) => r.child.exitCode === null && r.child.signalCode === null);
        const gauges = await Promise.all(
          started.map(async (s, i) =>
            alive[i] ? metricValue(await scrape(s.url).catch(() => []), 'kubewatcher_leader') : 0,
          ),
        );
        if (gauges.every((g) => g === 1)) overlaps.push(gauges);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();

    for (const name of ['web-a', 'web-b']) {
      await clients.apps.createNamespacedDeployment({
        namespace: ns,
        body: deployment(name, { containers: { app: WEB } }),
      });
    }
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB });
    const firstUpdate = await createImageUpdate(clients, wi, testDigest(1));
    await waitForPhase(clients, ns, firstUpdate.metadata.name, 'Succeeded');

    const metricsBefore: Sample[][] = await Promise.all(started.map((s) => scrape(s.url)));
    expect(metricValue(metricsBefore[leaderIndex]!, 'kubewatcher_updates_applied_total')).toBe(2);
    expect(metricValue(metricsBefore[follower]!, 'kubewatcher_updates_applied_total')).toBe(0);
    expect(metricValue(metricsBefore[follower]!, 'kubewatcher_reconcile_total')).toBe(0);
    expect(metricValue(metricsBefore[follower]!, 'kubewatcher_leader')).toBe(0);
    const firstEvents = (await eventsIn(clients, ns)).filter((e) => e.component === 'kubewatcher-controller');
    expect(firstEvents.length).toBeGreaterThan(0);
    expect(new Set(firstEvents.map((e) => e.host))).toEqual(new Set([identities[leaderIndex]]));

    // The leader dies without releasing the Lease; an update arrives at once.
    await replicas[leaderIndex]!.kill('SIGKILL');
    const secondDigest = testDigest(2);
    const secondUpdate = await createImageUpdate(clients, wi, secondDigest);
    const done = await waitForPhase(clients, ns, secondUpdate.metadata.name, ['Succeeded', 'Failed'], 90_000);
    expect(done.status?.phase).toBe('Succeeded');
    sampling = false;
    await sampler;
    expect(overlaps).toEqual([]);

    const after = await lease();
    expect(after.spec?.holderIdentity).toBe(identities[follower]);
    expect(after.spec?.leaseTransitions ?? 0).toBeGreaterThan(held.spec?.leaseTransitions ?? 0);
    const followerMetrics = await scrape(started[follower]!.url);
    expect(metricValue(followerMetrics, 'kubewatcher_leader')).toBe(1);
    expect(metricValue(followerMetrics, 'kubewatcher_updates_applied_total')).toBe(2);

    const secondEvents = (
      await eventsIn(clients, ns, { kind: 'ImageUpdate', name: secondUpdate.metadata.name })
    ).filter((e) => e.component === 'kubewatcher-controller');
    expect(secondEvents.length).toBeGreaterThan(0);
    expect(new Set(secondEvents.map((e) => e.host))).toEqual(new Set([identities[follower]]));

    // One patch per update, each from one replica.
    for (const d of await listDeployments(ns)) {
      expect(d.metadata?.generation).toBe(3);
      expect(imagesOf(d).app).toBe(`${WEB}@${secondDigest}`);
    }
    const first: ImageUpdate = await getImageUpdate(clients, ns, firstUpdate.metadata.name);
    expect(first.status?.phase).toBe('Succeeded');
  });
});

describe('a leader shutting down', () => {
  const REFUSED = 'releases refused by the test';
  /** A policy refusing every release of a Lease in `ns` (an update that clears the holder). */
  async function refuseReleases(ns: string): Promise<() => Promise<void>> {
    const admission = clients.kc.makeApiClient(AdmissionregistrationV1Api);
    const name = `kubewatcher-test-no-release-${ns}`;
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [
              {
                apiGroups: ['coordination.k8s.io'],
                apiVersions: ['v1'],
                operations: ['UPDATE'],
                resources: ['leases'],
              },
            ],
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': ns } },
          },
          validations: [
            {
              expression: "object.spec.?holderIdentity.orValue('') != ''",
              message: REFUSED,
            },
          ],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: { metadata: { name }, spec: { policyName: name, validationActions: ['Deny'] } },
    });
    // A policy takes effect a moment after it is made: until a probe Lease's release is refused.
    const probe = { metadata: { name: 'probe', namespace: ns }, spec: { holderIdentity: 'probe' } };
    // Replaced at the version created (an update without one is refused for that alone, which the
    // wait below would take for the policy).
    const created = await clients.coordination.createNamespacedLease({ namespace: ns, body: probe });
    await until(
      () =>
        clients.coordination
          .replaceNamespacedLease({
            namespace: ns,
            name: 'probe',
            dryRun: 'All',
            body: { ...created, spec: { holderIdentity: '' } },
          })
          .then(
            () => 'admitted',
            // Refused by this policy, not by anything else (a conflict would end the wait too early).
            (err: unknown) => {
              const text = String((err as Error & { body?: unknown }).body ?? (err as Error).message);
              return text.includes(REFUSED) ? 'refused' : `other error: ${text.slice(0, 300)}`;
            },
          ),
      (r) => r === 'refused',
      { what: 'the release-refusing policy to take effect', timeoutMs: 30_000 },
    );
    return async () => {
      await admission.deleteValidatingAdmissionPolicyBinding({ name }).catch(() => undefined);
      await admission.deleteValidatingAdmissionPolicy({ name }).catch(() => undefined);
    };
  }

  it.each([
    ['its Lease released', false],
    ['its Lease release refused by the API', true],
  ])('exits 0 on SIGTERM, %s', async (_what, refused) => {
    const ns = await newNamespace('shutdown');
    const removePolicy = refused ? await refuseReleases(ns) : async () => {};
    try {
      const p = startProcess(leaderElectedIn(ns));
      const { identity } = await p.ready;
      const lease = () =>
        clients.coordination.readNamespacedLease({ namespace: ns, name: 'kubewatcher-controller' });
      await until(lease, (l) => l.spec?.holderIdentity === identity, {
        what: 'the replica to hold the Lease',
        ignoreErrors: true,
      });
      await p.waitForLog('leading: caches synced, workers started');
      // SIGTERM, SIGKILL only after 10 s: a clean stop exits by itself, with 0.
      expect(await p.stop()).toEqual({ code: 0, signal: null });
      if (refused) {
        expect(p.logs.map((l) => l.message)).toContain(
          'leader election: releasing the lease failed; standbys take over when it expires',
        );
        expect((await lease()).spec?.holderIdentity).toBe(identity);
      } else {
        expect((await lease()).spec?.holderIdentity ?? '').toBe('');
      }
    } finally {
      await removePolicy();
    }
  });
});
