// End to end: the README's demo flow on a private control plane and registry, checked step by step.
// No WatchedImage is written by hand: labelling the namespace is the only configuration.
// The controller and the poller run as separate processes under their own service-account tokens, so
// this also proves the shipped RBAC is enough for the whole job.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { type DemoResult, runDemo, stopDemoController } from '../scripts/lib/demo.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('..', import.meta.url));

describe('the demo, end to end', () => {
  const info = inject('localCluster');
  const workDir = mkdtempSync(join(tmpdir(), 'kubewatcher-e2e-'));
  const said: string[] = [];
  const shown: string[] = [];
  let result: DemoResult;

  const kubectl = async (...args: string[]) =>
    (await run(join(info.binDir, 'kubectl'), ['--kubeconfig', info.kubeconfig, ...args])).stdout.trim();
  const json = async (...args: string[]) => JSON.parse(await kubectl(...args, '-o', 'json'));

  beforeAll(async () => {
    // Collected for the checks, and on the console, which vitest prints only when a test fails.
    const narrate = (into: string[]) => (text: string) => {
      into.push(text);
      console.log(text);
    };
    result = await runDemo({ info, repoRoot, workDir, say: narrate(said), show: narrate(shown) });
  }, 300_000);

  afterAll(async () => {
    await stopDemoController(workDir);
    rmSync(workDir, { recursive: true, force: true });
  });

  it('narrates every step in plain words', () => {
    const steps = said.filter((l) => /^\d+\. /.test(l)).map((l) => Number(l.split('.')[0]));
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });

  it('installed the CRDs and the service accounts', async () => {
    expect(await kubectl('get', 'crd', 'watchedimages.kubewatcher.io', '-o', 'name')).toBe(
      'customresourcedefinition.apiextensions.k8s.io/watchedimages.kubewatcher.io',
    );
    const sas = await kubectl('-n', 'kubewatcher-system', 'get', 'sa', '-o', 'name');
    expect(sas).toContain('serviceaccount/kubewatcher-controller');
    expect(sas).toContain('serviceaccount/kubewatcher-poller');
  });

  it('recorded the re-pushed digest as the new baseline', async () => {
    expect(result.secondDigest).not.toBe(result.firstDigest);
    // No WatchedImage was written: the namespace label made the controller generate one.
    const list = await json('-n', 'demo', 'get', 'wi');
    expect(list.items.map((w: { metadata: { name: string } }) => w.metadata.name)).toEqual([
      result.watchedImage,
    ]);
    const wi = list.items[0];
    expect(wi.metadata.labels['app.kubernetes.io/managed-by']).toBe('kubewatcher');
    expect(wi.spec).toMatchObject({ image: result.image, interval: '1m', updatePolicy: 'Auto' });
    expect(wi.status.digest).toBe(result.secondDigest);
    expect(wi.status.workloadCount).toBe(1);
    expect(wi.status.conditions.find((c: { type: string }) => c.type === 'Ready')).toMatchObject({
      status: 'True',
    });
    expect(wi.status.conditions.find((c: { type: string }) => c.type === 'Resolved')).toMatchObject({
      status: 'True',
    });
  });

  it('created exactly one ImageUpdate, from the first digest to the second, and it Succeeded', async () => {
    const list = await json('-n', 'demo', 'get', 'iu');
    expect(list.items).toHaveLength(1);
    const iu = list.items[0];
    expect(iu.metadata.name).toBe(result.imageUpdate);
    expect(iu.spec).toMatchObject({
      watchedImage: result.watchedImage,
      fromDigest: result.firstDigest,
      toDigest: result.secondDigest,
    });
    expect(iu.status.phase).toBe('Succeeded');
    expect(iu.status.workloads).toEqual([
      expect.objectContaining({
        kind: 'Deployment',
        name: 'web',
        container: 'web',
        state: 'RolledOut',
        newImage: `${result.image}@${result.secondDigest}`,
      }),
    ]);
  });

  it('pinned the Deployment to the new digest, once, and the rollout completed', async () => {
    const d = await json('-n', 'demo', 'get', 'deployment', 'web', '--show-managed-fields');
    expect(d.spec.template.spec.containers[0].image).toBe(`${result.image}@${result.secondDigest}`);
    expect(d.metadata.annotations['kubewatcher.io/image-update']).toBe(result.imageUpdate);
    // generation 1 at creation, 2 after the single patch
    expect(d.metadata.generation).toBe(2);
    expect(d.status.updatedReplicas).toBe(2);
    expect(d.status.availableReplicas).toBe(2);
    const managers = d.metadata.managedFields.map((m: { manager: string }) => m.manager);
    expect(managers).toContain('kubewatcher-controller');
  });

  it('shows the outcome in kubectl get wi,iu', () => {
    const table = shown.find((s) => s.startsWith('$ kubectl -n demo get wi,iu'));
    expect(table).toMatch(
      /imageupdate\.kubewatcher\.io\/web-stable-[0-9a-f]{8}-[0-9a-f]{10}\s+\S+\s+[0-9a-f]{12}\s+[0-9a-f]{12}\s+Succeeded\s+1\/1/,
    );
  });

  it('recorded Events on the ImageUpdate and the Deployment', async () => {
    const events = await json('-n', 'demo', 'get', 'events');
    const reasons = events.items.map(
      (e: { involvedObject: { kind: string }; reason: string }) => `${e.involvedObject.kind}/${e.reason}`,
    );
    expect(reasons).toEqual(
      expect.arrayContaining([
        'ImageUpdate/Succeeded',
        'Deployment/ImagePinned',
        'Deployment/RolloutSucceeded',
      ]),
    );
  });
});
