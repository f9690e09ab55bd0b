/**
 * The key of a Kubernetes object: `namespace/name`, or `name` for a cluster-scoped one (client-go's
 * `MetaNamespaceKeyFunc`). Work queues, caches, indexes and log fields all spell it this way.
 */

/** The key of `name` in `namespace` (`name` alone when there is no namespace). */
export function namespacedKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** The key of an object from its metadata. */
export function objectKey(obj: { metadata?: { name?: string; namespace?: string } }): string {
  return namespacedKey(obj.metadata?.namespace, obj.metadata?.name ?? '');
}

/** The inverse of `objectKey`. */
export function splitKey(key: string): { namespace?: string; name: string } {
  const slash = key.indexOf('/');
  return slash < 0 ? { name: key } : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/**
 * Orders two keys (or names, hosts) by UTF-16 code unit, as `Array.prototype.sort` does by default
 * (for the ASCII of Kubernetes names and hosts, the order of Go's `sort.Strings` too): the same order
 * in every locale. `localeCompare` would also cost a short-lived process its first call, which loads
 * ICU's collation data (~3 % of a poller run at N = 50).
 */
export function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
