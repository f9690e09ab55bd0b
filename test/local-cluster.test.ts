/**
 * The local environment itself: the control plane turns a Deployment into Running, ready pods on the kwok
 * node, and each registry serves the digest crane pushed to the right credentials only.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { AppsV1Api, CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { loadKubeConfig } from '../packages/shared/src/kube.ts';
import type { RegistryEndpoint } from '../scripts/lib/cluster-info.ts';
import { pushTestImage } from '../scripts/lib/images.ts';

const info = inject('localCluster');

/**
 * One Accept header with the four manifest types, as the poller sends it
 * (packages/poller/src/registry/README.md).
 */
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
].join(', ');

describe('control plane', () => {
  const kc = loadKubeConfig(info.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const namespace = `local-cluster-${randomBytes(3).toString('hex')}`;
  const poll = { timeout: 60_000, interval: 200 };

  beforeAll(async () => {
    await core.createNamespace({ body: { metadata: { name: namespace } } });
  });
  afterAll(async () => {
    await core.deleteNamespace({ name: namespace });
  });

  it('rolls a Deployment out to Running, ready pods on the kwok node', async () => {
    const labels = { app: 'web' };
    await apps.createNamespacedDeployment({
      namespace,
      body: {
        metadata: { name: 'web' },
        spec: {
          replicas: 2,
          selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: { containers: [{ name: 'web', image: `${info.registries.open.host}/demo/web:v1` }] },
          },
        },
      },
    });

    await expect
      .poll(async () => {
        const { items } = await apps.listNamespacedReplicaSet({ namespace });
        return items.filter((rs) =>
          rs.metadata?.ownerReferences?.some((o) => o.kind === 'Deployment' && o.name === 'web'),
        ).length;
      }, poll)
      .toBe(1);
    await expect
      .poll(async () => {
        const { items } = await core.listNamespacedPod({ namespace, labelSelector: 'app=web' });
        return items
          .filter((p) => p.status?.phase === 'Running')
          .filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
          .map((p) => p.spec?.nodeName);
      }, poll)
      .toEqual(['kwok-node-0', 'kwok-node-0']);
    await expect
      .poll(
        async () =>
          (await apps.readNamespacedDeployment({ name: 'web', namespace })).status?.availableReplicas,
        poll,
      )
      .toBe(2);
  });
});

