import type { Logger } from '@kubewatcher/shared';
import { describe, expect, it } from 'vitest';
import {
  PollerAccess,
  type PollerAccessGrant,
  type PollerAccessWriter,
  planGrant,
  planRevoke,
  pollerAccessBinding,
  type RoleBindingSeen,
} from './poller-access.ts';

const GRANT: PollerAccessGrant = {
  role: 'kubewatcher-poller-secrets',
  serviceAccount: { namespace: 'kubewatcher-system', name: 'kubewatcher-poller' },
};
const OURS: RoleBindingSeen = {
  ...pollerAccessBinding('shop', GRANT),
  metadata: { ...pollerAccessBinding('shop', GRANT).metadata, uid: 'u-1', resourceVersion: '41' },
};
const relabel = (labels: Record<string, string>): RoleBindingSeen => ({
  ...OURS,
  metadata: { ...OURS.metadata, labels },
});
const rebind = (roleRef: RoleBindingSeen['roleRef']): RoleBindingSeen => ({ ...OURS, roleRef });
const FOREIGN: [string, RoleBindingSeen][] = [
  ['no labels', relabel({})],
  ['the access label only', relabel({ 'kubewatcher.io/access': 'poller-secrets' })],
  ['the managed-by label only', relabel({ 'app.kubernetes.io/managed-by': 'kubewatcher' })],
  [
    'another access value',
    relabel({ 'kubewatcher.io/access': 'other', 'app.kubernetes.io/managed-by': 'kubewatcher' }),
  ],
  [
    'our labels, another ClusterRole',
    rebind({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'admin' }),
  ],
  [
    'our labels, a Role of the same name',
    rebind({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: GRANT.role }),
  ],
  ['our labels, no roleRef', rebind(undefined)],
];

describe('planGrant', () => {
  it('creates a missing binding', () => {
    expect(planGrant(undefined, GRANT)).toEqual({ action: 'create' });
  });

  it('keeps the controller’s binding as it is', () => {
    expect(planGrant(OURS, GRANT)).toEqual({ action: 'keep' });
  });

  it.each([
    [
      'another service account',
      [{ kind: 'ServiceAccount', name: 'someone', namespace: 'kubewatcher-system' }],
    ],
    ['an extra subject', [...(OURS.subjects ?? []), { kind: 'User', name: 'mallory' }]],
    ['no subject', []],
  ])('brings the controller’s binding back to the grant when it names %s', (_what, subjects) => {
    expect(planGrant({ ...OURS, subjects }, GRANT)).toEqual({ action: 'update', resourceVersion: '41' });
  });

  it('gives the controller’s binding its ClusterRole as owner when the role exists', () => {
    expect(planGrant(OURS, GRANT, 'role-uid')).toEqual({ action: 'update', resourceVersion: '41' });
    const owned = pollerAccessBinding('shop', GRANT, 'role-uid');
    expect(owned.metadata.ownerReferences).toEqual([
      { apiVersion: 'rbac.authorization.k8s.io/v1', kind: 'ClusterRole', name: GRANT.role, uid: 'role-uid' },
    ]);
    expect(
      planGrant({ ...owned, metadata: { ...owned.metadata, resourceVersion: '42' } }, GRANT, 'role-uid'),
    ).toEqual({
      action: 'keep',
    });
    // Owned by an earlier ClusterRole of the name (deleted and made again): the new one becomes the owner.
    expect(planGrant(pollerAccessBinding('shop', GRANT, 'old-uid'), GRANT, 'role-uid')).toMatchObject({
      action: 'update',
    });
    expect(pollerAccessBinding('shop', GRANT).metadata).not.toHaveProperty('ownerReferences');
  });

  it.each(FOREIGN)('never changes a binding of the name with %s', (_what, binding) => {
    expect(planGrant(binding, GRANT)).toMatchObject({ action: 'leave-foreign', reason: expect.any(String) });
  });
});

describe('planRevoke', () => {
  it('has nothing to do without a binding', () => {
    expect(planRevoke(undefined, GRANT)).toEqual({ action: 'none' });
  });

  it('deletes the controller’s binding at the version read', () => {
    expect(planRevoke(OURS, GRANT)).toEqual({ action: 'delete', uid: 'u-1', resourceVersion: '41' });
  });

  it.each(FOREIGN)('never deletes a binding of the name with %s', (_what, binding) => {
    expect(planRevoke(binding, GRANT)).toMatchObject({ action: 'leave-foreign', reason: expect.any(String) });
  });

  it('names what makes a binding foreign', () => {
    expect(planRevoke(relabel({}), GRANT)).toMatchObject({
      reason: expect.stringContaining('kubewatcher.io/access=poller-secrets'),
    });
    expect(planRevoke(FOREIGN[4]![1], GRANT)).toMatchObject({
      reason: 'it binds ClusterRole admin, not ClusterRole kubewatcher-poller-secrets',
    });
  });
});

/** A cluster of RoleBindings in memory, its reads answered a tick later (as the API server would). */
function fakeWriter(): PollerAccessWriter & { creates: string[]; bindings: Map<string, RoleBindingSeen> } {
  const bindings = new Map<string, RoleBindingSeen>();
  const creates: string[] = [];
  const later = () => new Promise((resolve) => setImmediate(resolve));
  return {
    bindings,
    creates,
    async readPollerAccess(namespace) {
      await later();
      return bindings.get(namespace);
    },
    async readPollerRole() {
      await later();
      return { metadata: { uid: 'role-uid' } };
    },
    async createPollerAccess(namespace, grant) {
      await later();
      creates.push(namespace);
      if (bindings.has(namespace)) throw Object.assign(new Error('already exists'), { code: 409 });
      const made = pollerAccessBinding(namespace, grant);
      bindings.set(namespace, {
        ...made,
        metadata: { ...made.metadata, uid: `u-${namespace}`, resourceVersion: '1' },
      });
    },
    async updatePollerAccess() {
      throw new Error('not expected');
    },
    async deletePollerAccess(namespace) {
      bindings.delete(namespace);
    },
    async listPollerAccessNamespaces() {
      return [...bindings.keys()];
    },
  };
}

function recorder(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: string) => lines.push(`${level}: ${message}`);
  return { lines, error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

describe('PollerAccess', () => {
  it('makes one binding when many WatchedImages of a namespace are reconciled at once', async () => {
    const writer = fakeWriter();
    const logger = recorder();
    const access = new PollerAccess(GRANT, writer, logger);
    await Promise.all([
      ...Array.from({ length: 8 }, () => access.watched('shop')),
      access.watched('cafe'),
      access.watched('cafe'),
    ]);
    expect(writer.creates.sort()).toEqual(['cafe', 'shop']);
    expect([...writer.bindings.keys()].sort()).toEqual(['cafe', 'shop']);
    expect(logger.lines.filter((l) => l.startsWith('warn'))).toEqual([]);
    expect(logger.lines.filter((l) => l.includes('poller may read pull secrets'))).toHaveLength(2);
  });

  it('checks again after a failed grant', async () => {
    const writer = fakeWriter();
    const create = writer.createPollerAccess;
    let fail = true;
    writer.createPollerAccess = async (...args) => {
      if (fail) throw Object.assign(new Error('forbidden'), { code: 403 });
      return create(...args);
    };
    const logger = recorder();
    const access = new PollerAccess(GRANT, writer, logger);
    await access.watched('shop');
    expect(writer.bindings.has('shop')).toBe(false);
    expect(logger.lines).toContain('warn: could not grant the poller access to pull secrets');
    fail = false;
    await access.watched('shop');
    expect(writer.bindings.has('shop')).toBe(true);
  });
});
