import { describe, expect, it } from 'vitest';
import {
  MAX_PUSHES_PER_BODY,
  type ParseContext,
  PayloadError,
  parsePayload,
  type WebhookFormat,
} from './payloads.ts';

const DIGEST = `sha256:${'a1'.repeat(32)}`;
const CHILD_DIGEST = `sha256:${'b2'.repeat(32)}`;

// Samples written from each sender's documented payload shape (fields a receiver ignores included,
// so strict parsing is shown to refuse only what matters).
const distributionPush = {
  events: [
    {
      id: '320678d8-ca14-430f-8bb6-4ca139cd83f7',
      timestamp: '2026-11-30T13:03:11.123Z',
      action: 'push',
      target: {
        mediaType: 'application/vnd.oci.image.index.v1+json',
        size: 1024,
        digest: DIGEST,
        length: 1024,
        repository: 'acme/web',
        url: `https://registry.example.com/v2/acme/web/manifests/${DIGEST}`,
        tag: 'stable',
      },
      request: {
        id: 'a0f2c5e1',
        addr: '10.0.0.7:53312',
        host: 'registry.example.com',
        method: 'PUT',
        useragent: 'crane/0.20',
      },
      actor: { name: 'ci' },
      source: { addr: 'registry-0:5000', instanceID: 'f8a1' },
    },
    // The child manifest of the index: pushed by digest, no tag.
    {
      action: 'push',
      target: {
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: CHILD_DIGEST,
        repository: 'acme/web',
      },
      request: { host: 'registry.example.com' },
    },
    // Blob pushes and pulls move no tag.
    {
      action: 'pull',
      target: { repository: 'acme/web', tag: 'stable', digest: DIGEST },
      request: { host: 'registry.example.com' },
    },
    {
      action: 'push',
      target: { mediaType: 'application/octet-stream', repository: 'acme/web', digest: CHILD_DIGEST },
      request: { host: 'registry.example.com' },
    },
  ],
};

const dockerHubPush = {
  callback_url: 'https://registry.hub.docker.com/u/acme/web/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/',
  push_data: { pushed_at: 1764500000, images: [], tag: 'stable', pusher: 'acme-ci' },
  repository: {
    status: 'Active',
    description: '',
    is_trusted: false,
    repo_url: 'https://registry.hub.docker.com/u/acme/web/',
    owner: 'acme',
    is_official: false,
    is_private: true,
    name: 'web',
    namespace: 'acme',
    star_count: 2,
    comment_count: 0,
    date_created: 1700000000,
    repo_name: 'acme/web',
  },
};

const githubPackagePublished = {
  action: 'published',
  package: {
    id: 5150,
    name: 'web',
    namespace: 'acme',
    description: '',
    ecosystem: 'CONTAINER',
    package_type: 'CONTAINER',
    html_url: 'https://github.com/orgs/acme/packages/container/package/web',
    owner: { login: 'acme', type: 'Organization' },
    package_version: {
      id: 77,
      version: DIGEST,
      name: DIGEST,
      container_metadata: {
        tag: { name: 'stable', digest: DIGEST },
        labels: {},
        manifest: {},
      },
      package_url: 'ghcr.io/acme/web:stable',
    },
    registry: {
      about_url: 'https://docs.github.com',
      name: 'GitHub CONTAINER registry',
      type: 'CONTAINER',
      url: 'https://ghcr.io/acme',
      vendor: 'GitHub Inc',
    },
  },
  repository: { full_name: 'acme/web' },
  sender: { login: 'octocat' },
};

// The older registry_package shape: tags listed on the version, owner instead of namespace.
const githubRegistryPackage = {
  action: 'published',
  registry_package: {
    name: 'api',
    package_type: 'docker',
    owner: { login: 'acme' },
    package_version: { version: 'v2', tags: ['v2', 'latest'] },
  },
};

