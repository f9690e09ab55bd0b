/**
 * `kubectl-kubewatcher` as the process it ships as, against the real local control plane and a
 * running controller: status, approve (who approved comes from a SelfSubjectReview), reject as
 * another identity (a ServiceAccount token with only the rights it needs), check, history, and the
 * exit codes of refusals.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuthenticationV1Api, BatchV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { shortDigest } from '@kubewatcher/shared';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  clientsFor,
  createImageUpdate,
  createNamespace,
  createSuspendedPollerCronJob,
  createWatchedImage,
  deleteNamespace,
  deployment,
  getImageUpdate,
  getWatchedImage,
  installCrds,
  serviceAccountKubeConfig,
  testDigest,
  until,
  waitForPhase,
} from '../../../test/support/controller-fixtures.ts';
import { type RunningController, startController } from './controller-harness.ts';

const cluster = inject('localCluster');
const clients = clientsFor(cluster);
const PLUGIN = fileURLToPath(new URL('../src/plugin/main.ts', import.meta.url));
const WEB = '127.0.0.1:5999/acme/web:stable';

let ns: string;
let dir: string;
let reviewerKubeconfig: string;
let running: RunningController;

function plugin(
  args: string[],
  kubeconfig = cluster.kubeconfig,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--conditions=@kubewatcher/source', PLUGIN, '--kubeconfig', kubeconfig, ...args],
      { timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

beforeAll(async () => {
  await installCrds(cluster);
  ns = await createNamespace(clients, 'plugin');
  dir = mkdtempSync(join(tmpdir(), 'kubewatcher-plugin-'));
  // A reviewer: may read and decide on ImageUpdates in this namespace, nothing else.
  await clients.core.createNamespacedServiceAccount({
    namespace: ns,
    body: { metadata: { name: 'reviewer' } },
  });
  const rbac = clients.kc.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace: ns,
    body: {
      metadata: { name: 'reviewer' },
      rules: [
        { apiGroups: ['kubewatcher.io'], resources: ['imageupdates'], verbs: ['get', 'list', 'patch'] },
      ],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: ns,
    body: {
      metadata: { name: 'reviewer' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'reviewer' },
      subjects: [{ kind: 'ServiceAccount', name: 'reviewer', namespace: ns }],
    },
  });
  const kc = await serviceAccountKubeConfig(cluster, clients, ns, 'reviewer');
  reviewerKubeconfig = join(dir, 'reviewer.kubeconfig');
  writeFileSync(reviewerKubeconfig, kc.exportConfig());

  // The poller CronJob `check` starts a run of (suspended: only the plugin starts runs here).
  await createSuspendedPollerCronJob(clients, ns);

  await clients.apps.createNamespacedDeployment({
    namespace: ns,
    body: deployment('web', { containers: { app: WEB } }),
  });
  running = await startController(clients.kc, { namespaces: [ns] });
});

afterAll(async () => {
  await running?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (ns) await deleteNamespace(clients, ns);
});

describe('kubectl kubewatcher', () => {
  it('approve records who approved (from a SelfSubjectReview) and the update rolls out; history and status show it', async () => {
    const wi = await createWatchedImage(clients, ns, 'web', { image: WEB, updatePolicy: 'Manual' });
    const toDigest = testDigest(1);
    const iu = await createImageUpdate(clients, wi, toDigest);
    await waitForPhase(clients, ns, iu.metadata.name, 'AwaitingApproval');

    const status = await plugin(['status', '-n', ns]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(
      new RegExp(
        `^${ns}\\s+web\\s+${WEB.replaceAll('.', '\\.')}\\s+${shortDigest(toDigest)}\\s+Manual\\s+\\d+\\s+(True|False|Unknown)\\s`,
        'm',
      ),
    );
    expect(status.stdout).toMatch(new RegExp(`^${ns}\\s+${iu.metadata.name}\\s+.*AwaitingApproval`, 'm'));

    const me = (await clients.kc.makeApiClient(AuthenticationV1Api).createSelfSubjectReview({ body: {} }))
      .status!.userInfo!.username!;
    const approved = await plugin(['approve', iu.metadata.name, '-n', ns]);
    expect(approved).toMatchObject({
      code: 0,
      stdout: `imageupdate.kubewatcher.io/${iu.metadata.name} approved by ${me}\n`,
    });
    const after = await getImageUpdate(clients, ns, iu.metadata.name);
    expect(after.spec.approved).toBe(true);
    expect(after.metadata.annotations).toMatchObject({
      'kubewatcher.io/decision': 'approved',
      'kubewatcher.io/decided-by': me,
    });
    await waitForPhase(clients, ns, iu.metadata.name, 'Succeeded');

    const history = await plugin(['history', 'web', '-n', ns]);
    expect(history.code).toBe(0);
    expect(history.stdout).toMatch(
      new RegExp(`^${iu.metadata.name}\\s+<none>\\s+\\w{12}\\s+Succeeded\\s+1/1\\s+approved by ${me}`, 'm'),
    );

    // Nothing left to approve: exit 1, and why.
    const again = await plugin(['approve', iu.metadata.name, '-n', ns]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      `error: ImageUpdate ${ns}/${iu.metadata.name} is Succeeded: there is nothing left to approve\n`,
    );
  });

  it('reject as another identity: recorded with that identity, nothing applied', async () => {
    const wi = await getWatchedImage(clients, ns, 'web');
    const iu = await createImageUpdate(clients, wi, testDigest(2), {
      fromDigest: wi.status?.digest ?? testDigest(1),
    });
    await waitForPhase(clients, ns, iu.metadata.name, 'AwaitingApproval');
    const rejected = await plugin(['reject', iu.metadata.name], reviewerKubeconfig); // the context's namespace
    const reviewer = `system:serviceaccount:${ns}:reviewer`;
    expect(rejected).toMatchObject({
      code: 0,
      stdout: `imageupdate.kubewatcher.io/${iu.metadata.name} rejected by ${reviewer}\n`,
    });
    const seen = await until(
      () => getImageUpdate(clients, ns, iu.metadata.name),
      (u) => u.status?.conditions?.find((c) => c.type === 'Approved')?.reason === 'Rejected',
      { what: 'the rejection on the Approved condition' },
    );
    expect(seen.metadata.annotations?.['kubewatcher.io/decided-by']).toBe(reviewer);
    expect(seen.status?.conditions?.find((c) => c.type === 'Approved')?.message).toBe(
      `rejected by ${reviewer}`,
    );
    expect(seen.status?.phase).toBe('AwaitingApproval');
    expect(seen.status?.appliedTime).toBeUndefined();

    // The reviewer may not make images due.
    const check = await plugin(['check', 'web', '-n', ns], reviewerKubeconfig);
    expect(check.code).toBe(1);
    expect(check.stderr).toContain('forbidden');
  });

  it('check makes the WatchedImage due and starts one poller run; a second check finds it in progress', async () => {
    const before = Date.now();
    const first = await plugin(['check', 'web', '-n', ns, '--poller-namespace', ns]);
    expect(first).toMatchObject({
      code: 0,
      stdout: `watchedimage.kubewatcher.io/web due now\njob.batch/kubewatcher-poller-webhook created in ${ns}\n`,
    });
    const wi = await getWatchedImage(clients, ns, 'web');
    expect(Date.parse(wi.status!.checkRequestedTime!)).toBeGreaterThanOrEqual(before - 1000);
    const job = await clients.kc
      .makeApiClient(BatchV1Api)
      .readNamespacedJob({ namespace: ns, name: 'kubewatcher-poller-webhook' });
    expect(job.metadata?.annotations?.['kubewatcher.io/started-by']).toBe('kubectl-kubewatcher');
    const second = await plugin(['check', 'web', '-n', ns, '--poller-namespace', ns]);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('a poller run is in progress (job kubewatcher-poller-webhook)');
  });

  it('names what is missing, and refuses bad usage with exit 2', async () => {
    const missing = await plugin(['approve', 'no-such-update', '-n', ns]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('"no-such-update" not found');
    const usage = await plugin(['approve']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('Not enough non-option arguments');
  });
});
