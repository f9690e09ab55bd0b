import { describe, expect, it } from 'vitest';
import {
  DIGEST_PATTERN,
  dockerConfigKeys,
  familiarString,
  type ImageReference,
  InvalidReferenceError,
  normalizeReference,
  parseReference,
  REFERENCE_PATTERN,
  referenceString,
  registryApiHost,
  repositoryName,
  sameImage,
  withDigest,
} from './reference.ts';

// Cases and outcomes are taken from distribution/reference's Go tests (reference_test.go,
// normalize_test.go, regexp_test.go) unless marked as Kubewatcher's own.
const D = 'sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912';
const D2 = 'sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c';
const SHA512 = `sha512:${'f'.repeat(128)}`;
const HEX64 = '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a';
const LONG_NAMESPACE = Array(4)
  .fill('this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255')
  .join('_');

const FORMAT = 'invalid reference format';
const LOWERCASE = 'repository name must be lowercase';
const TOO_LONG = 'repository name must not be more than 255 characters';

type Valid = [input: string, expected: ImageReference];
type Invalid = [input: string, reason: string];

const parseValid: Valid[] = [
  ['test_com', { domain: '', path: 'test_com' }],
  ['test.com:tag', { domain: '', path: 'test.com', tag: 'tag' }],
  ['test.com:5000', { domain: '', path: 'test.com', tag: '5000' }],
  ['test.com/repo:tag', { domain: 'test.com', path: 'repo', tag: 'tag' }],
  ['test:5000/repo', { domain: 'test:5000', path: 'repo' }],
  [`test:5000/repo@${D}`, { domain: 'test:5000', path: 'repo', digest: D }],
  [`test:5000/repo:tag@${D}`, { domain: 'test:5000', path: 'repo', tag: 'tag', digest: D }],
  ['lowercase:Uppercase', { domain: '', path: 'lowercase', tag: 'Uppercase' }],
  // Upstream's Parse reports domain 'a' for these; 'a' is not written as a registry, so here it is ''.
  [
    `${'a/'.repeat(127)}a:tag-puts-this-over-max`,
    { domain: '', path: `${'a/'.repeat(127)}a`, tag: 'tag-puts-this-over-max' },
  ],
  // The length limit counts upstream's path, after its host-shaped first segment: 255 here.
  [`${'a/'.repeat(128)}a:tag`, { domain: '', path: `${'a/'.repeat(128)}a`, tag: 'tag' }],
  // The domain does not count towards the 255 characters (distribution v0.6.0).
  [`example.com/${'a'.repeat(255)}`, { domain: 'example.com', path: 'a'.repeat(255) }],
  ['sub-dom1.foo.com/bar/baz/quux', { domain: 'sub-dom1.foo.com', path: 'bar/baz/quux' }],
  [
    'sub-dom1.foo.com/bar/baz/quux:some-long-tag',
    { domain: 'sub-dom1.foo.com', path: 'bar/baz/quux', tag: 'some-long-tag' },
  ],
  [
    'b.gcr.io/test.example.com/my-app:test.example.com',
    { domain: 'b.gcr.io', path: 'test.example.com/my-app', tag: 'test.example.com' },
  ],
  ['xn--n3h.com/myimage:xn--n3h.com', { domain: 'xn--n3h.com', path: 'myimage', tag: 'xn--n3h.com' }],
  [
    `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512}`,
    { domain: 'xn--7o8h.com', path: 'myimage', tag: 'xn--7o8h.com', digest: SHA512 },
  ],
  ['foo_bar.com:8080', { domain: '', path: 'foo_bar.com', tag: '8080' }],
  ['foo/foo_bar.com:8080', { domain: '', path: 'foo/foo_bar.com', tag: '8080' }],
  ['foo_bar.com/app', { domain: '', path: 'foo_bar.com/app' }],
  ['192.168.1.1', { domain: '', path: '192.168.1.1' }],
  ['192.168.1.1:tag', { domain: '', path: '192.168.1.1', tag: 'tag' }],
  ['192.168.1.1:5000', { domain: '', path: '192.168.1.1', tag: '5000' }],
  ['192.168.1.1/repo', { domain: '192.168.1.1', path: 'repo' }],
  ['192.168.1.1:5000/repo', { domain: '192.168.1.1:5000', path: 'repo' }],
  ['192.168.1.1:5000/repo:5050', { domain: '192.168.1.1:5000', path: 'repo', tag: '5050' }],
  ['[2001:db8::1]/repo', { domain: '[2001:db8::1]', path: 'repo' }],
  ['[2001:db8:1:2:3:4:5:6]/repo:tag', { domain: '[2001:db8:1:2:3:4:5:6]', path: 'repo', tag: 'tag' }],
  ['[2001:db8::1]:5000/repo', { domain: '[2001:db8::1]:5000', path: 'repo' }],
  [`[2001:db8::1]:5000/repo:tag@${D}`, { domain: '[2001:db8::1]:5000', path: 'repo', tag: 'tag', digest: D }],
  ['[2001:db8::]:5000/repo', { domain: '[2001:db8::]:5000', path: 'repo' }],
  ['[::1]:5000/repo', { domain: '[::1]:5000', path: 'repo' }],
  ['localhost', { domain: '', path: 'localhost' }],
  ['localhost/foo', { domain: 'localhost', path: 'foo' }],
  ['localhost:5000/foo:1.0', { domain: 'localhost:5000', path: 'foo', tag: '1.0' }],
  [`localhost:8080@${D}`, { domain: '', path: 'localhost', tag: '8080', digest: D }],
  [`localhost@${D}`, { domain: '', path: 'localhost', digest: D }],
  ['Asdf.com/foo/bar', { domain: 'Asdf.com', path: 'foo/bar' }],
  ['Foo/bar', { domain: 'Foo', path: 'bar' }],
  [
    'registry.io/foo/project--id.module--name.ver---sion--name',
    { domain: 'registry.io', path: 'foo/project--id.module--name.ver---sion--name' },
  ],
  [
    'example.com/some_separator__underscore/myimage',
    { domain: 'example.com', path: 'some_separator__underscore/myimage' },
  ],
  ['do__cker/docker', { domain: '', path: 'do__cker/docker' }],
  [
    `other.com/named@sha256:1234567890098765432112345667890098765432112345667890098765432112`,
    {
      domain: 'other.com',
      path: 'named',
      digest: 'sha256:1234567890098765432112345667890098765432112345667890098765432112',
    },
  ],
  // Kubewatcher's own: the shapes WatchedImage specs and workloads use.
  ['nginx:1.27.0-alpine3.20', { domain: '', path: 'nginx', tag: '1.27.0-alpine3.20' }],
  ['nginx:_private', { domain: '', path: 'nginx', tag: '_private' }],
  [`nginx:${'a'.repeat(128)}`, { domain: '', path: 'nginx', tag: 'a'.repeat(128) }],
  ['library/nginx', { domain: '', path: 'library/nginx' }],
  ['acme/web', { domain: '', path: 'acme/web' }],
  ['docker.io/x', { domain: 'docker.io', path: 'x' }],
  ['index.docker.io/x/y', { domain: 'index.docker.io', path: 'x/y' }],
  ['ghcr.io/acme/web:stable', { domain: 'ghcr.io', path: 'acme/web', tag: 'stable' }],
  [`127.0.0.1:5000/acme/web:v1@${D}`, { domain: '127.0.0.1:5000', path: 'acme/web', tag: 'v1', digest: D }],
];

