/**
 * The generated CRDs against a real kube-apiserver: they install and become Established, defaults
 * and printer columns work, bad specs are rejected at admission with the field named (and the
 * client-side validators reject the same specs at the same field), ImageUpdate specs are immutable
 * except `approved`, and the status subresource is separate from the spec.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  PatchStrategy,
  setHeaderOptions,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { LocalClusterInfo } from '../../../scripts/lib/cluster-info.ts';
import {
  CONDITION_TYPE,
  FIELD_MANAGER,
  GROUP,
  IMAGE_UPDATE,
  type ImageUpdate,
  READY_REASON,
  RESOLVED_REASON,
  RULES_NOT_CHECKED,
  setCondition,
  shortDigest,
  VERSION,
  validateImageUpdate,
  validateWatchedImage,
  WATCHED_IMAGE,
  type WatchedImage,
} from '../src/index.ts';
import { loadKubeConfig } from '../src/kube.ts';

const run = promisify(execFile);
const crdsDir = fileURLToPath(new URL('../../../crds/', import.meta.url));
const API_VERSION = `${GROUP}/${VERSION}`;
const DIGEST_A = `sha256:${'a1'.repeat(32)}`;
const DIGEST_B = `sha256:${'b2'.repeat(32)}`;
const DIGEST_C = `sha256:${'c3'.repeat(32)}`;

let cluster: LocalClusterInfo;
let kc: KubeConfig;
let customObjects: CustomObjectsApi;
let namespace: string;

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run(`${cluster.binDir}/kubectl`, ['--kubeconfig', cluster.kubeconfig, ...args], {
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

/** The API server's message for a rejected request (Status.message). */
function statusMessage(error: unknown): string {
  if (!(error instanceof ApiException)) throw error;
  const body: unknown = typeof error.body === 'string' ? JSON.parse(error.body) : error.body;
  return (body as { message?: string }).message ?? String(error.body);
}

/** The status code and message of a request expected to fail. */
async function rejection(request: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await request;
  } catch (error) {
    return { code: (error as ApiException<unknown>).code, message: statusMessage(error) };
  }
  throw new Error('expected the API server to reject the request');
}

async function eventually(attempt: () => Promise<unknown>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await attempt();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

function watchedImage(name: string, spec: Record<string, unknown>): WatchedImage {
  return {
    apiVersion: API_VERSION,
    kind: WATCHED_IMAGE.kind,
    metadata: { name, namespace },
    spec,
  } as WatchedImage;
}

function imageUpdate(name: string, spec: Record<string, unknown>): ImageUpdate {
  return {
    apiVersion: API_VERSION,
    kind: IMAGE_UPDATE.kind,
    metadata: { name, namespace },
    spec,
  } as ImageUpdate;
}

const wi = { group: GROUP, version: VERSION, plural: WATCHED_IMAGE.plural };
const iu = { group: GROUP, version: VERSION, plural: IMAGE_UPDATE.plural };
const serverSideApply = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

beforeAll(async () => {
  cluster = inject('localCluster');
  kc = loadKubeConfig(cluster.kubeconfig);
  customObjects = kc.makeApiClient(CustomObjectsApi);
  await kubectl(
    'apply',
    '--server-side',
    '--force-conflicts',
    '--field-manager=kubewatcher-crds-test',
    '-f',
    crdsDir,
  );
  await kubectl(
    'wait',
    '--for=condition=Established',
    '--timeout=60s',
    `crd/${WATCHED_IMAGE.plural}.${GROUP}`,
    `crd/${IMAGE_UPDATE.plural}.${GROUP}`,
  );
  // Established can come a moment before the new endpoints serve; wait until both list.
  for (const resource of [wi, iu]) {
    await eventually(() => customObjects.listNamespacedCustomObject({ ...resource, namespace: 'default' }));
  }
  namespace = `crds-test-${randomBytes(4).toString('hex')}`;
  await kc.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: namespace } } });
});

