import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { tarArchive } from '../images.ts';
import {
  claimRealNode,
  cniConflist,
  containerdConfigToml,
  kubeletConfigYaml,
  realNodePaths,
  registryHostsFiles,
  releaseRealNode,
  shimSocketPath,
} from './real-node.ts';
import {
  describeMissing,
  isStaticElf,
  mountsUnder,
  packagesToInstall,
  readMountInfo,
} from './real-node-host.ts';

const paths = realNodePaths('/tmp/env');
const registries = {
  open: { host: '127.0.0.1:5001', url: 'http://127.0.0.1:5001' },
  basic: { host: '127.0.0.1:5002', url: 'https://127.0.0.1:5002', caFile: '/tmp/env/pki/ca.crt' },
  token: {
    host: '127.0.0.1:5003',
    url: 'http://127.0.0.1:5003',
    tokenRealm: 'http://localhost:5004/token',
    tokenService: 's',
  },
};

describe('containerd configuration', () => {
  const toml = containerdConfigToml({
    paths,
    sandboxImage: '127.0.0.1:5001/kubewatcher/pause:1',
    shimCgroup: '/kw-1/shims',
  });

  it.each([
    ['root', `root = "/tmp/env/node/containerd/root"`],
    ['state', `state = "/tmp/env/node/containerd/state"`],
    ['socket', `address = "/tmp/env/node/containerd.sock"`],
    ['sandbox image in the open registry', `sandbox_image = "127.0.0.1:5001/kubewatcher/pause:1"`],
    ['oom_score_adj restricted (no CAP_SYS_RESOURCE)', 'restrict_oom_score_adj = true'],
    ['stream server on loopback', 'stream_server_address = "127.0.0.1"'],
    ['network namespaces under the state folder', 'netns_mounts_under_state_dir = true'],
    ['private runc root', `Root = "/tmp/env/node/runc"`],
    ['cgroupfs', 'SystemdCgroup = false'],
    ['shims in the node cgroup', 'ShimCgroup = "/kw-1/shims"'],
    ['registry hosts folder', `config_path = "/tmp/env/node/certs.d"`],
  ])('sets %s', (_, line) => {
    expect(toml).toContain(line);
  });

  it('names no path outside the environment folder but the Debian binaries', () => {
    const paths = [...toml.matchAll(/"(\/[^"]*)"/g)].map((m) => m[1] ?? '');
    expect(paths.filter((p) => !p.startsWith('/tmp/env/'))).toEqual([
      '/usr/sbin/runc',
      '/kw-1/shims',
      '/usr/lib/cni',
    ]);
  });
});

describe('shimSocketPath', () => {
  it("is containerd 1.6's: the SHA-256 of address/namespace/id under /run/containerd/s", () => {
    // Seen on a running shim: -address /tmp/kw-rn-vZuu/node/containerd.sock -namespace k8s.io -id b5657…
    const id = 'b565747fda10c3516caa970e7e12e19e5417bae62d6c7630be0be71234b3d7a2';
    expect(shimSocketPath('/tmp/kw-rn-vZuu/node/containerd.sock', 'k8s.io', id)).toBe(
      '/run/containerd/s/1376124a4dff06aa2142034b43989e8005d18963c26aa09a38647e06213fc14a',
    );
  });
});

describe('registryHostsFiles', () => {
  it('plain HTTP for open and token, the CA for the HTTPS registry, pull and resolve only', () => {
    const files = registryHostsFiles(registries, '/fallback/ca.crt');
    expect(Object.keys(files)).toEqual(['127.0.0.1:5001', '127.0.0.1:5002', '127.0.0.1:5003']);
    expect(files['127.0.0.1:5001']).toBe(
      'server = "http://127.0.0.1:5001"\n\n[host."http://127.0.0.1:5001"]\n  capabilities = ["pull", "resolve"]\n',
    );
    expect(files['127.0.0.1:5002']).toContain('ca = "/tmp/env/pki/ca.crt"');
    expect(files['127.0.0.1:5003']).not.toContain('ca =');
  });
});