const parseInvalid: Invalid[] = [
  ['', 'repository name must have at least one component'],
  [':justtag', FORMAT],
  [`@${D}`, FORMAT],
  ['repo@sha256:ffffffffffffffffffffffffffffffffff', 'invalid checksum digest length'],
  [`validname@invaliddigest:${'f'.repeat(64)}`, 'unsupported digest algorithm'],
  // go-digest spells algorithms in lowercase: a capitalised unknown one is malformed, not unsupported.
  [`foo@SHA256:${'a'.repeat(64)}`, 'invalid checksum digest format'],
  [`foo@sha256+b64:${'a'.repeat(64)}`, 'unsupported digest algorithm'],
  [`foo@sha384:${'a'.repeat(64)}`, 'invalid checksum digest length'],
  [`foo@sha256:${'F'.repeat(64)}`, 'invalid checksum digest format'],
  ['Uppercase:tag', LOWERCASE],
  ['Nginx:1', LOWERCASE],
  ['test:5000/Uppercase/lowercase:tag', LOWERCASE],
  [`${'a/'.repeat(129)}a:tag`, TOO_LONG],
  [`domain/${'a'.repeat(256)}:tag`, TOO_LONG],
  [`example.com/${'a'.repeat(256)}`, TOO_LONG],
  ['a'.repeat(256), TOO_LONG],
  ['aa/asdf$$^/aa', FORMAT],
  ['[2001:db8::1]', FORMAT],
  ['[2001:db8::1]:5000', FORMAT],
  ['[2001:db8::1]:tag', FORMAT],
  ['[fe80::1%eth0]:5000/repo', FORMAT],
  ['[fe80::1%@invalidzone]:5000/repo', FORMAT],
  ['[fd00:1:2::3]75050/repo', FORMAT],
  ['fc00::1:5000/debian', FORMAT],
  ['registry.com:8080/myapp@sha256:badbadbadbad', FORMAT],
  ['registry.com:8080/myapp:invalid~tag', FORMAT],
  ['bad_hostname.com:8080/myapp:tag', FORMAT],
  [`localhost:http/name@${D}`, FORMAT],
  ['registry.com:8080/myapp@bad', FORMAT],
  ['registry.com:8080/myapp@2bad', FORMAT],
  ['foo.com:http/bar', FORMAT],
  ['a//a/a', FORMAT],
  ['a/a/a/a/', FORMAT],
  ['foo.com/', FORMAT],
  ['-foo/bar', FORMAT],
  ['foo/bar-', FORMAT],
  ['foo/-bar', FORMAT],
  ['_foo/bar', FORMAT],
  ['____/____', FORMAT],
  ['example.com/__underscore/myimage', FORMAT],
  ['foo___bar', FORMAT],
  ['example.com/..dots/myimage', FORMAT],
  ['do..cker/docker', FORMAT],
  ['docker./docker', FORMAT],
  ['do__cker:8080/docker', FORMAT],
  ['https://github.com/docker/docker', FORMAT],
  // Kubewatcher's own: tag edges and stray whitespace.
  ['nginx:-tag', FORMAT],
  ['nginx:.tag', FORMAT],
  [`nginx:${'a'.repeat(129)}`, FORMAT],
  ['nginx:1.27 ', FORMAT],
  ['nginx:1.27\n', FORMAT],
  [' nginx', FORMAT],
  ['nginx:1.27:1.28', FORMAT],
];

