/**
 * What each controller integration file sets up the same way on the real local control plane: API
 * clients, the CRDs installed once, a namespace per test (all deleted when the file ends) and the
 * in-process controllers a test starts, stopped after it. Call it at the top of the file: it
 * registers the vitest hooks.
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { LocalClusterInfo } from '../../../scripts/lib/cluster-info.ts';
import {
  clientsFor,
  createNamespace,
  deleteNamespace,
  installCrds,
} from '../../../test/support/controller-fixtures.ts';
import { type RunningController, startController } from './controller-harness.ts';

export function useControllerTestBed(info: LocalClusterInfo) {
  const clients = clientsFor(info);
  const namespaces: string[] = [];
  const controllers: RunningController[] = [];
  beforeAll(async () => {
    await installCrds(info);
  });
  afterEach(async () => {
    for (const c of controllers.splice(0)) await c.stop();
  });
  afterAll(async () => {
    for (const ns of namespaces) await deleteNamespace(clients, ns);
  });
  return {
    clients,
    /** A fresh namespace named from `prefix`, deleted when the file ends. */
    async newNamespace(prefix: string): Promise<string> {
      const ns = await createNamespace(clients, prefix);
      namespaces.push(ns);
      return ns;
    },
    /** An in-process controller on the test's kubeconfig, stopped after the test. */
    async startController(opts: Parameters<typeof startController>[1] = {}): Promise<RunningController> {
      const c = await startController(clients.kc, opts);
      controllers.push(c);
      return c;
    },
  };
}