describe('cniConflist', () => {
  it('is host-local IPAM alone over 127.100.0.0/16, its data in the environment', () => {
    expect(JSON.parse(cniConflist('kubewatcher-x', '/tmp/env/node/cni/ipam'))).toEqual({
      cniVersion: '0.4.0',
      name: 'kubewatcher-x',
      plugins: [
        {
          type: 'host-local',
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: '127.100.0.0/16' }]],
            dataDir: '/tmp/env/node/cni/ipam',
          },
        },
      ],
    });
  });
});

describe('kubeletConfigYaml', () => {
  const config = parseYaml(
    kubeletConfigYaml({ paths, kubeletPort: 10250, healthzPort: 10248, caFile: '/ca', cgroupRoot: '/kw-1' }),
  ) as Record<string, unknown>;

  it('listens on loopback only, with no read-only port', () => {
    expect(config).toMatchObject({ address: '127.0.0.1', healthzBindAddress: '127.0.0.1', readOnlyPort: 0 });
  });
  it('refuses anonymous requests and asks the apiserver about the rest', () => {
    expect(config).toMatchObject({
      authentication: {
        anonymous: { enabled: false },
        webhook: { enabled: true },
        x509: { clientCAFile: '/ca' },
      },
      authorization: { mode: 'Webhook' },
    });
  });
  it('cgroupfs under its own root, cgroup v1 allowed, containerd of the environment', () => {
    expect(config).toMatchObject({
      cgroupDriver: 'cgroupfs',
      cgroupRoot: '/kw-1',
      failCgroupV1: false,
      containerRuntimeEndpoint: 'unix:///tmp/env/node/containerd.sock',
      resolvConf: '/tmp/env/node/resolv.conf',
      podLogsDir: '/tmp/env/node/pod-logs',
    });
  });
});

describe('mounts', () => {
  const mountinfo = [
    '22 1 254:0 / / rw - ext4 /dev/vda rw',
    '30 22 0:40 / /tmp/env/node/kubelet rw shared:1 - ext4 /dev/vda rw',
    '31 30 0:41 / /tmp/env/node/kubelet/pods/x/volumes/token rw - tmpfs tmpfs rw',
    '32 22 0:42 / /tmp/env/node/containerd/state/rootfs rw - overlay overlay rw',
    '33 22 0:43 / /tmp/env-other rw - tmpfs tmpfs rw',
    '34 22 0:44 / /tmp/env/with\\040space rw - tmpfs tmpfs rw',
  ].join('\n');

  it('reads mount points and types, decoding octal escapes', () => {
    expect(readMountInfo(mountinfo).map((m) => [m.mountPoint, m.fsType])).toEqual([
      ['/', 'ext4'],
      ['/tmp/env/node/kubelet', 'ext4'],
      ['/tmp/env/node/kubelet/pods/x/volumes/token', 'tmpfs'],
      ['/tmp/env/node/containerd/state/rootfs', 'overlay'],
      ['/tmp/env-other', 'tmpfs'],
      ['/tmp/env/with space', 'tmpfs'],
    ]);
  });

  it('lists the mounts under the folder only, latest first', () => {
    expect(mountsUnder('/tmp/env', readMountInfo(mountinfo))).toEqual([
      '/tmp/env/with space',
      '/tmp/env/node/containerd/state/rootfs',
      '/tmp/env/node/kubelet/pods/x/volumes/token',
      '/tmp/env/node/kubelet',
    ]);
  });
});