type Normalized = [input: string, expected: ImageReference, familiar: string];

const normalizeValid: Normalized[] = [
  ['nginx', { domain: 'docker.io', path: 'library/nginx', tag: 'latest' }, 'nginx:latest'],
  ['nginx:1.27', { domain: 'docker.io', path: 'library/nginx', tag: '1.27' }, 'nginx:1.27'],
  ['library/nginx', { domain: 'docker.io', path: 'library/nginx', tag: 'latest' }, 'nginx:latest'],
  ['docker.io/x', { domain: 'docker.io', path: 'library/x', tag: 'latest' }, 'x:latest'],
  [
    'docker.io/library/debian',
    { domain: 'docker.io', path: 'library/debian', tag: 'latest' },
    'debian:latest',
  ],
  [
    'docker.io/library/foo/bar',
    { domain: 'docker.io', path: 'library/foo/bar', tag: 'latest' },
    'library/foo/bar:latest',
  ],
  ['index.docker.io/x/y', { domain: 'docker.io', path: 'x/y', tag: 'latest' }, 'x/y:latest'],
  ['index.docker.io/debian', { domain: 'docker.io', path: 'library/debian', tag: 'latest' }, 'debian:latest'],
  ['acme/web:stable', { domain: 'docker.io', path: 'acme/web', tag: 'stable' }, 'acme/web:stable'],
  ['other/library', { domain: 'docker.io', path: 'other/library', tag: 'latest' }, 'other/library:latest'],
  ['store/foo/bar', { domain: 'docker.io', path: 'store/foo/bar', tag: 'latest' }, 'store/foo/bar:latest'],
  ['test_com/foo', { domain: 'docker.io', path: 'test_com/foo', tag: 'latest' }, 'test_com/foo:latest'],
  [
    'ubuntu-12.04-base',
    { domain: 'docker.io', path: 'library/ubuntu-12.04-base', tag: 'latest' },
    'ubuntu-12.04-base:latest',
  ],
  ['ghcr.io/acme/web', { domain: 'ghcr.io', path: 'acme/web', tag: 'latest' }, 'ghcr.io/acme/web:latest'],
  [
    '127.0.0.1:5000/debian',
    { domain: '127.0.0.1:5000', path: 'debian', tag: 'latest' },
    '127.0.0.1:5000/debian:latest',
  ],
  [
    '127.0.0.1:8000/private/moonbase',
    { domain: '127.0.0.1:8000', path: 'private/moonbase', tag: 'latest' },
    '127.0.0.1:8000/private/moonbase:latest',
  ],
  ['[::1]:5000/repo:tag', { domain: '[::1]:5000', path: 'repo', tag: 'tag' }, '[::1]:5000/repo:tag'],
  [
    '[fc00:1:2:3:4:5:6:7]:5000/library/debian',
    { domain: '[fc00:1:2:3:4:5:6:7]:5000', path: 'library/debian', tag: 'latest' },
    '[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest',
  ],
  ['localhost/foo', { domain: 'localhost', path: 'foo', tag: 'latest' }, 'localhost/foo:latest'],
  [
    `localhost:5000/foo@${D}`,
    { domain: 'localhost:5000', path: 'foo', digest: D },
    `localhost:5000/foo@${D}`,
  ],
  // A single segment is always a Docker Hub official image, even when it looks like a host.
  ['localhost', { domain: 'docker.io', path: 'library/localhost', tag: 'latest' }, 'localhost:latest'],
  ['localhost:5000', { domain: 'docker.io', path: 'library/localhost', tag: '5000' }, 'localhost:5000'],
  ['192.168.0.1:80', { domain: 'docker.io', path: 'library/192.168.0.1', tag: '80' }, '192.168.0.1:80'],
  [
    '192.168.0.1:8/debian',
    { domain: '192.168.0.1:8', path: 'debian', tag: 'latest' },
    '192.168.0.1:8/debian:latest',
  ],
  [
    `busybox:latest@${D}`,
    { domain: 'docker.io', path: 'library/busybox', tag: 'latest', digest: D },
    `busybox:latest@${D}`,
  ],
  [`redis@${D2}`, { domain: 'docker.io', path: 'library/redis', digest: D2 }, `redis@${D2}`],
  // Capitals in the first segment make it a registry, which is then not Docker Hub.
  ['Docker/docker', { domain: 'Docker', path: 'docker', tag: 'latest' }, 'Docker/docker:latest'],
  ['FOO/bar', { domain: 'FOO', path: 'bar', tag: 'latest' }, 'FOO/bar:latest'],
  ['test-com:8080/foo', { domain: 'test-com:8080', path: 'foo', tag: 'latest' }, 'test-com:8080/foo:latest'],
  [
    'xn--n3h.com:18080/foo',
    { domain: 'xn--n3h.com:18080', path: 'foo', tag: 'latest' },
    'xn--n3h.com:18080/foo:latest',
  ],
  // A 64-hex repository is fine once a registry is written: it can no longer be an image ID.
  [`docker.io/${HEX64}`, { domain: 'docker.io', path: `library/${HEX64}`, tag: 'latest' }, `${HEX64}:latest`],
  [
    HEX64.slice(1),
    { domain: 'docker.io', path: `library/${HEX64.slice(1)}`, tag: 'latest' },
    `${HEX64.slice(1)}:latest`,
  ],
  [
    'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
    {
      domain: 'docker.io',
      path: 'library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev',
      tag: 'latest',
    },
    'thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest',
  ],
  [
    'docker---rules/docker',
    { domain: 'docker.io', path: 'docker---rules/docker', tag: 'latest' },
    'docker---rules/docker:latest',
  ],
  [
    'dock__er/docker',
    { domain: 'docker.io', path: 'dock__er/docker', tag: 'latest' },
    'dock__er/docker:latest',
  ],
  ['d/docker', { domain: 'docker.io', path: 'd/docker', tag: 'latest' }, 'd/docker:latest'],
  // 'docker.io/library/' plus 237 characters is exactly 255.
  [
    'a'.repeat(237),
    { domain: 'docker.io', path: `library/${'a'.repeat(237)}`, tag: 'latest' },
    `${'a'.repeat(237)}:latest`,
  ],
];