interface RegistryResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function registryRequest(
  endpoint: RegistryEndpoint,
  method: 'GET' | 'HEAD',
  url: string,
  headers: Record<string, string> = {},
): Promise<RegistryResponse> {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? https : http;
  const ca = endpoint.caFile ? readFileSync(endpoint.caFile) : undefined;
  return new Promise((resolve, reject) => {
    const req = client.request(target, { method, headers, ca, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

const basic = (username: string, password: string) =>
  `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;

/** Parameters of a `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` challenge. */
function bearerChallenge(header: string | undefined): Record<string, string> {
  expect(header).toMatch(/^Bearer /);
  return Object.fromEntries([...(header ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

/** The token dance: ask the challenge's realm for a token, anonymously or with Basic credentials. */
async function fetchToken(
  challenge: Record<string, string>,
  credentials?: { username: string; password: string },
) {
  const url = new URL(challenge.realm ?? '');
  url.searchParams.set('service', challenge.service ?? '');
  url.searchParams.set('scope', challenge.scope ?? '');
  const headers: Record<string, string> = credentials
    ? { authorization: basic(credentials.username, credentials.password) }
    : {};
  return fetch(url, { headers });
}

describe.each([
  { registry: 'open', multiArch: false, format: 'oci' },
  { registry: 'open', multiArch: true, format: 'docker' },
  { registry: 'basic', multiArch: false, format: 'docker' },
  { registry: 'basic', multiArch: true, format: 'oci' },
  { registry: 'token', multiArch: false, format: 'oci' },
  { registry: 'token', multiArch: true, format: 'docker' },
] as const)(
  'registry $registry, multiArch $multiArch, $format media types',
  ({ registry, multiArch, format }) => {
    const endpoint = info.registries[registry];
    const repository = `kubewatcher/test-${registry}-${format}`;
    const tag = multiArch ? 'multi' : 'single';
    let pushed: Awaited<ReturnType<typeof pushTestImage>>;
    let manifestUrl: string;
    /** Authorization header that gets a pull through, per registry. */
    let authorization: Record<string, string> = {};

    beforeAll(async () => {
      pushed = await pushTestImage({ info, registry, repository, tag, multiArch, format });
      manifestUrl = `${endpoint.url}/v2/${repository}/manifests/${tag}`;
      if (registry === 'basic') {
        authorization = { authorization: basic(endpoint.username ?? '', endpoint.password ?? '') };
      }
      if (registry === 'token') {
        const challenge = await registryRequest(endpoint, 'HEAD', manifestUrl, { accept: MANIFEST_ACCEPT });
        const res = await fetchToken(bearerChallenge(challenge.headers['www-authenticate']), {
          username: endpoint.username ?? '',
          password: endpoint.password ?? '',
        });
        expect(res.status).toBe(200);
        const body = (await res.json()) as {
          token: string;
          access_token: string;
          expires_in: number;
          issued_at: string;
        };
        expect(body.access_token).toBe(body.token);
        expect(body.expires_in).toBeGreaterThan(0);
        authorization = { authorization: `Bearer ${body.token}` };
      }
    });

    it('HEAD with the four Accept types returns the digest crane pushed', async () => {
      const res = await registryRequest(endpoint, 'HEAD', manifestUrl, {
        accept: MANIFEST_ACCEPT,
        ...authorization,
      });
      expect(res.status).toBe(200);
      expect(res.headers['docker-content-digest']).toBe(pushed.digest);
      expect(res.headers['content-type']).toBe(pushed.mediaType);
    });

    it('GET returns the manifest whose bytes hash to that digest, with the expected platforms', async () => {
      const res = await registryRequest(endpoint, 'GET', manifestUrl, {
        accept: MANIFEST_ACCEPT,
        ...authorization,
      });
      expect(res.status).toBe(200);
      expect(`sha256:${createHash('sha256').update(res.body).digest('hex')}`).toBe(pushed.digest);
      const manifest = JSON.parse(res.body.toString()) as {
        manifests?: { digest: string; platform: { os: string; architecture: string } }[];
      };
      const platforms = multiArch
        ? (manifest.manifests ?? []).map((m) => ({
            platform: `${m.platform.os}/${m.platform.architecture}`,
            digest: m.digest,
          }))
        : [{ platform: 'linux/amd64', digest: pushed.digest }];
      expect(platforms).toEqual(pushed.platforms);
      expect(pushed.platforms.map((p) => p.platform)).toEqual(
        multiArch ? ['linux/amd64', 'linux/arm64'] : ['linux/amd64'],
      );
    });
  },
);

describe('credentials', () => {
  const repository = 'kubewatcher/private';

  it('the basic registry refuses a pull without or with wrong credentials', async () => {
    const endpoint = info.registries.basic;
    await pushTestImage({ info, registry: 'basic', repository, tag: 'v1' });
    const url = `${endpoint.url}/v2/${repository}/manifests/v1`;
    const anonymous = await registryRequest(endpoint, 'HEAD', url, { accept: MANIFEST_ACCEPT });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toMatch(/^Basic realm=/);
    const wrong = await registryRequest(endpoint, 'HEAD', url, {
      accept: MANIFEST_ACCEPT,
      authorization: basic(endpoint.username ?? '', 'wrong-password'),
    });
    expect(wrong.status).toBe(401);
  });

  it('the token registry refuses anonymous tokens, and the token server wrong credentials', async () => {
    const endpoint = info.registries.token;
    await pushTestImage({ info, registry: 'token', repository, tag: 'v1' });
    const url = `${endpoint.url}/v2/${repository}/manifests/v1`;
    const challengeRes = await registryRequest(endpoint, 'HEAD', url, { accept: MANIFEST_ACCEPT });
    expect(challengeRes.status).toBe(401);
    const challenge = bearerChallenge(challengeRes.headers['www-authenticate']);
    expect(challenge).toMatchObject({
      realm: endpoint.tokenRealm,
      service: endpoint.tokenService,
      scope: `repository:${repository}:pull`,
    });

    const anonymous = await fetchToken(challenge);
    expect(anonymous.status).toBe(200);
    const { token } = (await anonymous.json()) as { token: string };
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as {
      sub: string;
      access: unknown[];
    };
    expect(claims).toMatchObject({ sub: '', access: [] });
    const denied = await registryRequest(endpoint, 'HEAD', url, {
      accept: MANIFEST_ACCEPT,
      authorization: `Bearer ${token}`,
    });
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toContain('error="insufficient_scope"');

    const wrong = await fetchToken(challenge, {
      username: endpoint.username ?? '',
      password: 'wrong-password',
    });
    expect(wrong.status).toBe(401);
  });
});

it('a second push moves the tag to a new digest', async () => {
  const first = await pushTestImage({
    info,
    registry: 'open',
    repository: 'kubewatcher/repush',
    tag: 'stable',
  });
  const second = await pushTestImage({
    info,
    registry: 'open',
    repository: 'kubewatcher/repush',
    tag: 'stable',
  });
  expect(second.digest).not.toBe(first.digest);
  const res = await registryRequest(
    info.registries.open,
    'HEAD',
    `${info.registries.open.url}/v2/kubewatcher/repush/manifests/stable`,
    { accept: MANIFEST_ACCEPT },
  );
  expect(res.headers['docker-content-digest']).toBe(second.digest);
});
