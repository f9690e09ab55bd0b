import { errorFields, type Logger } from '@kubewatcher/shared';
import type { ControllerWriter, PollerAccessGrant } from './cluster.ts';

/** Namespaces whose secrets the poller never reads, whatever WatchedImages they hold. */
export const NEVER_GRANTED_NAMESPACES: readonly string[] = ['kube-system'];

/**
 * The poller reads pull secrets only in namespaces that hold WatchedImages: the controller binds one
 * ClusterRole (`get secrets`) to the poller's service account in each such namespace, and removes the
 * binding when the last WatchedImage there is gone. The controller may bind that role and no other
 * (RBAC `bind` with resourceNames), and an admission policy holds its RoleBindings to exactly this one.
 */
export class PollerAccess {
  readonly #grant: PollerAccessGrant;
  readonly #writer: ControllerWriter;
  readonly #logger: Logger;
  /** Namespaces granted by this process: one apply per namespace per process, not per reconcile. */
  readonly #granted = new Set<string>();
  readonly #refusedLogged = new Set<string>();

  constructor(grant: PollerAccessGrant, writer: ControllerWriter, logger: Logger) {
    this.#grant = grant;
    this.#writer = writer;
    this.#logger = logger;
  }

  /** The namespace holds a WatchedImage: the poller may read its secrets. Failures are logged, retried on the next reconcile. */
  async watched(namespace: string): Promise<void> {
    if (this.#granted.has(namespace)) return;
    if (NEVER_GRANTED_NAMESPACES.includes(namespace)) {
      if (!this.#refusedLogged.has(namespace)) {
        this.#refusedLogged.add(namespace);
        this.#logger.warn('not granting the poller access to secrets in this namespace', { namespace });
      }
      return;
    }
    try {
      await this.#writer.applyPollerAccess(namespace, this.#grant);
      this.#granted.add(namespace);
      this.#logger.info('poller may read pull secrets in the namespace', {
        namespace,
        role: this.#grant.role,
      });
    } catch (err) {
      this.#logger.warn('could not grant the poller access to pull secrets', {
        namespace,
        ...errorFields(err),
      });
    }
  }

  /** The namespace holds no WatchedImage any more: the binding goes. */
  async unwatched(namespace: string): Promise<void> {
    this.#granted.delete(namespace);
    try {
      await this.#writer.deletePollerAccess(namespace, this.#grant);
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

  /** Namespaces that hold a binding made earlier (e.g. before a restart), to be checked once. */
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
}
