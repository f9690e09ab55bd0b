import {
  errorFields,
  LABEL,
  type Logger,
  MANAGED_BY_KUBEWATCHER,
  MANAGED_BY_LABEL,
  RESOURCE,
} from '@kubewatcher/shared';
import type { ControllerWriter } from './cluster.ts';

/** Namespaces whose secrets the poller never reads, whatever WatchedImages they hold. */
export const NEVER_GRANTED_NAMESPACES: readonly string[] = ['kube-system'];

/** How long a namespace found granted is trusted before the binding is checked again. */
export const GRANT_RECHECK_MS = 10 * 60_000;

/** The value of LABEL.access on the poller's secret-access RoleBindings. */
export const POLLER_SECRETS_ACCESS = 'poller-secrets';

/** Which ClusterRole the controller binds to which service account (the poller's) per watched namespace. */
export interface PollerAccessGrant {
  role: string;
  serviceAccount: { namespace: string; name: string };
}

/** What the controller reads of a RoleBinding named like its grant. */
export interface RoleBindingSeen {
  metadata?: {
    uid?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    ownerReferences?: { kind?: string; name?: string; uid?: string }[];
  };
  roleRef?: { apiGroup?: string; kind?: string; name?: string };
  subjects?: { kind?: string; name?: string; namespace?: string }[];
}

/**
 * The RoleBinding that lets the poller read secrets in `namespace`: `grant.role` (a ClusterRole that
 * grants `get secrets`) bound to the poller's service account, named after the role and labelled as
 * the controller's so it is told apart from a binding of that name someone else made. Owned by the
 * ClusterRole (`roleUid`, when it exists): deleting the role, as an uninstall does, has the garbage
 * collector delete every binding of it, wherever the controller made them.
 */
export function pollerAccessBinding(namespace: string, grant: PollerAccessGrant, roleUid?: string) {
  return {
    apiVersion: RESOURCE.roleBinding.apiVersion,
    kind: RESOURCE.roleBinding.kind,
    metadata: {
      name: grant.role,
      namespace,
      labels: { [LABEL.access]: POLLER_SECRETS_ACCESS, [MANAGED_BY_LABEL]: MANAGED_BY_KUBEWATCHER },
      ...(roleUid
        ? {
            ownerReferences: [
              {
                apiVersion: RESOURCE.clusterRole.apiVersion,
                kind: RESOURCE.clusterRole.kind,
                name: grant.role,
                uid: roleUid,
              },
            ],
          }
        : {}),
    },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: grant.role },
    subjects: [
      { kind: 'ServiceAccount', name: grant.serviceAccount.name, namespace: grant.serviceAccount.namespace },
    ],
  };
}

/**
 * Why a RoleBinding of the grant's name is not the controller's to change or delete, or undefined when
 * it is: it carries both of the controller's labels and binds the grant's ClusterRole.
 */
export function foreignBindingReason(binding: RoleBindingSeen, grant: PollerAccessGrant): string | undefined {
  const labels = binding.metadata?.labels ?? {};
  if (labels[LABEL.access] !== POLLER_SECRETS_ACCESS || labels[MANAGED_BY_LABEL] !== MANAGED_BY_KUBEWATCHER) {
    return `it lacks the labels ${LABEL.access}=${POLLER_SECRETS_ACCESS} and ${MANAGED_BY_LABEL}=${MANAGED_BY_KUBEWATCHER}`;
  }
  const ref = binding.roleRef;
  if (
    ref?.kind !== 'ClusterRole' ||
    ref.name !== grant.role ||
    ref.apiGroup !== 'rbac.authorization.k8s.io'
  ) {
    return `it binds ${ref?.kind ?? '?'} ${ref?.name ?? '?'}, not ClusterRole ${grant.role}`;
  }
  return undefined;
}

export type GrantPlan =
  | { action: 'create' }
  | { action: 'keep' }
  /** The controller's binding names another subject (e.g. the poller's service account moved) or lacks its owner. */
  | { action: 'update'; resourceVersion: string }
  | { action: 'leave-foreign'; reason: string };

