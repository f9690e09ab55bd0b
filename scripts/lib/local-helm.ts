/**
 * Kubewatcher installed into a local environment's real node with `helm install` of the chart
 * (manifests/helm/kubewatcher), by values only: the same changes as the kustomize local overlay
 * (manifests/overlays/local) and the same environment-specific settings as scripts/lib/local-overlay.ts
 * (the pushed image, the API server's port, the poller's registries config and the basic-auth registry's
 * CA), nothing that weakens the pods' securityContext.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { LocalClusterInfo } from './cluster-info.ts';
import { apiServerPort, localRegistriesConfig, splitImageReference } from './local-overlay.ts';

/**
 * The ConfigMap (in the release namespace) the poller's CA bundles come from: the chart's default for
 * the release `kubewatcher` (`<release>-registry-cas`), as in the local overlay. The installer creates it.
 */
export const LOCAL_HELM_CA_CONFIGMAP = 'kubewatcher-registry-cas';
/** Its key for the basic-auth registry's CA: the file name `caFile` in the registries config names. */
export const BASIC_REGISTRY_CA_KEY = 'basic-registry-ca.crt';

/**
 * The chart values for the environment `info` describes and `image` (`REF@sha256:…` or `REF:tag`):
 *   - hostNetwork for both pods, and KUBERNETES_SERVICE_HOST/PORT pointing at the API server on
 *     127.0.0.1 (the node has no pod network and no kube-proxy);
 *   - the controller's probe and metrics server on the node's address only, and the Recreate strategy
 *     (one node's port 8080 holds one controller at a time);
 *   - no restricted-namespace check: hostNetwork needs a namespace that enforces "privileged";
 *   - the poller's registries config (its CA bundles come from LOCAL_HELM_CA_CONFIGMAP, the default).
 */
export function localHelmValues(
  info: Pick<LocalClusterInfo, 'apiServer' | 'registries'>,
  image: string,
): Record<string, unknown> {
  const { name, tag, digest } = splitImageReference(image);
  const env = [
    { name: 'KUBERNETES_SERVICE_HOST', value: '127.0.0.1' },
    { name: 'KUBERNETES_SERVICE_PORT', value: apiServerPort(info.apiServer) },
  ];
  return {
    image: { repository: name, ...(digest ? { digest } : { tag: tag ?? 'latest' }) },
    hostNetwork: true,
    podSecurity: { requireRestrictedNamespace: false },
    controller: { extraEnv: env, listenOnHostIP: true, strategy: { type: 'Recreate' } },
    poller: { extraEnv: env, registries: localRegistriesConfig(info) },
  };
}

/** Writes `dir/values-local.yaml` (localHelmValues) and returns its path, for `helm install -f`. */
export async function writeLocalHelmValues(
  dir: string,
  info: Pick<LocalClusterInfo, 'apiServer' | 'registries'>,
  image: string,
): Promise<string> {
  const file = join(dir, 'values-local.yaml');
  await writeFile(file, stringify(localHelmValues(info, image)));
  return file;
}
