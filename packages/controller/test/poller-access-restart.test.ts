/**
 * The poller's per-namespace secret access across a controller restart, against the real local
 * control plane: the start-up sweep removes the bindings of namespaces whose WatchedImages went while
 * no controller ran, keeps the others as they are, re-creates missing ones, and never touches a
 * RoleBinding of the same name that Kubewatcher did not make. The controller runs in this process.
 */
import { PassThrough } from 'node:stream';
import { RbacAuthorizationV1Api, type V1RoleBinding } from '@kubernetes/client-node';
import { createLogger } from '@kubewatcher/shared';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createWatchedImage, until, WI } from '../../../test/support/controller-fixtures.ts';
import { useControllerTestBed } from './controller-test-bed.ts';

const { clients, newNamespace, startController } = useControllerTestBed(inject('localCluster'));
const rbac = clients.kc.makeApiClient(RbacAuthorizationV1Api);
const IMAGE = 'ghcr.io/acme/shop:2.0';
// A role name of this file's own, so no other file's controller sweeps these bindings. The role exists,
// as in an install, so the controller's bindings are owned by it.
const POLLER_ROLE = 'kubewatcher-restart-poller-secrets';
const GRANT = { role: POLLER_ROLE, serviceAccount: { namespace: 'default', name: 'test-poller' } };
const OUR_LABELS = {
  'kubewatcher.io/access': 'poller-secrets',
  'app.kubernetes.io/managed-by': 'kubewatcher',
};

let roleUid: string | undefined;
beforeAll(async () => {
  const role = await rbac.createClusterRole({
    body: {
      metadata: { name: POLLER_ROLE },
      rules: [{ apiGroups: [''], resources: ['secrets'], verbs: ['get'] }],
    },
  });
  roleUid = role.metadata?.uid;
});
afterAll(async () => {
  await rbac.deleteClusterRole({ name: POLLER_ROLE }).catch(() => undefined);
});

/** The controller's log lines as objects (JSON, debug included), for the decisions it logs. */
function capturedLogger() {
  const lines: Record<string, unknown>[] = [];
  const stream = new PassThrough();
  let rest = '';
  stream.on('data', (chunk: Buffer) => {
    const text = rest + chunk.toString('utf8');
    const parts = text.split('\n');
    rest = parts.pop() ?? '';
    for (const line of parts) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
  });
  const logger = createLogger({ component: 'controller-test', level: 'debug', format: 'json', stream });
  const logged = (message: string, namespace: string) =>
    until(
      () => lines.some((l) => l.message === message && l.namespace === namespace),
      (seen) => seen,
      { what: `the controller to log "${message}" for ${namespace}` },
    );
  return { logger, lines, logged };
}

const readBinding = async (ns: string): Promise<V1RoleBinding | undefined> =>
  (await rbac.listNamespacedRoleBinding({ namespace: ns })).items.find(
    (b) => b.metadata?.name === POLLER_ROLE,
  );

const waitForBinding = (ns: string, present: boolean) =>
  until(
    () => readBinding(ns),
    (b) => (b !== undefined) === present,
    { what: `the poller binding in ${ns} to be ${present ? 'made' : 'removed'}` },
  );

/** A RoleBinding named like the controller's that someone else made. */
function foreignBinding(ns: string, o: { labels?: Record<string, string>; role?: string }): V1RoleBinding {
  return {
    metadata: { name: POLLER_ROLE, namespace: ns, ...(o.labels ? { labels: o.labels } : {}) },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: o.role ?? POLLER_ROLE },
    subjects: [{ kind: 'ServiceAccount', name: 'their-own', namespace: ns }],
  };
}

/** What of a binding must not change: who made it, which version, what it binds to whom. */
const identity = (b: V1RoleBinding | undefined) => ({
  uid: b?.metadata?.uid,
  resourceVersion: b?.metadata?.resourceVersion,
  labels: b?.metadata?.labels,
  roleRef: b?.roleRef,
  subjects: b?.subjects,
});

const deleteWatchedImage = (ns: string, name: string) =>
  clients.custom.deleteNamespacedCustomObject({ ...WI, namespace: ns, name });