afterAll(async () => {
  // Without a namespace controller the namespace only goes Terminating; the environment is private anyway.
  if (namespace) await kubectl('delete', 'namespace', namespace, '--wait=false').catch(() => undefined);
});

describe('WatchedImage CRD', () => {
  it('applies the schema defaults, the same ones the client-side validator applies', async () => {
    const created = (await customObjects.createNamespacedCustomObject({
      ...wi,
      namespace,
      body: watchedImage('defaults', { image: 'nginx:1.27' }),
    })) as WatchedImage;
    expect(created.spec).toEqual({
      image: 'nginx:1.27',
      kinds: ['Deployment'],
      updatePolicy: 'Auto',
      interval: '5m',
      suspend: false,
      historyLimit: 10,
      rollback: 'Never',
    });
    const local = validateWatchedImage(watchedImage('defaults', { image: 'nginx:1.27' }));
    expect(local.ok && local.value.spec).toEqual(created.spec);
    expect(validateWatchedImage(created).ok).toBe(true);
  });

  it('accepts a full spec', async () => {
    const spec = {
      image: 'ghcr.io/acme/web:stable',
      workloadSelector: {
        matchLabels: { 'app.kubernetes.io/name': 'web' },
        matchExpressions: [
          { key: 'tier', operator: 'In', values: ['frontend', 'edge'] },
          { key: 'canary', operator: 'DoesNotExist' },
        ],
      },
      kinds: ['Deployment', 'StatefulSet', 'DaemonSet', 'CronJob'],
      containers: ['web', 'sidecar-1'],
      updatePolicy: 'Manual',
      interval: '1h30m',
      pullSecrets: [{ name: 'ghcr-credentials' }],
      suspend: true,
      historyLimit: 100,
      updateWindows: [
        { days: ['Mon', 'Fri'], start: '22:00', end: '06:00', timeZone: 'Europe/Berlin' },
        { start: '00:00', end: '24:00', timeZone: 'UTC' },
      ],
      minimumAge: '1h',
      rollback: 'OnFailure',
    };
    expect(validateWatchedImage(watchedImage('full', spec))).toMatchObject({ ok: true });
    const created = (await customObjects.createNamespacedCustomObject({
      ...wi,
      namespace,
      body: watchedImage('full', spec),
    })) as WatchedImage;
    expect(created.spec).toEqual(spec);
  });

  // Each spec is wrong in one way. `path` must be named in the API server's message and start one of
  // the client-side validator's errors; `says`, when given, must appear in both.
  const tooLongName = `registry.example.com/${'a'.repeat(240)}`;
  const invalidSpecs: { case: string; spec: Record<string, unknown>; path: string; says?: string }[] = [
    { case: 'missing image', spec: {}, path: 'spec.image', says: 'Required value' },
    { case: 'empty image', spec: { image: '' }, path: 'spec.image' },
    { case: 'invalid reference', spec: { image: 'nginx:' }, path: 'spec.image' },
    { case: 'uppercase repository', spec: { image: 'Nginx:1.27' }, path: 'spec.image' },
    { case: 'space in reference', spec: { image: 'my image' }, path: 'spec.image' },
    {
      case: 'digest instead of a tag',
      spec: { image: `nginx@${DIGEST_A}` },
      path: 'spec.image',
      says: 'must not contain a digest',
    },
    {
      case: 'tag and digest',
      spec: { image: `nginx:1.27@${DIGEST_A}` },
      path: 'spec.image',
      says: 'must not contain a digest',
    },
    {
      case: 'repository name longer than 255',
      spec: { image: `${tooLongName}:v1` },
      path: 'spec.image',
      says: 'must not be more than 255 characters',
    },
    {
      case: 'interval 30s',
      spec: { image: 'nginx', interval: '30s' },
      path: 'spec.interval',
      says: 'at least 1m',
    },
    {
      case: 'interval 59.9s',
      spec: { image: 'nginx', interval: '59.9s' },
      path: 'spec.interval',
      says: 'at least 1m',
    },
    { case: 'interval "5 minutes"', spec: { image: 'nginx', interval: '5 minutes' }, path: 'spec.interval' },
    { case: 'interval without unit', spec: { image: 'nginx', interval: '300' }, path: 'spec.interval' },
    {
      case: 'unknown kind',
      spec: { image: 'nginx', kinds: ['Pod'] },
      path: 'spec.kinds[0]',
      says: 'Unsupported value',
    },
    { case: 'no kinds', spec: { image: 'nginx', kinds: [] }, path: 'spec.kinds' },
    {
      case: 'duplicate kinds',
      spec: { image: 'nginx', kinds: ['Deployment', 'Deployment'] },
      path: 'spec.kinds[1]',
      says: 'Duplicate value',
    },
    {
      case: 'an update window start that is not a time',
      spec: { image: 'nginx', updateWindows: [{ start: '25:00', end: '06:00' }] },
      path: 'spec.updateWindows[0].start',
      says: 'must be a time of day HH:MM',
    },
    {
      case: 'an update window without an end',
      spec: { image: 'nginx', updateWindows: [{ start: '22:00' }] },
      path: 'spec.updateWindows[0].end',
      says: 'Required value',
    },
    {
      case: 'an offset as time zone',
      spec: { image: 'nginx', updateWindows: [{ start: '22:00', end: '06:00', timeZone: '+01:00' }] },
      path: 'spec.updateWindows[0].timeZone',
      says: 'must be an IANA time zone name',
    },
    {
      case: 'a day that is not a weekday',
      spec: { image: 'nginx', updateWindows: [{ days: ['Someday'], start: '22:00', end: '06:00' }] },
      path: 'spec.updateWindows[0].days[0]',
      says: 'Unsupported value',
    },
    { case: 'minimumAge "1 hour"', spec: { image: 'nginx', minimumAge: '1 hour' }, path: 'spec.minimumAge' },
    {
      case: 'unknown rollback',
      spec: { image: 'nginx', rollback: 'Always' },
      path: 'spec.rollback',
      says: 'Unsupported value',
    },
    {
      case: 'unknown policy',
      spec: { image: 'nginx', updatePolicy: 'Sometimes' },
      path: 'spec.updatePolicy',
      says: 'Unsupported value',
    },
    { case: 'historyLimit 0', spec: { image: 'nginx', historyLimit: 0 }, path: 'spec.historyLimit' },
    { case: 'historyLimit 101', spec: { image: 'nginx', historyLimit: 101 }, path: 'spec.historyLimit' },
    {
      case: 'historyLimit as a string',
      spec: { image: 'nginx', historyLimit: '10' },
      path: 'spec.historyLimit',
    },
    { case: 'suspend as a string', spec: { image: 'nginx', suspend: 'yes' }, path: 'spec.suspend' },
    {
      case: 'bad selector operator',
      spec: {
        image: 'nginx',
        workloadSelector: { matchExpressions: [{ key: 'app', operator: 'Equals', values: ['x'] }] },
      },
      path: 'spec.workloadSelector.matchExpressions[0].operator',
      says: 'Unsupported value',
    },
    {
      case: 'In with no values',
      spec: { image: 'nginx', workloadSelector: { matchExpressions: [{ key: 'app', operator: 'In' }] } },
      path: 'spec.workloadSelector.matchExpressions[0].values',
      says: 'must not be empty when operator is In or NotIn',
    },
    {
      case: 'NotIn with empty values',
      spec: {
        image: 'nginx',
        workloadSelector: { matchExpressions: [{ key: 'app', operator: 'NotIn', values: [] }] },
      },
      path: 'spec.workloadSelector.matchExpressions[0].values',
      says: 'must not be empty',
    },
    {
      case: 'Exists with values',
      spec: {
        image: 'nginx',
        workloadSelector: { matchExpressions: [{ key: 'app', operator: 'Exists', values: ['web'] }] },
      },
      path: 'spec.workloadSelector.matchExpressions[0].values',
      says: 'must be empty when operator is Exists or DoesNotExist',
    },
    {
      case: 'selector expression without key',
      spec: { image: 'nginx', workloadSelector: { matchExpressions: [{ operator: 'Exists' }] } },
      path: 'spec.workloadSelector.matchExpressions[0].key',
      says: 'Required value',
    },
    {
      case: 'invalid label key in an expression',
      spec: {
        image: 'nginx',
        workloadSelector: { matchExpressions: [{ key: 'bad key', operator: 'Exists' }] },
      },
      path: 'spec.workloadSelector.matchExpressions[0].key',
    },
    {
      case: 'invalid label key in matchLabels',
      spec: { image: 'nginx', workloadSelector: { matchLabels: { 'bad key': 'web' } } },
      path: 'spec.workloadSelector.matchLabels',
      says: 'keys must be valid label keys',
    },
    {
      case: 'invalid label value in matchLabels',
      spec: { image: 'nginx', workloadSelector: { matchLabels: { app: 'not a value' } } },
      path: 'spec.workloadSelector.matchLabels',
    },
    {
      case: 'invalid container name',
      spec: { image: 'nginx', containers: ['Web_1'] },
      path: 'spec.containers[0]',
    },
    {
      case: 'container name longer than 63',
      spec: { image: 'nginx', containers: ['c'.repeat(64)] },
      path: 'spec.containers[0]',
    },
    {
      case: 'duplicate container names',
      spec: { image: 'nginx', containers: ['web', 'web'] },
      path: 'spec.containers[1]',
      says: 'Duplicate value',
    },
    {
      case: 'pull secret without name',
      spec: { image: 'nginx', pullSecrets: [{}] },
      path: 'spec.pullSecrets[0].name',
      says: 'Required value',
    },
    {
      case: 'invalid pull secret name',
      spec: { image: 'nginx', pullSecrets: [{ name: 'My_Secret' }] },
      path: 'spec.pullSecrets[0].name',
    },
    {
      case: 'pull secret naming another namespace',
      spec: { image: 'nginx', pullSecrets: [{ name: 'kube-system/regcred' }] },
      path: 'spec.pullSecrets[0].name',
    },
    {
      case: 'pull secret name that climbs a path',
      spec: { image: 'nginx', pullSecrets: [{ name: '../kube-system/secrets/regcred' }] },
      path: 'spec.pullSecrets[0].name',
    },
    {
      case: 'duplicate pull secrets',
      spec: { image: 'nginx', pullSecrets: [{ name: 'regcred' }, { name: 'regcred' }] },
      path: 'spec.pullSecrets[1]',
      says: 'Duplicate value',
    },
  ];

  it.each(invalidSpecs)('rejects $case, naming $path', async ({ spec, path, says }) => {
    const name = `bad-${randomBytes(4).toString('hex')}`;
    const body = watchedImage(name, spec);
    const { code, message } = await rejection(
      customObjects.createNamespacedCustomObject({ ...wi, namespace, body }),
    );
    expect(code).toBe(422);
    expect(message).toContain(path);
    if (says) expect(message).toContain(says);

    const local = validateWatchedImage(body);
    expect(local.ok, `client-side validation accepted what the API server rejected: ${message}`).toBe(false);
    const errors = local.ok ? [] : local.errors;
    const named = errors.filter((error) => error.startsWith(path));
    expect(named, `client-side errors ${JSON.stringify(errors)} do not name ${path}`).not.toHaveLength(0);
    if (says) expect(named.join('\n')).toContain(says);
  });

  it('keeps no namespace on a pull secret: a Secret of another namespace cannot be named', async () => {
    const name = `ns-${randomBytes(4).toString('hex')}`;
    const body = watchedImage(name, {
      image: 'nginx',
      pullSecrets: [{ name: 'regcred', namespace: 'kube-system' } as { name: string }],
    });
    const strict = await rejection(
      customObjects.createNamespacedCustomObject({ ...wi, namespace, body, fieldValidation: 'Strict' }),
    );
    expect(strict.message).toContain('unknown field "spec.pullSecrets[0].namespace"');
    // Without strict validation (kubectl's --validate=false) the field is pruned, never stored.
    const stored = (await customObjects.createNamespacedCustomObject({ ...wi, namespace, body })) as {
      spec: { pullSecrets: object[] };
    };
    expect(stored.spec.pullSecrets).toEqual([{ name: 'regcred' }]);
  });

  it('rejects a WatchedImage without a spec', async () => {
    const body = {
      apiVersion: API_VERSION,
      kind: WATCHED_IMAGE.kind,
      metadata: { name: 'no-spec', namespace },
    };
    const { code, message } = await rejection(
      customObjects.createNamespacedCustomObject({ ...wi, namespace, body }),
    );
    expect(code).toBe(422);
    expect(message).toContain('spec: Required value');
    // As the API server does, the CEL rules are skipped (and that is said) when a required field is missing.
    expect(message).toContain(RULES_NOT_CHECKED);
    expect(validateWatchedImage(body)).toEqual({
      ok: false,
      errors: ['spec: Required value', RULES_NOT_CHECKED],
    });
  });

  it('keeps status apart from spec, with two server-side-apply writers sharing the conditions', async () => {
    const name = 'status';
    await customObjects.createNamespacedCustomObject({
      ...wi,
      namespace,
      body: watchedImage(name, { image: 'nginx' }),
    });
    const now = new Date();
    // The poller's fields, under its own field manager.
    await customObjects.patchNamespacedCustomObjectStatus(
      {
        ...wi,
        namespace,
        name,
        fieldManager: FIELD_MANAGER.poller,
        force: true,
        body: {
          apiVersion: API_VERSION,
          kind: WATCHED_IMAGE.kind,
          metadata: { name, namespace },
          status: {
            digest: DIGEST_A,
            shortDigest: shortDigest(DIGEST_A),
            lastCheckedTime: '2025-01-31T12:00:00Z',
            lastChangedTime: '2025-01-31T12:00:00Z',
            rateLimit: {
              limit: 100,
              remaining: 99,
              windowSeconds: 21600,
              observedTime: '2025-01-31T12:00:00Z',
            },
            conditions: setCondition(
              [],
              {
                type: CONDITION_TYPE.Resolved,
                status: 'True',
                reason: RESOLVED_REASON.Resolved,
                message: '',
              },
              now,
            ),
          },
        },
      },
      serverSideApply,
    );
    // The controller's fields, under its own field manager: the poller's condition must survive.
    await customObjects.patchNamespacedCustomObjectStatus(
      {
        ...wi,
        namespace,
        name,
        fieldManager: FIELD_MANAGER.controller,
        force: true,
        body: {
          apiVersion: API_VERSION,
          kind: WATCHED_IMAGE.kind,
          metadata: { name, namespace },
          status: {
            observedGeneration: 1,
            workloads: [
              { kind: 'Deployment', name: 'web', containers: ['web'] },
              { kind: 'StatefulSet', name: 'web', containers: ['web', 'init'] },
            ],
            workloadCount: 2,
            conditions: setCondition(
              [],
              {
                type: CONDITION_TYPE.Ready,
                status: 'True',
                reason: READY_REASON.WorkloadsFound,
                message: '2 workloads run nginx',
                observedGeneration: 1,
              },
              now,
            ),
          },
        },
      },
      serverSideApply,
    );
    const stored = (await customObjects.getNamespacedCustomObject({
      ...wi,
      namespace,
      name,
    })) as WatchedImage;
    expect(stored.status?.conditions?.map((condition) => condition.type).sort()).toEqual([
      'Ready',
      'Resolved',
    ]);
    expect(stored.status).toMatchObject({ digest: DIGEST_A, workloadCount: 2 });
    expect(stored.metadata.generation).toBe(1);
    expect(validateWatchedImage(stored)).toMatchObject({ ok: true });

    // Status sent to the main resource is ignored; spec sent to /status is ignored.
    await customObjects.patchNamespacedCustomObject(
      { ...wi, namespace, name, body: { status: { digest: DIGEST_B } } },
      mergePatch,
    );
    await customObjects.patchNamespacedCustomObjectStatus(
      {
        ...wi,
        namespace,
        name,
        body: { spec: { image: 'redis' }, status: { lastCheckedTime: '2025-01-31T12:05:00Z' } },
      },
      mergePatch,
    );
    const after = (await customObjects.getNamespacedCustomObject({ ...wi, namespace, name })) as WatchedImage;
    expect(after.status?.digest).toBe(DIGEST_A);
    expect(after.status?.lastCheckedTime).toBe('2025-01-31T12:05:00Z');
    expect(after.spec.image).toBe('nginx');
    expect(after.metadata.generation).toBe(1);

    // Status is validated too.
    const bad = await rejection(
      customObjects.patchNamespacedCustomObjectStatus(
        { ...wi, namespace, name, body: { status: { digest: 'sha256:nothex' } } },
        mergePatch,
      ),
    );
    expect(bad.code).toBe(422);
    expect(bad.message).toContain('status.digest');
  });

  it('shows the printer columns in kubectl get wi, and more with -o wide', async () => {
    const table = await kubectl('get', 'wi', '--namespace', namespace, 'status');
    const [header, row] = table.trimEnd().split('\n');
    expect(header!.split(/\s{2,}/)).toEqual([
      'NAME',
      'IMAGE',
      'DIGEST',
      'POLICY',
      'WORKLOADS',
      'READY',
      'LAST CHECKED',
      'AGE',
    ]);
    expect(row).toMatch(
      new RegExp(`^status\\s+nginx\\s+${shortDigest(DIGEST_A)}\\s+Auto\\s+2\\s+True\\s+\\S+\\s+\\S+$`),
    );

    const wide = await kubectl('get', 'wi', '--namespace', namespace, 'status', '-o', 'wide');
    const [wideHeader, wideRow] = wide.trimEnd().split('\n');
    expect(wideHeader!.split(/\s{2,}/).slice(-3)).toEqual(['REASON', 'RESOLVED', 'REFUSED']);
    expect(wideRow).toMatch(/WorkloadsFound\s+True$/);

    const byCategory = await kubectl('get', 'kubewatcher', '--namespace', namespace, '-o', 'name');
    expect(byCategory).toContain(`${WATCHED_IMAGE.singular}.${GROUP}/status`);
  });

  it('documents every field for kubectl explain', async () => {
    const explained = await kubectl('explain', 'wi.spec.interval');
    expect(explained).toContain('How often to check the registry');
    const spec = await kubectl('explain', 'wi.spec');
    for (const field of ['image', 'workloadSelector', 'kinds', 'containers', 'updatePolicy', 'interval']) {
      expect(spec).toMatch(new RegExp(`^\\s+${field}\\s+<`, 'm'));
    }
  });
});