/**
 * What granting takes, given the RoleBinding of the grant's name as it is (undefined: none) and the
 * uid of the ClusterRole (undefined: it does not exist, so the binding cannot be owned by it).
 */
export function planGrant(
  existing: RoleBindingSeen | undefined,
  grant: PollerAccessGrant,
  roleUid?: string,
): GrantPlan {
  if (!existing) return { action: 'create' };
  const reason = foreignBindingReason(existing, grant);
  if (reason) return { action: 'leave-foreign', reason };
  const subjects = existing.subjects ?? [];
  const { name, namespace } = grant.serviceAccount;
  const upToDate =
    subjects.length === 1 &&
    subjects[0]!.kind === 'ServiceAccount' &&
    subjects[0]!.name === name &&
    subjects[0]!.namespace === namespace &&
    (roleUid === undefined || (existing.metadata?.ownerReferences ?? []).some((o) => o.uid === roleUid));
  return upToDate
    ? { action: 'keep' }
    : { action: 'update', resourceVersion: existing.metadata?.resourceVersion ?? '' };
}

/** What PollerAccess needs of the cluster (the controller's ControllerWriter). */
export type PollerAccessWriter = Pick<
  ControllerWriter,
  | 'readPollerAccess'
  | 'createPollerAccess'
  | 'updatePollerAccess'
  | 'deletePollerAccess'
  | 'listPollerAccessNamespaces'
  | 'readPollerRole'
>;

export type RevokePlan =
  | { action: 'none' }
  /** Preconditions: the delete fails rather than take a binding replaced since it was read. */
  | { action: 'delete'; uid: string; resourceVersion: string }
  | { action: 'leave-foreign'; reason: string };

/** What revoking takes, given the RoleBinding of the grant's name as it is (undefined: none). */
export function planRevoke(existing: RoleBindingSeen | undefined, grant: PollerAccessGrant): RevokePlan {
  if (!existing) return { action: 'none' };
  const reason = foreignBindingReason(existing, grant);
  if (reason) return { action: 'leave-foreign', reason };
  return {
    action: 'delete',
    uid: existing.metadata?.uid ?? '',
    resourceVersion: existing.metadata?.resourceVersion ?? '',
  };
}

/**
 * The poller reads pull secrets only in namespaces that hold WatchedImages: the controller binds one
 * ClusterRole (`get secrets`) to the poller's service account in each such namespace, and removes the
 * binding when the last WatchedImage there is gone. The controller may bind that role and no other
 * (RBAC `bind` with resourceNames), and an admission policy holds its RoleBindings to exactly this one.
 * A RoleBinding of the same name that the controller did not make is never changed nor deleted.
 */
export class PollerAccess {
  readonly #grant: PollerAccessGrant;
  readonly #writer: PollerAccessWriter;
  readonly #logger: Logger;
  /**
   * When this process last found each namespace granted: checked again after GRANT_RECHECK_MS, not on
   * every reconcile, so a binding deleted meanwhile (by hand, or with its ClusterRole) comes back.
   */
  readonly #granted = new Map<string, number>();
  readonly #refusedLogged = new Set<string>();
  /**
   * Grants under way, per namespace: the WatchedImages of one namespace are reconciled by several
   * workers at once (at start-up, all of them), and each would read "no binding" and create one; all but
   * the first then failed with AlreadyExists and logged it. Now they wait for the first.
   */
  readonly #granting = new Map<string, Promise<void>>();

  constructor(grant: PollerAccessGrant, writer: PollerAccessWriter, logger: Logger) {
    this.#grant = grant;
    this.#writer = writer;
    this.#logger = logger;
  }

  /** The namespace holds a WatchedImage: the poller may read its secrets. Failures are logged, retried on the next reconcile. */
  watched(namespace: string): Promise<void> {
    const checked = this.#granted.get(namespace);
    if (checked !== undefined && Date.now() - checked < GRANT_RECHECK_MS) return Promise.resolve();
    let granting = this.#granting.get(namespace);
    if (!granting) {
      granting = this.#grantIn(namespace).finally(() => this.#granting.delete(namespace));
      this.#granting.set(namespace, granting);
    }
    return granting;
  }

