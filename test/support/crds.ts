/**
 * Installs Kubewatcher's CRDs (`crds/*.yaml`) into a local environment the way an admin would
 * (`kubectl apply --server-side`) and waits until both kinds are served, so integration tests can
 * create WatchedImages and ImageUpdates in their `beforeAll`. Applying is idempotent: every test file
 * may call it.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CustomObjectsApi } from '@kubernetes/client-node';
import {
  GROUP,
  IMAGE_UPDATE,
  loadKubeConfig,
  VERSION,
  WATCHED_IMAGE,
} from '../../packages/shared/src/index.ts';
import type { LocalClusterInfo } from '../../scripts/lib/cluster-info.ts';

const run = promisify(execFile);
export const CRDS_DIR = fileURLToPath(new URL('../../crds/', import.meta.url));

export async function installCrds(
  info: Pick<LocalClusterInfo, 'binDir' | 'kubeconfig'>,
  fieldManager = 'kubewatcher-tests',
): Promise<void> {
  const kubectl = (...args: string[]) =>
    run(join(info.binDir, 'kubectl'), ['--kubeconfig', info.kubeconfig, ...args]);
  await kubectl(
    'apply',
    '--server-side',
    '--force-conflicts',
    `--field-manager=${fieldManager}`,
    '-f',
    CRDS_DIR,
  );
  // Both kinds list once their CRDs are Established and the endpoints serve. No `kubectl wait
  // --for=condition=Established`: it fails at once ("accessor error: <nil>") when it reads a CRD whose
  // status has no conditions yet, which happens right after the apply.
  const custom = loadKubeConfig(info.kubeconfig).makeApiClient(CustomObjectsApi);
  const deadline = Date.now() + 60_000;
  for (const plural of [WATCHED_IMAGE.plural, IMAGE_UPDATE.plural]) {
    for (;;) {
      try {
        await custom.listClusterCustomObject({ group: GROUP, version: VERSION, plural, limit: 1 });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await delay(200);
      }
    }
  }
}