const normalizeInvalid: Invalid[] = [
  [HEX64, `invalid repository name (${HEX64}), cannot specify 64-byte hexadecimal strings`],
  ['Nginx:1', 'invalid reference format: repository name (library/Nginx) must be lowercase'],
  ['docker/Docker', 'invalid reference format: repository name (docker/Docker) must be lowercase'],
  ['docker.io/docker/Docker', 'invalid reference format: repository name (docker/Docker) must be lowercase'],
  // Upstream checks case before ':' only, so a capitalised digest algorithm reads as part of the name.
  [
    `foo@SHA256:${'a'.repeat(64)}`,
    'invalid reference format: repository name (library/foo@SHA256) must be lowercase',
  ],
  [
    'test:5000/Uppercase/lowercase:tag',
    'invalid reference format: repository name (Uppercase/lowercase) must be lowercase',
  ],
  ['', FORMAT],
  ['-docker', FORMAT],
  ['-docker/docker', FORMAT],
  ['-docker.io/docker/docker', FORMAT],
  ['docker-/docker', FORMAT],
  ['_docker/_docker', FORMAT],
  ['dock_.er/docker', FORMAT],
  ['dock-.er/docker', FORMAT],
  ['docker/', FORMAT],
  ['docker///docker', FORMAT],
  ['docker.io/docker///docker', FORMAT],
  ['[fc00::1]', FORMAT],
  ['[fc00::1]:5000', FORMAT],
  ['fc00::1:5000/debian', FORMAT],
  ['[fe80::1%eth0]:5000/debian', FORMAT],
  ['[2001:db8:3:4::192.0.2.33]:5000/debian', FORMAT],
  ['https://github.com/docker/docker', FORMAT],
  [`${LONG_NAMESPACE}/docker`, TOO_LONG],
  // Valid to parse as written, too long once 'library/' is prepended.
  ['a'.repeat(248), TOO_LONG],
  [`${'a/'.repeat(128)}a`, TOO_LONG],
  ['nginx@sha256:abcdefabcdefabcdefabcdefabcdefabcd', 'invalid checksum digest length'],
  // Kubewatcher's own: upstream would return an underscored "host" with no domain at all.
  ['foo_bar.com/app', 'invalid reference format: registry (foo_bar.com) is not a valid host name'],
];

