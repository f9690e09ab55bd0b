/**
 * Kubewatcher installed into a local environment's real node as a user installs it: a kustomization on
 * top of manifests/overlays/local that sets what only the running environment knows: the image pushed
 * by scripts/build-image (`REF@sha256:…`), the API server's port, and the poller's registries config
 * (the environment's plain-HTTP registries and token server, the basic-auth registry's CA). Apply the
 * folder with `kubectl apply --server-side -k DIR`.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { LocalClusterInfo } from './cluster-info.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const LOCAL_OVERLAY = 'manifests/overlays/local';
/** The image manifests/overlays/local names (a placeholder, replaced here). */
export const LOCAL_OVERLAY_IMAGE = '127.0.0.1:5000/kubewatcher/kubewatcher';
/** Where the poller finds the CA files (the projected volume `registry-cas` of the CronJob). */
const CA_DIR = '/etc/kubewatcher/ca';

export interface ImageReference {
  name: string;
  tag?: string;
  digest?: string;
}

/** Splits `host/repo[:tag][@sha256:…]` (what scripts/build-image prints) for kustomize's `images`. */
export function splitImageReference(reference: string): ImageReference {
  const [named, digest, extra] = reference.split('@');
  if (!named || extra !== undefined)
    throw new Error(`image "${reference}": expected host/repository[:tag][@sha256:…]`);
  if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest)) {
    throw new Error(`image "${reference}": digest "${digest}" is not sha256:<64 hex digits>`);
  }
  const slash = named.lastIndexOf('/');
  const colon = named.lastIndexOf(':');
  const tag = colon > slash ? named.slice(colon + 1) : undefined;
  const name = colon > slash ? named.slice(0, colon) : named;
  if (slash === -1 || name === '')
    throw new Error(`image "${reference}": name a registry host and repository`);
  return { name, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

/** The API server's port, from its URL; the pods reach it on 127.0.0.1, so it must be a loopback one. */
export function apiServerPort(apiServer: string): string {
  const url = new URL(apiServer);
  if (url.hostname !== '127.0.0.1') {
    throw new Error(`apiServer ${apiServer}: the local overlay reaches the API server on 127.0.0.1 only`);
  }
  return url.port || '443';
}

/** The poller's registries config for the environment's three registries and the token server. */
export function localRegistriesConfig(info: Pick<LocalClusterInfo, 'registries'>): Record<string, object> {
  const { open, basic, token } = info.registries;
  return {
    [open.host]: { plainHttp: true },
    // Its token service named as its realm, so the poller may use the challenge it remembers.
    [token.host]: { plainHttp: true, realmHosts: [new URL(token.tokenRealm).host] },
    // The token server's realm: credentials go there too, over plain HTTP only when allowed by name.
    [new URL(token.tokenRealm).host]: { plainHttp: true },
    [basic.host]: basic.caFile ? { caFile: `${CA_DIR}/basic-registry-ca.crt` } : {},
  };
}

/**
 * Writes `dir/kustomization.yaml` (and the CA file it loads) that installs Kubewatcher from `image` into
 * the environment `info` describes; returns `dir`.
 */
export async function writeLocalKustomization(
  dir: string,
  info: Pick<LocalClusterInfo, 'apiServer' | 'registries'>,
  image: string,
  root: string = repoRoot,
): Promise<string> {
  const { name, tag, digest } = splitImageReference(image);
  const port = apiServerPort(info.apiServer);
  await mkdir(dir, { recursive: true });
  const env = [{ name: 'KUBERNETES_SERVICE_PORT', value: port }];
  const files: string[] = [];
  if (info.registries.basic.caFile) {
    await copyFile(info.registries.basic.caFile, join(dir, 'basic-registry-ca.crt'));
    files.push('basic-registry-ca.crt');
  }
  await writeFile(join(dir, 'registries.yaml'), stringify(localRegistriesConfig(info)));
  const kustomization = {
    apiVersion: 'kustomize.config.k8s.io/v1beta1',
    kind: 'Kustomization',
    // The base's namespace, for the ConfigMaps generated here.
    namespace: 'kubewatcher-system',
    resources: [relative(dir, join(root, LOCAL_OVERLAY))],
    images: [
      { name: LOCAL_OVERLAY_IMAGE, newName: name, ...(digest ? { digest } : { newTag: tag ?? 'latest' }) },
    ],
    // The names the base's volumes expect, without a content hash (the CronJob names them as they are).
    generatorOptions: { disableNameSuffixHash: true },
    configMapGenerator: [
      { name: 'kubewatcher-poller-registries', behavior: 'replace', files: ['registries.yaml'] },
      ...(files.length > 0 ? [{ name: 'kubewatcher-registry-cas', files }] : []),
    ],
    patches: [
      {
        target: { kind: 'Deployment', name: 'kubewatcher-controller' },
        patch: stringify({
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name: 'kubewatcher-controller' },
          spec: { template: { spec: { containers: [{ name: 'controller', env }] } } },
        }),
      },
      {
        target: { kind: 'CronJob', name: 'kubewatcher-poller' },
        patch: stringify({
          apiVersion: 'batch/v1',
          kind: 'CronJob',
          metadata: { name: 'kubewatcher-poller' },
          spec: { jobTemplate: { spec: { template: { spec: { containers: [{ name: 'poller', env }] } } } } },
        }),
      },
    ],
  };
  await writeFile(join(dir, 'kustomization.yaml'), stringify(kustomization));
  return dir;
}