  async #grantIn(namespace: string): Promise<void> {
    if (NEVER_GRANTED_NAMESPACES.includes(namespace)) {
      this.#refuseOnce(`grant:${namespace}`, 'not granting the poller access to secrets in this namespace', {
        namespace,
      });
      return;
    }
    try {
      const existing = await this.#writer.readPollerAccess(namespace, this.#grant);
      const roleUid = await this.#roleUid();
      const plan = planGrant(existing, this.#grant, roleUid);
      if (plan.action === 'leave-foreign') {
        // Checked again on later reconciles: once its owner removes it, the controller's own is made.
        this.#refuseOnce(
          `grant:${namespace}`,
          'not granting: a RoleBinding of this name that Kubewatcher did not make is left as it is',
          {
            namespace,
            roleBinding: this.#grant.role,
            reason: plan.reason,
          },
        );
        return;
      }
      if (plan.action === 'keep') {
        this.#logger.debug('the poller access is in place', { namespace, role: this.#grant.role });
      }
      if (plan.action === 'create') await this.#writer.createPollerAccess(namespace, this.#grant, roleUid);
      if (plan.action === 'update') {
        await this.#writer.updatePollerAccess(namespace, this.#grant, plan.resourceVersion, roleUid);
      }
      this.#granted.set(namespace, Date.now());
      this.#refusedLogged.delete(`grant:${namespace}`);
      if (plan.action !== 'keep') {
        this.#logger.info('poller may read pull secrets in the namespace', {
          namespace,
          role: this.#grant.role,
        });
      }
    } catch (err) {
      this.#logger.warn('could not grant the poller access to pull secrets', {
        namespace,
        ...errorFields(err),
      });
    }
  }

  /** The namespace holds no WatchedImage any more: the controller's binding goes. */
  async unwatched(namespace: string): Promise<void> {
    this.#granted.delete(namespace);
    try {
      const plan = planRevoke(await this.#writer.readPollerAccess(namespace, this.#grant), this.#grant);
      if (plan.action === 'leave-foreign') {
        this.#refuseOnce(
          `revoke:${namespace}`,
          'not removing: a RoleBinding of this name that Kubewatcher did not make is left as it is',
          {
            namespace,
            roleBinding: this.#grant.role,
            reason: plan.reason,
          },
        );
        return;
      }
      if (plan.action === 'none') return;
      await this.#writer.deletePollerAccess(namespace, this.#grant, {
        uid: plan.uid,
        resourceVersion: plan.resourceVersion,
      });
      this.#logger.info('no WatchedImage left: the poller may no longer read pull secrets in the namespace', {
        namespace,
      });
    } catch (err) {
      this.#logger.warn('could not remove the poller access to pull secrets', {
        namespace,
        ...errorFields(err),
      });
    }
  }

  /** Namespaces that hold a binding labelled as the controller's (e.g. made before a restart), to be checked once. */
  async bound(): Promise<string[]> {
    try {
      return await this.#writer.listPollerAccessNamespaces();
    } catch (err) {
      this.#logger.warn('could not list the poller access bindings', errorFields(err));
      return [];
    }
  }

  get role(): string {
    return this.#grant.role;
  }

  /**
   * The ClusterRole's uid, to own the bindings by; undefined when it does not exist or cannot be read
   * (an install whose RBAC predates `get` on it): the binding is then made without an owner.
   */
  async #roleUid(): Promise<string | undefined> {
    try {
      return (await this.#writer.readPollerRole(this.#grant))?.metadata?.uid;
    } catch (err) {
      this.#refuseOnce(
        'role',
        'cannot read the poller secrets ClusterRole: its bindings are made without an owner',
        {
          role: this.#grant.role,
          ...errorFields(err),
        },
      );
      return undefined;
    }
  }

  /** Logs a refusal once per `key` (what was refused where) and process, not on every reconcile. */
  #refuseOnce(key: string, message: string, fields: Record<string, unknown>): void {
    if (this.#refusedLogged.has(key)) return;
    this.#refusedLogged.add(key);
    this.#logger.warn(message, fields);
  }
}