function expectInvalid(run: () => unknown, input: string, reason: string): void {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(InvalidReferenceError);
  const error = caught as InvalidReferenceError;
  expect(error.reason).toBe(reason);
  expect(error.reference).toBe(input);
  expect(error.message).toBe(`invalid image reference ${JSON.stringify(input)}: ${reason}`);
}

describe('parseReference', () => {
  it.each(parseValid)('parses %j', (input, expected) => {
    const ref = parseReference(input);
    expect(ref).toStrictEqual(expected);
    // A strict parse keeps what was written, so it prints back unchanged.
    expect(referenceString(ref)).toBe(input);
  });

  it.each(parseInvalid)('rejects %j', (input, reason) => {
    expectInvalid(() => parseReference(input), input, reason);
  });

  it('names the value and the reason in the message', () => {
    expect(() => parseReference('Nginx:1')).toThrow(
      'invalid image reference "Nginx:1": repository name must be lowercase',
    );
  });
});

describe('normalizeReference', () => {
  it.each(normalizeValid)('normalises %j', (input, expected, familiar) => {
    const ref = normalizeReference(input);
    expect(ref).toStrictEqual(expected);
    expect(familiarString(ref)).toBe(familiar);
    // Both printed forms read back as the same reference.
    expect(normalizeReference(familiar)).toStrictEqual(expected);
    expect(normalizeReference(referenceString(ref))).toStrictEqual(expected);
  });

  it.each(normalizeInvalid)('rejects %j', (input, reason) => {
    expectInvalid(() => normalizeReference(input), input, reason);
  });
});

