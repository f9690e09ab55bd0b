/**
 * The controller run in the test process, against the real local control plane: a Controller with
 * its own prom-client Registry (read with `metric`), stopped gracefully by `stop`.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import { createLogger } from '@kubewatcher/shared';
import { Registry } from 'prom-client';
import { Controller, type ControllerOptions } from '../src/controller.ts';

/**
 * The in-process controller logs to the console like the real one. Vitest prints a test's console
 * output only when the test fails (vitest.config.ts), so expected errors (a stopped API server) stay
 * out of a passing run and explain a failing one. KUBEWATCHER_TEST_VERBOSE=1 adds debug lines.
 */
export const testLogger = createLogger({
  component: 'controller-test',
  level: process.env.KUBEWATCHER_TEST_VERBOSE === '1' ? 'debug' : 'info',
  format: 'json',
});

export interface RunningController {
  controller: Controller;
  registry: Registry;
  /** The sum of a metric's values whose labels include `labels` (0 when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  stop(): Promise<void>;
}

export async function startController(
  kubeConfig: KubeConfig,
  opts: Partial<Omit<ControllerOptions, 'kubeConfig' | 'registry'>> = {},
): Promise<RunningController> {
  const registry = new Registry();
  const controller = new Controller({
    kubeConfig,
    logger: testLogger,
    registry,
    metricsAddress: '127.0.0.1:0',
    concurrency: 2,
    ...opts,
  });
  const running = controller.run();
  let stopped = false;
  return {
    controller,
    registry,
    async metric(name, labels = {}) {
      const m = registry.getSingleMetric(name);
      if (!m) return 0;
      const { values } = await m.get();
      return values
        .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
        .reduce((sum, v) => sum + v.value, 0);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await controller.stop();
      await running;
    },
  };
}