const harborPush = {
  type: 'PUSH_ARTIFACT',
  occur_at: 1764500000,
  operator: 'admin',
  event_data: {
    resources: [
      {
        digest: DIGEST,
        tag: 'stable',
        resource_url: 'harbor.example.com/acme/web:stable',
      },
    ],
    repository: {
      date_created: 1700000000,
      name: 'web',
      namespace: 'acme',
      repo_full_name: 'acme/web',
      repo_type: 'private',
    },
  },
};

const quayPush = {
  repository: 'acme/web',
  namespace: 'acme',
  name: 'web',
  docker_url: 'quay.io/acme/web',
  homepage: 'https://quay.io/repository/acme/web',
  updated_tags: ['stable', '1.4.2'],
};

const cases: {
  name: string;
  format: WebhookFormat;
  body: unknown;
  context?: ParseContext;
  images: string[];
}[] = [
  {
    name: 'distribution: the tagged manifest push only',
    format: 'distribution',
    body: distributionPush,
    images: ['registry.example.com/acme/web:stable'],
  },
  {
    name: 'distribution: the receiver names the registry behind an internal host',
    format: 'distribution',
    body: distributionPush,
    context: { registry: 'registry.acme.io' },
    images: ['registry.acme.io/acme/web:stable'],
  },
  {
    name: 'Docker Hub: always docker.io',
    format: 'dockerhub',
    body: dockerHubPush,
    images: ['docker.io/acme/web:stable'],
  },
  {
    name: 'Docker Hub: an official image',
    format: 'dockerhub',
    body: { ...dockerHubPush, repository: { ...dockerHubPush.repository, repo_name: 'library/nginx' } },
    images: ['docker.io/library/nginx:stable'],
  },
  {
    name: 'GitHub package published',
    format: 'github',
    body: githubPackagePublished,
    context: { headers: { 'x-github-event': 'package' } },
    images: ['ghcr.io/acme/web:stable'],
  },
  {
    name: 'GitHub registry_package with the older tags list',
    format: 'github',
    body: githubRegistryPackage,
    context: { headers: { 'x-github-event': 'registry_package' } },
    images: ['ghcr.io/acme/api:v2', 'ghcr.io/acme/api:latest'],
  },
  {
    name: 'GitHub ping is not a push',
    format: 'github',
    body: { zen: 'Keep it logically awesome.', hook_id: 1 },
    context: { headers: { 'x-github-event': 'ping' } },
    images: [],
  },
  {
    name: 'GitHub: an npm package is not an image',
    format: 'github',
    body: { ...githubPackagePublished, package: { ...githubPackagePublished.package, package_type: 'npm' } },
    context: { headers: { 'x-github-event': 'package' } },
    images: [],
  },
  {
    name: 'GitHub: an untagged version moves no tag',
    format: 'github',
    body: {
      ...githubPackagePublished,
      package: {
        ...githubPackagePublished.package,
        package_version: { container_metadata: { tag: { name: '', digest: CHILD_DIGEST } } },
      },
    },
    context: { headers: { 'x-github-event': 'package' } },
    images: [],
  },
  {
    name: 'Harbor PUSH_ARTIFACT',
    format: 'harbor',
    body: harborPush,
    images: ['harbor.example.com/acme/web:stable'],
  },
  {
    name: 'Harbor: a pull is not a push',
    format: 'harbor',
    body: { ...harborPush, type: 'PULL_ARTIFACT' },
    images: [],
  },
  {
    name: 'Quay: every updated tag',
    format: 'quay',
    body: quayPush,
    images: ['quay.io/acme/web:stable', 'quay.io/acme/web:1.4.2'],
  },
  {
    name: 'Quay: the old tag → image map',
    format: 'quay',
    body: { ...quayPush, updated_tags: { stable: 'c3c4' } },
    images: ['quay.io/acme/web:stable'],
  },
  {
    name: 'generic: image and tag',
    format: 'generic',
    body: { image: 'ghcr.io/acme/web', tag: 'stable' },
    images: ['ghcr.io/acme/web:stable'],
  },
  {
    name: 'generic: one reference',
    format: 'generic',
    body: { image: 'nginx:1.27' },
    images: ['docker.io/library/nginx:1.27'],
  },
  {
    name: 'generic: several, repeats once',
    format: 'generic',
    body: {
      images: [
        { image: 'nginx:1.27' },
        { image: 'docker.io/library/nginx', tag: '1.27' },
        { image: 'web:2' },
      ],
    },
    images: ['docker.io/library/nginx:1.27', 'docker.io/library/web:2'],
  },
];

