/**
 * The kwok room: one fake node whose pods turn Running without any container, for the scale tests and
 * the benchmarks (kwok does not schedule: kube-scheduler places the pods).
 */
import { join } from 'node:path';
import { type EnvironmentContext, inBin } from './context.ts';
import type { ControlPlane } from './control-plane.ts';
import { isNodeReady } from './node-status.ts';

export const KWOK_NODE_NAME = 'kwok-node-0';

function kwokNode(): object {
  const resources = { cpu: '32', memory: '256Gi', pods: '500' };
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: KWOK_NODE_NAME,
      annotations: { 'kwok.x-k8s.io/node': 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/arch': 'amd64',
        'kubernetes.io/hostname': KWOK_NODE_NAME,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/role': 'agent',
        'node-role.kubernetes.io/agent': '',
        type: 'kwok',
      },
    },
    spec: {},
    // Nodes may carry status on create (the kubelet registers that way); kwok keeps it up to date.
    status: {
      allocatable: resources,
      capacity: resources,
      nodeInfo: {
        architecture: 'amd64',
        operatingSystem: 'linux',
        kubeletVersion: 'fake',
        kubeProxyVersion: 'fake',
      },
      phase: 'Running',
    },
  };
}

export async function spawnKwok(ctx: EnvironmentContext, cp: ControlPlane): Promise<void> {
  await ctx.sup.spawn('kwok', inBin(ctx, 'kwok'), [
    `--kubeconfig=${cp.kubeconfig}`,
    // Written by build-binaries.sh from the same kwok version: node-initialize, heartbeat with lease, pod stages.
    `--config=${join(ctx.binDir, 'kwok-stages.yaml')}`,
    '--node-lease-duration-seconds=40',
    '--manage-all-nodes=false',
    '--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake',
    '--cidr=10.244.0.0/16',
    '--node-ip=10.240.0.1',
  ]);
}

/** Creates the fake node (once the apiserver is ready) and waits until kwok reports it Ready. */
export async function registerKwokNode(ctx: EnvironmentContext, cp: ControlPlane): Promise<void> {
  const created = await cp.kube('/api/v1/nodes', { method: 'POST', body: JSON.stringify(kwokNode()) });
  if (created.status !== 201 && created.status !== 409) {
    throw new Error(`creating node ${KWOK_NODE_NAME} failed: HTTP ${created.status} ${created.body}`);
  }
  await ctx.sup.waitFor(`node ${KWOK_NODE_NAME} to be Ready (kwok)`, ['kwok'], ctx.timeoutMs, async () =>
    isNodeReady(cp, KWOK_NODE_NAME),
  );
  ctx.log(`node ${KWOK_NODE_NAME} Ready (${ctx.since()})`);
}