describe('prerequisites', () => {
  const missing = [
    { what: '/usr/sbin/runc (the OCI runtime)', debianPackage: 'runc' },
    { what: '/usr/bin/containerd (the container runtime)', debianPackage: 'containerd' },
    { what: "/usr/bin/containerd-shim-runc-v2 (containerd's runc shim)", debianPackage: 'containerd' },
    { what: 'root: containerd and the kubelet mount filesystems and create cgroups' },
  ];

  it('installs each missing package once', () => {
    expect(packagesToInstall(missing)).toEqual(['containerd', 'runc']);
  });

  it('names each missing thing and its package', () => {
    expect(describeMissing(missing.slice(0, 1).concat(missing.slice(3)))).toBe(
      [
        '  - /usr/sbin/runc (the OCI runtime) [Debian package runc]',
        '  - root: containerd and the kubelet mount filesystems and create cgroups',
      ].join('\n'),
    );
  });

  it('tells a static program from a dynamic one and from a non-program', () => {
    expect(isStaticElf(process.execPath)).toBe(false); // node is dynamically linked
    expect(isStaticElf('/proc/self/status')).toBe(false);
    expect(isStaticElf('/nonexistent')).toBe(false);
  });
});

describe('tarArchive', () => {
  it('writes files, folders and links as ustar entries with their types and modes', () => {
    const tar = tarArchive([
      { type: 'dir', name: 'bin/' },
      { type: 'file', name: 'bin/busybox', content: Buffer.from('x'), mode: 0o755 },
      { type: 'symlink', name: 'bin/sh', target: 'busybox' },
    ]);
    const header = (i: number) => tar.subarray(i * 512, i * 512 + 512);
    const field = (h: Buffer, start: number, length: number) =>
      h
        .subarray(start, start + length)
        .toString()
        .replace(/\0.*$/s, '');
    // Entry 0: folder; entry 1: header + one data block; entry 3: the link.
    expect([field(header(0), 0, 100), field(header(0), 156, 1), field(header(0), 100, 8)]).toEqual([
      'bin/',
      '5',
      '0000755',
    ]);
    expect([field(header(1), 0, 100), field(header(1), 156, 1), field(header(1), 124, 12)]).toEqual([
      'bin/busybox',
      '0',
      '00000000001',
    ]);
    expect([field(header(3), 0, 100), field(header(3), 156, 1), field(header(3), 157, 100)]).toEqual([
      'bin/sh',
      '2',
      'busybox',
    ]);
    expect(tar.length).toBe(512 * 4 + 1024);
  });
});

describe('the machine-wide real-node claim', () => {
  const scratch = () => {
    const dir = mkdtempSync(join(tmpdir(), 'kw-claim-'));
    return { claim: join(dir, 'claim'), envA: join(dir, 'a'), envB: join(dir, 'b'), root: dir };
  };

  it('is taken atomically: a second environment is refused while the first one is starting', async () => {
    const t = scratch();
    writeFileSync(`${t.envA}`, ''); // the folder of A exists (a file stands in: only its existence is read)
    await claimRealNode(t.envA, t.claim);
    await expect(claimRealNode(t.envB, t.claim)).rejects.toThrow(/another kubelet runs on this machine/);
    await claimRealNode(t.envA, t.claim); // its own claim again: fine
    expect(JSON.parse(readFileSync(t.claim, 'utf8')).dir).toBe(t.envA);
  });

  it('is taken over when its environment is gone or its owner died, and released only by its holder', async () => {
    const t = scratch();
    writeFileSync(
      t.claim,
      JSON.stringify({ dir: join(t.root, 'gone'), pid: process.pid, claimedAt: Date.now() }),
    );
    await claimRealNode(t.envB, t.claim);
    expect(JSON.parse(readFileSync(t.claim, 'utf8')).dir).toBe(t.envB);

    writeFileSync(t.envA, '');
    writeFileSync(t.claim, JSON.stringify({ dir: t.envA, pid: 2 ** 22 + 1, claimedAt: Date.now() }));
    await claimRealNode(t.envB, t.claim); // A's owner pid is not alive and A recorded no kubelet
    expect(JSON.parse(readFileSync(t.claim, 'utf8')).dir).toBe(t.envB);

    await releaseRealNode(t.envA, t.claim); // not A's: stays
    expect(JSON.parse(readFileSync(t.claim, 'utf8')).dir).toBe(t.envB);
    await releaseRealNode(t.envB, t.claim);
    expect(() => readFileSync(t.claim)).toThrow(/ENOENT/);
  });
});
