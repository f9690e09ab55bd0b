import { describe, expect, it } from 'vitest';
import {
  matchContainers,
  matchWorkloads,
  type Selector,
  selectorMatches,
  type WorkloadLike,
} from './matching.ts';

const LABELS = { app: 'web', tier: 'front', empty: '' };

describe('selectorMatches: Kubernetes label selector semantics', () => {
  it.each<[string, Selector | undefined, boolean]>([
    ['no selector', undefined, true],
    ['empty selector', {}, true],
    ['empty matchLabels and matchExpressions', { matchLabels: {}, matchExpressions: [] }, true],
    ['matchLabels, all pairs equal', { matchLabels: { app: 'web', tier: 'front' } }, true],
    ['matchLabels, one value differs', { matchLabels: { app: 'web', tier: 'back' } }, false],
    ['matchLabels, key absent', { matchLabels: { team: 'a' } }, false],
    ['matchLabels, empty value equals an empty label', { matchLabels: { empty: '' } }, true],
    [
      'In, value listed',
      { matchExpressions: [{ key: 'tier', operator: 'In', values: ['back', 'front'] }] },
      true,
    ],
    [
      'In, value not listed',
      { matchExpressions: [{ key: 'tier', operator: 'In', values: ['back'] }] },
      false,
    ],
    ['In, key absent', { matchExpressions: [{ key: 'team', operator: 'In', values: ['a'] }] }, false],
    ['In, empty value listed', { matchExpressions: [{ key: 'empty', operator: 'In', values: [''] }] }, true],
    [
      'NotIn, value listed',
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['front'] }] },
      false,
    ],
    [
      'NotIn, value not listed',
      { matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['back'] }] },
      true,
    ],
    [
      'NotIn, key absent matches',
      { matchExpressions: [{ key: 'team', operator: 'NotIn', values: ['a'] }] },
      true,
    ],
    ['Exists, key present', { matchExpressions: [{ key: 'app', operator: 'Exists' }] }, true],
    [
      'Exists, key present with an empty value',
      { matchExpressions: [{ key: 'empty', operator: 'Exists' }] },
      true,
    ],
    ['Exists, key absent', { matchExpressions: [{ key: 'team', operator: 'Exists' }] }, false],
    ['DoesNotExist, key absent', { matchExpressions: [{ key: 'team', operator: 'DoesNotExist' }] }, true],
    ['DoesNotExist, key present', { matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, false],
    [
      'every expression must hold',
      {
        matchExpressions: [
          { key: 'app', operator: 'Exists' },
          { key: 'tier', operator: 'In', values: ['back'] },
        ],
      },
      false,
    ],
    [
      'matchLabels and matchExpressions combined, both hold',
      {
        matchLabels: { app: 'web' },
        matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['back'] }],
      },
      true,
    ],
    [
      'matchLabels and matchExpressions combined, matchLabels fails',
      { matchLabels: { app: 'api' }, matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
      false,
    ],
    [
      'matchLabels and matchExpressions combined, an expression fails',
      { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'team', operator: 'Exists' }] },
      false,
    ],
  ])('%s → %s', (_name, selector, expected) => {
    expect(selectorMatches(selector, LABELS)).toBe(expected);
  });

  it.each<[Selector | undefined, boolean]>([
    [undefined, true],
    [{}, true],
    [{ matchExpressions: [{ key: 'app', operator: 'DoesNotExist' }] }, true],
    [{ matchExpressions: [{ key: 'app', operator: 'NotIn', values: ['web'] }] }, true],
    [{ matchExpressions: [{ key: 'app', operator: 'Exists' }] }, false],
    [{ matchLabels: { app: 'web' } }, false],
  ])('a workload with no labels: %j → %s', (selector, expected) => {
    expect(selectorMatches(selector)).toBe(expected);
  });
});

const A = `sha256:${'a'.repeat(64)}`;

function workload(
  kind: WorkloadLike['kind'],
  name: string,
  containers: { name: string; image?: string }[],
  initContainers: { name: string; image?: string }[] = [],
  labels: Record<string, string> = { app: name },
): WorkloadLike {
  return {
    kind,
    metadata: { name, namespace: 'apps', labels },
    spec: { template: { spec: { containers, initContainers } } },
  };
}

describe('matchContainers', () => {
  const pod = workload(
    'Deployment',
    'web',
    [
      { name: 'app', image: `docker.io/library/nginx:1.27@${A}` },
      { name: 'other-tag', image: 'nginx:1.28' },
      { name: 'sidecar', image: 'busybox:1' },
      { name: 'no-image' },
    ],
    [{ name: 'init', image: 'nginx:1.27' }],
  );

  it.each<[string, string[] | undefined, { name: string; init: boolean; digest?: string }[]]>([
    [
      'every container on the repository and tag, init containers first, digests read',
      undefined,
      [
        { name: 'init', init: true },
        { name: 'app', init: false, digest: A },
      ],
    ],
    [
      'an empty containers list means all',
      [],
      [
        { name: 'init', init: true },
        { name: 'app', init: false, digest: A },
      ],
    ],
    ['only the named containers', ['app', 'sidecar'], [{ name: 'app', init: false, digest: A }]],
    ['a named container on another image is not matched', ['sidecar'], []],
  ])('%s', (_name, containers, expected) => {
    const found = matchContainers({ image: 'nginx:1.27', ...(containers ? { containers } : {}) }, pod);
    expect(found.map(({ name, init, digest }) => ({ name, init, ...(digest ? { digest } : {}) }))).toEqual(
      expected,
    );
  });

  it('a workload without a pod template matches nothing', () => {
    expect(matchContainers({ image: 'nginx:1.27' }, { kind: 'Deployment', metadata: { name: 'x' } })).toEqual(
      [],
    );
  });
});

describe('matchWorkloads', () => {
  const candidates = [
    workload('StatefulSet', 'db', [{ name: 'app', image: 'nginx:1.27' }], [], { app: 'db', tier: 'back' }),
    workload('Deployment', 'web', [{ name: 'app', image: 'nginx:1.27' }], [], { app: 'web', tier: 'front' }),
    workload('DaemonSet', 'agent', [{ name: 'app', image: 'nginx:1.27' }], [], { app: 'agent' }),
    workload('Deployment', 'api', [{ name: 'app', image: 'redis:7' }], [], { app: 'api', tier: 'front' }),
  ];

  it.each<[string, Partial<Parameters<typeof matchWorkloads>[0]>, string[]]>([
    ['kinds defaults to Deployment', {}, ['Deployment/web']],
    ['an empty kinds list means Deployment', { kinds: [] }, ['Deployment/web']],
    [
      'the kinds named, sorted by kind and name',
      { kinds: ['StatefulSet', 'DaemonSet', 'Deployment'] },
      ['DaemonSet/agent', 'Deployment/web', 'StatefulSet/db'],
    ],
    [
      'the selector filters',
      {
        kinds: ['StatefulSet', 'DaemonSet', 'Deployment'],
        workloadSelector: { matchExpressions: [{ key: 'tier', operator: 'Exists' }] },
      },
      ['Deployment/web', 'StatefulSet/db'],
    ],
    [
      'a selected workload must still run the image',
      { workloadSelector: { matchLabels: { tier: 'front' } } },
      ['Deployment/web'],
    ],
  ])('%s', (_name, criteria, expected) => {
    const found = matchWorkloads({ image: 'nginx:1.27', ...criteria }, candidates);
    expect(found.map((m) => `${m.workload.kind}/${m.workload.metadata.name}`)).toEqual(expected);
  });
});