describe('printing', () => {
  it.each<[ImageReference, string, string, string]>([
    [
      { domain: 'docker.io', path: 'library/nginx', tag: '1.27' },
      'docker.io/library/nginx',
      'docker.io/library/nginx:1.27',
      'nginx:1.27',
    ],
    [
      { domain: 'docker.io', path: 'library/nginx', digest: D },
      'docker.io/library/nginx',
      `docker.io/library/nginx@${D}`,
      `nginx@${D}`,
    ],
    [
      { domain: 'docker.io', path: 'acme/web', tag: 'stable', digest: D },
      'docker.io/acme/web',
      `docker.io/acme/web:stable@${D}`,
      `acme/web:stable@${D}`,
    ],
    [
      { domain: 'ghcr.io', path: 'acme/web', tag: 'stable' },
      'ghcr.io/acme/web',
      'ghcr.io/acme/web:stable',
      'ghcr.io/acme/web:stable',
    ],
    [{ domain: '', path: 'acme/web' }, 'acme/web', 'acme/web', 'acme/web'],
  ])('prints %j', (ref, repository, canonical, familiar) => {
    expect(repositoryName(ref)).toBe(repository);
    expect(referenceString(ref)).toBe(canonical);
    expect(familiarString(ref)).toBe(familiar);
  });
});

describe('sameImage', () => {
  it.each<[string, string, boolean]>([
    ['nginx', 'docker.io/library/nginx:latest', true],
    ['nginx', 'nginx:latest', true],
    ['nginx:1.27', 'nginx:1.28', false],
    ['index.docker.io/library/nginx:1.27', 'nginx:1.27', true],
    ['docker.io/nginx:1.27', 'library/nginx:1.27', true],
    [`nginx:1.27@${D}`, 'nginx:1.27', true],
    [`nginx:1.27@${D}`, `nginx:1.27@${D2}`, true],
    [`nginx@${D}`, 'nginx', false],
    [`nginx@${D}`, `docker.io/library/nginx@${D2}`, true],
    ['ghcr.io/acme/web:stable', 'acme/web:stable', false],
    ['ghcr.io/acme/web', 'ghcr.io/acme/web:latest', true],
    ['[::1]:5000/repo', '[::1]:5000/repo:latest', true],
    ['localhost:5000/web', '127.0.0.1:5000/web', false],
    ['acme/web:Stable', 'acme/web:stable', false],
    ['nginx:1', 'Nginx:1', false],
    ['nginx:1.27 ', 'nginx:1.27', false],
    ['', '', false],
  ])('%j vs %j → %s', (a, b, expected) => {
    expect(sameImage(a, b)).toBe(expected);
    expect(sameImage(b, a)).toBe(expected);
  });

  it('answers the same once its memo has been dropped for size', () => {
    for (let i = 0; i < 10_050; i++) expect(sameImage(`team/app${i}:v1`, `team/app${i}:v2`)).toBe(false);
    expect(sameImage('team/app1:v1', 'docker.io/team/app1:v1')).toBe(true);
    expect(sameImage('Team/app1:v1', 'team/app1:v1')).toBe(false);
  });
});

describe('registry hosts and credentials', () => {
  it.each([
    ['docker.io', 'registry-1.docker.io'],
    ['ghcr.io', 'ghcr.io'],
    ['127.0.0.1:5000', '127.0.0.1:5000'],
    ['[::1]:5000', '[::1]:5000'],
    ['localhost', 'localhost'],
  ])('registryApiHost(%j) = %j', (domain, host) => {
    expect(registryApiHost(domain)).toBe(host);
  });

  it.each<[string, string[]]>([
    ['docker.io', ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'registry-1.docker.io']],
    ['ghcr.io', ['ghcr.io']],
    ['localhost:5000', ['localhost:5000']],
  ])('dockerConfigKeys(%j)', (domain, keys) => {
    expect(dockerConfigKeys(domain)).toStrictEqual(keys);
  });
});

