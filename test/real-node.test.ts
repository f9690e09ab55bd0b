/**
 * The real node: an environment of its own with containerd and a kubelet registers node 127.0.0.1,
 * runs a pod from an image pushed to the local registry (`kubectl logs` and `kubectl exec` through the
 * apiserver's kubelet client certificate), and its stop leaves no process, mount, cgroup or container.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadKubeConfig } from '../packages/shared/src/kube.ts';
import { pushBusyboxImage } from '../scripts/lib/images.ts';
import { pidsInCgroups, readHostState } from '../scripts/lib/local-cluster/real-node-host.ts';
import { type LocalCluster, readProcessRecords, startLocalCluster } from '../scripts/lib/local-cluster.ts';

const run = promisify(execFile);

/** Whether `pid` runs: a zombie (state Z) is gone for every purpose but its parent's wait. */
function isRunning(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
const { binDir } = inject('localCluster');

describe('real node', { timeout: 180_000 }, () => {
  let dir: string;
  let cluster: LocalCluster;
  let stopped = false;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kubewatcher-real-node-'));
    cluster = await startLocalCluster({ dir, binDir, realNode: true });
  }, 300_000);
  afterAll(async () => {
    if (!stopped) await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const kubectl = async (...args: string[]) =>
    (await run(join(binDir, 'kubectl'), [`--kubeconfig=${cluster.info.kubeconfig}`, ...args])).stdout;

  it('registers node 127.0.0.1 as Ready, with InternalIP 127.0.0.1 and containerd as its runtime', async () => {
    const node = cluster.info.realNode;
    expect(node?.name).toBe('127.0.0.1');
    expect(cluster.info.nodeName).toBe('127.0.0.1');
    const core = loadKubeConfig(cluster.info.kubeconfig).makeApiClient(CoreV1Api);
    const { items } = await core.listNode();
    expect(items.map((n) => n.metadata?.name)).toEqual(['127.0.0.1']);
    const [self] = items;
    expect(self?.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(self?.status?.addresses).toContainEqual({ type: 'InternalIP', address: '127.0.0.1' });
    expect(self?.status?.nodeInfo?.containerRuntimeVersion).toMatch(/^containerd:\/\//);
  });

  it('runs a pod from the local registry; kubectl logs and exec reach its container', async () => {
    const registry = cluster.info.realNode?.registries.open ?? '';
    expect(registry).toBe(cluster.info.registries.open.host);
    const image = await pushBusyboxImage({ info: cluster.info, repository: 'test/real-node', tag: 'v1' });
    await kubectl(
      'run',
      'app',
      `--image=${registry}/test/real-node:v1`,
      '--restart=Never',
      '--overrides={"spec":{"terminationGracePeriodSeconds":1}}',
    );
    await kubectl('wait', '--for=condition=Ready', 'pod/app', '--timeout=90s');
    const core = loadKubeConfig(cluster.info.kubeconfig).makeApiClient(CoreV1Api);
    const pod = await core.readNamespacedPod({ name: 'app', namespace: 'default' });
    expect(pod.spec?.nodeName).toBe('127.0.0.1');
    expect(pod.status?.containerStatuses?.[0]?.imageID).toBe(`${registry}/test/real-node@${image.digest}`);
    expect(pod.status?.podIP).toMatch(/^127\.100\./);
    await expect.poll(() => kubectl('logs', 'app'), { timeout: 30_000 }).toBe(image.content);
    expect(await kubectl('exec', 'app', '--', 'cat', '/kubewatcher/content')).toBe(image.content);
  });

  it('the kubelet refuses anonymous requests and the node identity is confined by the Node authorizer', async () => {
    const port = cluster.info.realNode?.kubeletPort;
    const status = await new Promise<number>((done, fail) => {
      https
        .get({ host: '127.0.0.1', port, path: '/pods', rejectUnauthorized: false }, (res) => {
          res.resume();
          done(res.statusCode ?? 0);
        })
        .on('error', fail);
    });
    expect(status).toBe(401);

    const nodeConfig = new KubeConfig();
    nodeConfig.loadFromFile(join(dir, 'node/kubelet.kubeconfig'));
    const asNode = nodeConfig.makeApiClient(CoreV1Api);
    await expect(asNode.listSecretForAllNamespaces()).rejects.toMatchObject({ code: 403 });
    expect((await asNode.readNode({ name: '127.0.0.1' })).metadata?.name).toBe('127.0.0.1');
  });

  it('stop leaves no process, no mount under the folder, no cgroup and no container', async () => {
    const state = await readHostState(join(dir, 'node/host-state.json'));
    expect(state?.cgroupDirs.length).toBeGreaterThan(0);
    const containerPids = pidsInCgroups(state?.cgroupDirs ?? []);
    expect(containerPids.length).toBeGreaterThanOrEqual(2); // the pause container and the app, at least
    const tasks = join(dir, 'node/containerd/state/io.containerd.runtime.v2.task/k8s.io');
    const shimPids = readdirSync(tasks)
      .map((id) => join(tasks, id, 'shim.pid'))
      .filter(existsSync)
      .map((f) => Number(readFileSync(f, 'utf8')));
    const componentPids = (await readProcessRecords(dir)).map((r) => r.pid);
    expect((await readProcessRecords(dir)).map((r) => r.name)).toEqual(
      expect.arrayContaining(['kubelet', 'containerd']),
    );
    const mountsUnderDir = () =>
      readFileSync('/proc/mounts', 'utf8')
        .split('\n')
        .map((line) => line.split(' ')[1] ?? '')
        .filter((point) => point === dir || point.startsWith(`${dir}/`));
    expect(mountsUnderDir().length).toBeGreaterThan(0);

    await cluster.stop();
    stopped = true;

    expect([...containerPids, ...shimPids, ...componentPids].filter(isRunning)).toEqual([]);
    expect(mountsUnderDir()).toEqual([]);
    expect((state?.cgroupDirs ?? []).filter(existsSync)).toEqual([]);
    // The fixed paths the kubelet, CNI and the shims write to, where they did not exist before.
    expect((state?.createdPaths ?? []).filter(existsSync)).toEqual([]);
    // runc's own record of containers, in the node's private runc root: none left.
    const runcList = await run('/usr/sbin/runc', ['--root', join(dir, 'node/runc/k8s.io'), 'list', '-q']);
    expect(runcList.stdout.trim()).toBe('');
    for (const [key, value] of Object.entries(state?.sysctls ?? {})) {
      expect(readFileSync(`/proc/sys/${key}`, 'utf8').trim(), key).toBe(value);
    }
  });
});

describe('real node whose owner is killed', { timeout: 180_000 }, () => {
  it("the watchdog stops the node's containers, unmounts and removes its cgroups", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kubewatcher-real-node-owner-'));
    try {
      const owner = spawn(
        process.execPath,
        [join(import.meta.dirname, 'support/real-node-owner.ts'), dir, binDir],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const exited = new Promise((done) => owner.once('exit', done));
      await new Promise<void>((done, fail) => {
        owner.stdout?.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('READY')) done();
        });
        owner.once('exit', (code) => fail(new Error(`the owner exited with code ${code} before READY`)));
      });
      const state = await readHostState(join(dir, 'node/host-state.json'));
      const records = await readProcessRecords(dir);
      expect(records.map((r) => r.name)).toEqual(expect.arrayContaining(['kubelet', 'containerd']));
      // The sandbox's mounts, at least: the kubelet's root bound onto itself.
      const mountsUnderDir = () =>
        readFileSync('/proc/mounts', 'utf8')
          .split('\n')
          .map((line) => line.split(' ')[1] ?? '')
          .filter((point) => point.startsWith(`${dir}/`));
      expect(mountsUnderDir().length).toBeGreaterThan(0);

      owner.kill('SIGKILL');
      await exited;
      // The watchdog writes its teardown's last line when it is done.
      await expect
        .poll(
          () =>
            existsSync(join(dir, 'logs/teardown.log')) &&
            readFileSync(join(dir, 'logs/teardown.log'), 'utf8'),
          {
            timeout: 60_000,
            interval: 200,
          },
        )
        .toMatch(/stopped /);
      expect(records.map((r) => r.pid).filter(isRunning)).toEqual([]);
      expect(mountsUnderDir()).toEqual([]);
      expect((state?.cgroupDirs ?? []).filter(existsSync)).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