describe('ImageUpdate CRD', () => {
  const spec = { watchedImage: 'web', image: 'nginx:1.27', fromDigest: DIGEST_A, toDigest: DIGEST_B };

  it('creates an ImageUpdate with approved defaulting to false', async () => {
    const created = (await customObjects.createNamespacedCustomObject({
      ...iu,
      namespace,
      body: imageUpdate('web-b2b2b2b2b2', spec),
    })) as ImageUpdate;
    expect(created.spec).toEqual({ ...spec, approved: false });
  });

  const invalidSpecs: { case: string; spec: Record<string, unknown>; path: string; says?: string }[] = [
    { case: 'missing toDigest', spec: { watchedImage: 'web', image: 'nginx' }, path: 'spec.toDigest' },
    { case: 'missing watchedImage', spec: { image: 'nginx', toDigest: DIGEST_B }, path: 'spec.watchedImage' },
    {
      case: 'toDigest not a sha256 digest',
      spec: { watchedImage: 'web', image: 'nginx', toDigest: 'sha256:ABC' },
      path: 'spec.toDigest',
    },
    {
      case: 'uppercase fromDigest',
      spec: { watchedImage: 'web', image: 'nginx', fromDigest: DIGEST_A.toUpperCase(), toDigest: DIGEST_B },
      path: 'spec.fromDigest',
    },
    {
      case: 'image with a digest',
      spec: { watchedImage: 'web', image: `nginx@${DIGEST_B}`, toDigest: DIGEST_B },
      path: 'spec.image',
      says: 'must not contain a digest',
    },
    {
      case: 'invalid watchedImage name',
      spec: { watchedImage: 'Web', image: 'nginx', toDigest: DIGEST_B },
      path: 'spec.watchedImage',
    },
  ];

  it.each(invalidSpecs)('rejects $case, naming $path', async ({ spec: bad, path, says }) => {
    const body = imageUpdate(`bad-${randomBytes(4).toString('hex')}`, bad);
    const { code, message } = await rejection(
      customObjects.createNamespacedCustomObject({ ...iu, namespace, body }),
    );
    expect(code).toBe(422);
    expect(message).toContain(path);
    if (says) expect(message).toContain(says);
    const local = validateImageUpdate(body);
    expect(local.ok).toBe(false);
    expect(local.ok ? [] : local.errors.filter((error) => error.startsWith(path))).not.toHaveLength(0);
  });

  const changes: { case: string; change: Record<string, unknown>; path: string; says: string }[] = [
    { case: 'toDigest', change: { toDigest: DIGEST_C }, path: 'spec.toDigest', says: 'is immutable' },
    { case: 'fromDigest', change: { fromDigest: DIGEST_C }, path: 'spec.fromDigest', says: 'is immutable' },
    { case: 'image', change: { image: 'nginx:1.28' }, path: 'spec.image', says: 'is immutable' },
    {
      case: 'watchedImage',
      change: { watchedImage: 'other' },
      path: 'spec.watchedImage',
      says: 'is immutable',
    },
    {
      case: 'fromDigest removed',
      change: { fromDigest: null },
      path: 'spec.fromDigest',
      says: 'is immutable: it cannot be added or removed after creation',
    },
  ];

  it.each(changes)('refuses to change $case after creation', async ({ change, path, says }) => {
    const name = 'web-b2b2b2b2b2';
    const stored = (await customObjects.getNamespacedCustomObject({ ...iu, namespace, name })) as ImageUpdate;
    const { code, message } = await rejection(
      customObjects.patchNamespacedCustomObject(
        { ...iu, namespace, name, body: { spec: change } },
        mergePatch,
      ),
    );
    expect(code).toBe(422);
    expect(message).toContain(`${path}: Invalid value`);
    expect(message).toContain(says);

    // The client-side twin of the transition rules, given the stored object, agrees.
    const changed = structuredClone(stored);
    const changedSpec = changed.spec as Record<string, unknown>;
    for (const [key, value] of Object.entries(change)) {
      if (value === null) delete changedSpec[key];
      else changedSpec[key] = value;
    }
    const local = validateImageUpdate(changed, stored);
    expect(local.ok ? [] : local.errors).toContain(`${path}: ${says}`);
    expect(validateImageUpdate(changed)).toMatchObject({ ok: true });
  });

  it('refuses to add fromDigest after creation', async () => {
    const name = 'no-from-c3c3c3c3c3';
    await customObjects.createNamespacedCustomObject({
      ...iu,
      namespace,
      body: imageUpdate(name, { watchedImage: 'web', image: 'nginx', toDigest: DIGEST_C }),
    });
    const { code, message } = await rejection(
      customObjects.patchNamespacedCustomObject(
        { ...iu, namespace, name, body: { spec: { fromDigest: DIGEST_A } } },
        mergePatch,
      ),
    );
    expect(code).toBe(422);
    expect(message).toContain('spec.fromDigest');
    expect(message).toContain('cannot be added or removed');
  });

  it('lets approved change, and the status subresource carry the outcome', async () => {
    const name = 'web-b2b2b2b2b2';
    const approved = (await customObjects.patchNamespacedCustomObject(
      { ...iu, namespace, name, body: { spec: { approved: true } } },
      mergePatch,
    )) as ImageUpdate;
    expect(approved.spec.approved).toBe(true);
    expect(approved.metadata.generation).toBe(2);

    const stored = (await customObjects.getNamespacedCustomObject({ ...iu, namespace, name })) as ImageUpdate;
    const revoked = structuredClone(stored);
    revoked.spec.approved = false;
    expect(validateImageUpdate(revoked, stored)).toMatchObject({ ok: true });

    await customObjects.patchNamespacedCustomObjectStatus(
      {
        ...iu,
        namespace,
        name,
        fieldManager: FIELD_MANAGER.controller,
        force: true,
        body: {
          apiVersion: API_VERSION,
          kind: IMAGE_UPDATE.kind,
          metadata: { name, namespace },
          status: {
            observedGeneration: 2,
            phase: 'RollingOut',
            from: shortDigest(DIGEST_A),
            to: shortDigest(DIGEST_B),
            progress: '1/2',
            appliedTime: '2025-01-31T12:00:00Z',
            workloads: [
              {
                kind: 'Deployment',
                name: 'web',
                container: 'web',
                previousImage: `nginx:1.27@${DIGEST_A}`,
                newImage: `nginx:1.27@${DIGEST_B}`,
                state: 'RolledOut',
              },
              {
                kind: 'Deployment',
                name: 'api',
                container: 'web',
                previousImage: 'nginx:1.27',
                newImage: `nginx:1.27@${DIGEST_B}`,
                state: 'Patched',
              },
            ],
          },
        },
      },
      serverSideApply,
    );
    const table = await kubectl('get', 'iu', '--namespace', namespace, name, '-o', 'wide');
    const [header, row] = table.trimEnd().split('\n');
    expect(header!.split(/\s{2,}/)).toEqual([
      'NAME',
      'IMAGE',
      'FROM',
      'TO',
      'PHASE',
      'WORKLOADS',
      'STARTS',
      'AGE',
      'WATCHED',
      'APPROVED',
    ]);
    expect(row).toMatch(
      new RegExp(
        `^${name}\\s+nginx:1.27\\s+${shortDigest(DIGEST_A)}\\s+${shortDigest(DIGEST_B)}\\s+RollingOut\\s+1/2\\s+\\S+\\s+web\\s+true$`,
      ),
    );
    const updated = (await customObjects.getNamespacedCustomObject({
      ...iu,
      namespace,
      name,
    })) as ImageUpdate;
    expect(validateImageUpdate(updated, stored)).toMatchObject({ ok: true });

    const badPhase = await rejection(
      customObjects.patchNamespacedCustomObjectStatus(
        {
          ...iu,
          namespace,
          name,
          body: { status: { phase: 'Done' } },
        },
        mergePatch,
      ),
    );
    expect(badPhase.code).toBe(422);
    expect(badPhase.message).toContain('status.phase');
  });

  it('selects ImageUpdates by spec.watchedImage with a field selector', async () => {
    const names = await kubectl(
      'get',
      'iu',
      '--namespace',
      namespace,
      '--field-selector',
      'spec.watchedImage=web',
      '-o',
      'name',
    );
    expect(names.trim().split('\n').sort()).toEqual([
      `${IMAGE_UPDATE.singular}.${GROUP}/no-from-c3c3c3c3c3`,
      `${IMAGE_UPDATE.singular}.${GROUP}/web-b2b2b2b2b2`,
    ]);
  });
});