describe('parsePayload', () => {
  it.each(cases)('$name', ({ format, body, context, images }) => {
    expect(parsePayload(format, JSON.stringify(body), context).map((p) => p.image)).toEqual(images);
  });

  it('keeps the digest the sender named', () => {
    expect(parsePayload('harbor', JSON.stringify(harborPush))).toEqual([
      { image: 'harbor.example.com/acme/web:stable', digest: DIGEST },
    ]);
  });

  const bad: { name: string; format: WebhookFormat; body: string; context?: ParseContext; error: string }[] =
    [
      { name: 'not JSON', format: 'generic', body: '{image:', error: 'body is not JSON' },
      {
        name: 'a list, not an object',
        format: 'dockerhub',
        body: '[]',
        error: 'body must be an object, got a list',
      },
      {
        name: 'distribution without events',
        format: 'distribution',
        body: '{}',
        error: 'body.events must be a list, got nothing',
      },
      {
        name: 'distribution push with no host and no registry',
        format: 'distribution',
        body: JSON.stringify({ events: [{ action: 'push', target: { repository: 'a/b', tag: 't' } }] }),
        error: 'events[0].request.host is missing',
      },
      {
        name: 'Docker Hub tag of the wrong type',
        format: 'dockerhub',
        body: JSON.stringify({ ...dockerHubPush, push_data: { tag: 7 } }),
        error: 'push_data.tag must be a non-empty string, got number 7',
      },
      {
        name: 'Docker Hub repository name in upper case',
        format: 'dockerhub',
        body: JSON.stringify({ ...dockerHubPush, repository: { repo_name: 'Acme/Web' } }),
        error: 'repository.repo_name: invalid image reference',
      },
      {
        name: 'Harbor resource_url for another repository',
        format: 'harbor',
        body: JSON.stringify({
          ...harborPush,
          event_data: {
            ...harborPush.event_data,
            resources: [{ tag: 'x', resource_url: 'evil.example/other/repo:x' }],
          },
        }),
        error: 'does not name repository "acme/web"',
      },
      {
        name: 'Quay updated_tags missing',
        format: 'quay',
        body: JSON.stringify({ repository: 'acme/web' }),
        error: 'updated_tags must be a list of tags, got nothing',
      },
      {
        name: 'generic with an unknown field',
        format: 'generic',
        body: JSON.stringify({ image: 'web', tag: 'x', registry: 'evil' }),
        error: 'body.registry is not a field of the generic form',
      },
      {
        name: 'generic with a digest reference',
        format: 'generic',
        body: JSON.stringify({ image: `web@${DIGEST}` }),
        error: 'names a digest',
      },
      {
        name: 'GitHub package without a version',
        format: 'github',
        body: JSON.stringify({ action: 'published', package: { name: 'web', namespace: 'acme' } }),
        context: { headers: { 'x-github-event': 'package' } },
        error: 'package.package_version must be an object, got nothing',
      },
    ];
  it.each(bad)('refuses $name, naming the field', ({ format, body, context, error }) => {
    expect(() => parsePayload(format, body, context)).toThrow(PayloadError);
    expect(() => parsePayload(format, body, context)).toThrow(error);
  });

  it('refuses a body that names more pushes than a registry sends at once', () => {
    const images = Array.from({ length: MAX_PUSHES_PER_BODY + 1 }, (_, i) => ({ image: `web:${i}` }));
    expect(() => parsePayload('generic', JSON.stringify({ images }))).toThrow(
      `more than ${MAX_PUSHES_PER_BODY}`,
    );
  });
});