describe('withDigest', () => {
  it.each<[ImageReference, string, string]>([
    [normalizeReference('nginx:1.27'), D, `nginx:1.27@${D}`],
    [normalizeReference('acme/web'), D, `acme/web:latest@${D}`],
    [normalizeReference('ghcr.io/acme/web:stable'), D, `ghcr.io/acme/web:stable@${D}`],
    [normalizeReference(`nginx:1.27@${D}`), D2, `nginx:1.27@${D2}`],
    [normalizeReference('[::1]:5000/app:v1'), D, `[::1]:5000/app:v1@${D}`],
    [parseReference('127.0.0.1:5000/app:v1'), D, `127.0.0.1:5000/app:v1@${D}`],
  ])('pins %j to %s', (ref, digest, expected) => {
    const pinned = withDigest(ref, digest);
    expect(pinned).toBe(expected);
    expect(sameImage(pinned, referenceString(ref))).toBe(true);
  });

  it.each<[string, string]>([
    ['sha256:abc', 'invalid checksum digest length'],
    [`SHA256:${'a'.repeat(64)}`, 'invalid checksum digest format'],
    ['sha256', 'invalid checksum digest format'],
    [`sha256:${'A'.repeat(64)}`, 'invalid checksum digest format'],
    [`sha256:${'a'.repeat(63)}`, 'invalid checksum digest length'],
    [`md5:${'a'.repeat(32)}`, 'unsupported digest algorithm'],
    ['', 'invalid checksum digest format'],
  ])('refuses digest %j', (digest, reason) => {
    const ref = normalizeReference('nginx:1.27');
    expectInvalid(() => withDigest(ref, digest), `nginx:1.27@${digest}`, reason);
  });
});

describe('patterns', () => {
  const reference = new RegExp(REFERENCE_PATTERN);
  const parses = (input: string): boolean => {
    try {
      parseReference(input);
      return true;
    } catch {
      return false;
    }
  };
  const tooLong = new Set(parseInvalid.filter(([, reason]) => reason === TOO_LONG).map(([input]) => input));
  const undigested = [...parseValid.map(([input]) => input), ...parseInvalid.map(([input]) => input)].filter(
    (input) => !input.includes('@') && !tooLong.has(input),
  );

  it.each(undigested)('REFERENCE_PATTERN agrees with parseReference on %j', (input) => {
    expect(reference.test(input)).toBe(parses(input));
  });

  it.each(parseValid.filter(([input]) => input.includes('@')))(
    'REFERENCE_PATTERN refuses digest in %j',
    (input) => {
      expect(reference.test(input)).toBe(false);
    },
  );

  // A regular expression cannot count the name's length; the schema needs a separate length rule.
  it.each([...tooLong])('REFERENCE_PATTERN cannot see the length of %j', (input) => {
    expect(reference.test(input)).toBe(true);
  });

  it('uses only syntax that JavaScript and RE2 read the same way', () => {
    expect(REFERENCE_PATTERN.startsWith('^')).toBe(true);
    expect(REFERENCE_PATTERN.endsWith('$')).toBe(true);
    // No lookaround, named groups, backreferences or inline flags; every group is non-capturing.
    expect(REFERENCE_PATTERN).not.toMatch(/\(\?[^:]|\\[1-9]|\\k/);
    expect(REFERENCE_PATTERN).not.toMatch(/(^|[^\\])\((?!\?:)/);
  });

  it('DIGEST_PATTERN accepts only lowercase sha256 digests', () => {
    const digest = new RegExp(DIGEST_PATTERN);
    expect(digest.test(D)).toBe(true);
    expect(digest.test(D.toUpperCase())).toBe(false);
    expect(digest.test(SHA512)).toBe(false);
    expect(digest.test(`${D}0`)).toBe(false);
    expect(digest.test(`x${D}`)).toBe(false);
  });
});