describe('the poller access across a controller restart', () => {
  it('sweeps bindings left behind, keeps and re-creates the right ones, and leaves foreign ones alone', async () => {
    const emptied = await newNamespace('pa-emptied');
    const kept = await newNamespace('pa-kept');
    const lost = await newNamespace('pa-lost');
    const otherRole = await newNamespace('pa-other-role');
    const unlabelled = await newNamespace('pa-unlabelled');
    const all = [emptied, kept, lost, otherRole, unlabelled];
    for (const ns of [emptied, kept, lost]) await createWatchedImage(clients, ns, 'shop', { image: IMAGE });

    // First run: the controller binds the namespaces that hold WatchedImages.
    const first = await startController({ namespaces: all, pollerAccess: GRANT });
    for (const ns of [emptied, kept, lost]) await waitForBinding(ns, true);
    await first.stop();

    // While no controller runs: the WatchedImages of one namespace go, one binding goes, and others make
    // bindings of the controller's name: one labelled like the controller's but binding another role
    // (no WatchedImage there, so the sweep finds it), one unlabelled binding of the same role to their
    // own service account where a WatchedImage is made.
    await deleteWatchedImage(emptied, 'shop');
    await rbac.deleteNamespacedRoleBinding({ namespace: lost, name: POLLER_ROLE });
    await rbac.createNamespacedRoleBinding({
      namespace: otherRole,
      body: foreignBinding(otherRole, { labels: OUR_LABELS, role: 'view' }),
    });
    await rbac.createNamespacedRoleBinding({ namespace: unlabelled, body: foreignBinding(unlabelled, {}) });
    await createWatchedImage(clients, unlabelled, 'shop', { image: IMAGE });
    const before = {
      kept: identity(await readBinding(kept)),
      otherRole: identity(await readBinding(otherRole)),
      unlabelled: identity(await readBinding(unlabelled)),
    };

    const { logger, logged } = capturedLogger();
    await startController({ namespaces: all, pollerAccess: GRANT, logger });
    await waitForBinding(emptied, false);
    const recreated = await waitForBinding(lost, true);
    expect(recreated?.metadata?.labels).toMatchObject(OUR_LABELS);
    expect(recreated?.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'test-poller', namespace: 'default' },
    ]);
    expect(recreated?.metadata?.ownerReferences).toEqual([
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', name: POLLER_ROLE, uid: roleUid },
    ]);
    // Each decision is logged; once it is, the binding is as it was before the restart.
    await logged('the poller access is in place', kept);
    await logged(
      'not removing: a RoleBinding of this name that Kubewatcher did not make is left as it is',
      otherRole,
    );
    await logged(
      'not granting: a RoleBinding of this name that Kubewatcher did not make is left as it is',
      unlabelled,
    );
    expect(identity(await readBinding(kept))).toEqual(before.kept);
    expect(identity(await readBinding(otherRole))).toEqual(before.otherRole);
    expect(identity(await readBinding(unlabelled))).toEqual(before.unlabelled);

    // The last WatchedImage of the unlabelled binding's namespace goes while the controller runs: the
    // binding it did not make stays.
    await deleteWatchedImage(unlabelled, 'shop');
    await logged(
      'not removing: a RoleBinding of this name that Kubewatcher did not make is left as it is',
      unlabelled,
    );
    expect(identity(await readBinding(unlabelled))).toEqual(before.unlabelled);
  });

  it('never binds the role in kube-system, whatever WatchedImages are there', async () => {
    const name = `pa-${Date.now().toString(36)}`;
    await createWatchedImage(clients, 'kube-system', name, { image: IMAGE });
    try {
      const { logger, logged } = capturedLogger();
      await startController({ namespaces: ['kube-system'], pollerAccess: GRANT, logger });
      await logged('not granting the poller access to secrets in this namespace', 'kube-system');
      expect(await readBinding('kube-system')).toBeUndefined();
    } finally {
      await deleteWatchedImage('kube-system', name);
    }
  });

  it('sweeps only the namespaces it watches', async () => {
    // A controller limited to some namespaces sees no WatchedImages elsewhere: that says nothing about
    // the bindings there.
    const watched = await newNamespace('pa-watched');
    const elsewhere = await newNamespace('pa-elsewhere');
    await createWatchedImage(clients, elsewhere, 'shop', { image: IMAGE });
    const first = await startController({ namespaces: [elsewhere], pollerAccess: GRANT });
    const binding = await waitForBinding(elsewhere, true);
    await first.stop();

    // A binding of the controller's left in `watched`, which holds no WatchedImage.
    await rbac.createNamespacedRoleBinding({
      namespace: watched,
      body: {
        ...foreignBinding(watched, { labels: OUR_LABELS }),
        subjects: [{ kind: 'ServiceAccount', name: 'test-poller', namespace: 'default' }],
      },
    });
    const { logger, lines } = capturedLogger();
    await startController({ namespaces: [watched], pollerAccess: GRANT, logger });
    await waitForBinding(watched, false);
    const sweep = lines.find(
      (l) => l.message === 'checking poller access bindings left in namespaces without WatchedImages',
    );
    expect(sweep?.namespaces).toEqual([watched]);
    expect(identity(await readBinding(elsewhere))).toEqual(identity(binding));
  });
});
