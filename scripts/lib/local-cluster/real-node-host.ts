/**
 * What a real node needs from the machine and what it changes on it: the prerequisites (root, Linux
 * capabilities, cgroups, overlayfs, the Debian packages containerd, runc, containernetworking-plugins and
 * busybox-static), and the host state the kubelet and containerd touch outside the environment folder
 * (mounts under the folder, a cgroup tree of their own, kernel settings the kubelet rewrites, a few
 * fixed paths). The teardown works from files on disk only, so `down` can clean up after an owner
 * that crashed.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, readFile, rm, rmdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { canInstallDebianPackages, installDebianPackages } from '../debian-packages.ts';

const run = promisify(execFile);

// ---------------------------------------------------------------------------------------------------
// Prerequisites

/** A file a Debian package provides, and what it is for. */
interface PackagedFile {
  path: string;
  debianPackage: string;
  purpose: string;
  /** The file must be a statically linked ELF program (it is copied into images). */
  static?: boolean;
}

export const CNI_BIN_DIR = '/usr/lib/cni';

const PACKAGED_FILES: PackagedFile[] = [
  { path: '/usr/bin/containerd', debianPackage: 'containerd', purpose: 'the container runtime' },
  {
    path: '/usr/bin/containerd-shim-runc-v2',
    debianPackage: 'containerd',
    purpose: "containerd's runc shim",
  },
  { path: '/usr/sbin/runc', debianPackage: 'runc', purpose: 'the OCI runtime' },
  {
    path: `${CNI_BIN_DIR}/host-local`,
    debianPackage: 'containernetworking-plugins',
    purpose: 'pod IPs (host-local IPAM)',
  },
  {
    path: `${CNI_BIN_DIR}/loopback`,
    debianPackage: 'containernetworking-plugins',
    purpose: "the pods' lo interface",
  },
  {
    path: '/bin/busybox',
    debianPackage: 'busybox-static',
    purpose: 'the pause and test images',
    static: true,
  },
];

export const RUNC = '/usr/sbin/runc';
export const BUSYBOX = '/bin/busybox';

/** Whether `file` is an ELF program without an interpreter (PT_INTERP), i.e. statically linked. */
export function isStaticElf(file: string): boolean {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch {
    return false;
  }
  if (data.length < 64 || data.readUInt32BE(0) !== 0x7f454c46 || data[4] !== 2) return false; // ELF64
  const phoff = Number(data.readBigUInt64LE(32));
  const phentsize = data.readUInt16LE(54);
  const phnum = data.readUInt16LE(56);
  for (let i = 0; i < phnum; i++) {
    if (data.readUInt32LE(phoff + i * phentsize) === 3) return false; // PT_INTERP
  }
  return true;
}

/** One thing the machine lacks, in words a person can act on. */
export interface MissingPrerequisite {
  what: string;
  /** Debian package that provides it, when installing one fixes it. */
  debianPackage?: string;
}

/** Bits of CapEff (linux/capability.h) the node needs. CAP_SYS_RESOURCE is not among them. */
const NEEDED_CAPABILITIES: [number, string][] = [
  [21, 'CAP_SYS_ADMIN (mounts, namespaces)'],
  [12, 'CAP_NET_ADMIN (pod network namespaces)'],
  [18, 'CAP_SYS_CHROOT (pivot_root into a container)'],
  [27, 'CAP_MKNOD (container /dev)'],
];

/** The cgroup hierarchies mounted on this machine: v1 controllers by name, or the single v2 one. */
export function cgroupMounts(mounts = readMountInfo()): { path: string; version: 1 | 2; name: string }[] {
  return mounts
    .filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2')
    .map((m) => ({
      path: m.mountPoint,
      version: m.fsType === 'cgroup2' ? (2 as const) : (1 as const),
      name: m.mountPoint.split('/').at(-1) ?? '',
    }));
}

/** What keeps this machine from running a real node, given the kubelet's path (empty: nothing). */
export function missingPrerequisites(kubelet: string): MissingPrerequisite[] {
  const missing: MissingPrerequisite[] = [];
  if (process.platform !== 'linux') {
    return [{ what: `Linux (this is ${process.platform}): containers need Linux namespaces and cgroups` }];
  }
  if (process.getuid?.() !== 0) {
    missing.push({ what: 'root: containerd and the kubelet mount filesystems and create cgroups' });
  }
  const status = readFileSync('/proc/self/status', 'utf8');
  const capEff = BigInt(`0x${/^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
  for (const [bit, name] of NEEDED_CAPABILITIES) {
    if ((capEff & (1n << BigInt(bit))) === 0n) missing.push({ what: `the capability ${name}` });
  }
  if (!/\toverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'))) {
    missing.push({ what: 'the overlay filesystem in the kernel (/proc/filesystems)' });
  }
  const cgroups = cgroupMounts();
  if (!cgroups.some((c) => c.version === 2)) {
    for (const controller of ['cpu', 'cpuacct', 'cpuset', 'memory', 'pids', 'devices', 'freezer']) {
      if (!cgroups.some((c) => c.name.split(',').includes(controller))) {
        missing.push({ what: `the cgroup v1 controller ${controller} mounted under /sys/fs/cgroup` });
      }
    }
  }
  for (const f of PACKAGED_FILES) {
    if (!existsSync(f.path)) {
      missing.push({ what: `${f.path} (${f.purpose})`, debianPackage: f.debianPackage });
    } else if (f.static && !isStaticElf(f.path)) {
      missing.push({
        what: `${f.path} is not statically linked (${f.purpose}; the busybox package has a dynamic one)`,
        debianPackage: f.debianPackage,
      });
    }
  }
  if (!existsSync(kubelet)) {
    missing.push({ what: `${kubelet} (the kubelet: scripts/build-binaries.sh builds it)` });
  }
  return missing;
}

/** Missing Debian packages, each once, in a stable order. */
export function packagesToInstall(missing: MissingPrerequisite[]): string[] {
  return [...new Set(missing.map((m) => m.debianPackage).filter((p) => p !== undefined))].sort();
}

export function describeMissing(missing: MissingPrerequisite[]): string {
  return missing
    .map((m) => `  - ${m.what}${m.debianPackage ? ` [Debian package ${m.debianPackage}]` : ''}`)
    .join('\n');
}

/**
 * Checks the machine and installs the missing Debian packages with apt-get (after `apt-get update`) when
 * `install` allows it; throws naming exactly what is still missing.
 */
export async function ensureRealNodePrerequisites(options: {
  kubelet: string;
  install: boolean;
  log: (line: string) => void;
}): Promise<void> {
  let missing = missingPrerequisites(options.kubelet);
  const packages = packagesToInstall(missing);
  // Root is needed by apt-get as much as by the node; without it, report everything at once.
  if (packages.length > 0 && options.install && canInstallDebianPackages()) {
    await installDebianPackages(packages, 'the real node needs them', options.log);
    missing = missingPrerequisites(options.kubelet);
  }
  if (missing.length > 0) {
    const hint =
      packages.length > 0
        ? `\nInstall the packages with: apt-get update && apt-get install -y ${packagesToInstall(missing).join(' ')}`
        : '';
    throw new Error(`this machine cannot run the real node; missing:\n${describeMissing(missing)}${hint}`);
  }
}

/** The names in a folder; none when it does not exist (or is not readable). */
export function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------------
// Mounts

export interface MountEntry {
  mountPoint: string;
  fsType: string;
}

/** `/proc/self/mountinfo` in mount order (field 5 is the mount point, octal escapes decoded). */
export function readMountInfo(text = readFileSync('/proc/self/mountinfo', 'utf8')): MountEntry[] {
  const decodeOctal = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const fields = line.split(' ');
      const dash = fields.indexOf('-');
      return { mountPoint: decodeOctal(fields[4] ?? ''), fsType: fields[dash + 1] ?? '' };
    });
}

/**
 * Mount points at or under `dir`, in the order to unmount them: the latest first, which takes stacked
 * mounts on one path (the kubelet bind-mounts its root onto itself) and mounts inside mounts apart.
 */
export function mountsUnder(dir: string, mounts: MountEntry[]): string[] {
  return mounts
    .map((m) => m.mountPoint)
    .filter((p) => p === dir || p.startsWith(`${dir}/`))
    .reverse();
}

/** Unmounts everything at or under `dir`; throws naming what stays mounted. */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 3; round++) {
    const points = mountsUnder(dir, readMountInfo());
    if (points.length === 0) return;
    for (const point of points) {
      try {
        await run('umount', [point]);
      } catch {
        // Busy (a process still has it open) or already gone with its parent: detach it instead.
        await run('umount', ['-l', point]).catch(() => {});
      }
    }
  }
  const left = mountsUnder(dir, readMountInfo());
  if (left.length > 0) throw new Error(`still mounted under ${dir}: ${left.join(', ')}`);
}

// ---------------------------------------------------------------------------------------------------
// The node's cgroup tree, kernel settings, fixed paths: recorded before the node starts, undone after

/** The kernel settings the kubelet sets at start (its setupKernelTunables), as /proc/sys paths. */
export const KUBELET_SYSCTLS = [
  'vm/overcommit_memory',
  'vm/panic_on_oom',
  'kernel/panic',
  'kernel/panic_on_oops',
  'kernel/keys/root_maxkeys',
  'kernel/keys/root_maxbytes',
];

/**
 * Paths outside the environment folder the kubelet, containerd's shims and CNI write to no matter how
 * they are configured. Those that do not exist before the node starts are removed after it stops.
 */
export const FIXED_HOST_PATHS = [
  '/var/lib/kubelet',
  '/var/lib/kubelet/device-plugins',
  '/var/log/containers',
  '/var/lib/cni',
  '/var/lib/cni/results',
  '/run/containerd',
  '/run/containerd/s',
  '/run/mount',
];

/** What the node's teardown needs to undo, written to `dir/node/host-state.json` before anything starts. */
export interface HostState {
  /** The cgroup root of the node's pods (kubelet `cgroupRoot`), e.g. `/kubewatcher-1a2b3c4d`. */
  cgroupRoot: string;
  /** Folders of that root, one per mounted hierarchy, as created. */
  cgroupDirs: string[];
  /** Kernel settings before the kubelet started. */
  sysctls: Record<string, string>;
  /** Fixed paths that did not exist before. */
  createdPaths: string[];
  /** CNI network name: prefix of the cache files CNI writes under /var/lib/cni/results. */
  cniNetwork: string;
  /** The environment folder: only links into it are removed from /var/log/containers. */
  dir: string;
  /** containerd's address: only shims serving it are stopped. */
  containerdSocket: string;
}

export async function readHostState(file: string): Promise<HostState | undefined> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as HostState;
  } catch {
    return undefined;
  }
}

/**
 * Name of the cgroup under the node's root that containerd puts its shims in (runc option
 * `ShimCgroup`): then every process the node runs but the kubelet and containerd, a shim left by a
 * failed sandbox included, is in the node's cgroups, and the teardown finds them all there.
 */
export const SHIM_CGROUP = 'shims';

/**
 * Records the kernel settings and fixed paths as they are, and creates the node's cgroup root (and its
 * shim cgroup) in every hierarchy (the kubelet refuses a `cgroupRoot` that does not exist). v1 cpuset
 * folders start empty and take no task until they get their parent's cpus and mems.
 */
export async function prepareHost(
  stateFile: string,
  base: Pick<HostState, 'cgroupRoot' | 'cniNetwork' | 'dir' | 'containerdSocket'>,
): Promise<HostState> {
  const sysctls: Record<string, string> = {};
  for (const key of KUBELET_SYSCTLS) {
    try {
      sysctls[key] = readFileSync(`/proc/sys/${key}`, 'utf8').trim();
    } catch {
      // Not on this kernel: nothing to restore.
    }
  }
  const state: HostState = {
    ...base,
    cgroupDirs: [],
    sysctls,
    createdPaths: FIXED_HOST_PATHS.filter((p) => !existsSync(p)),
  };
  // Written before the first change, so a teardown after a failure here finds what to undo.
  await writeFile(stateFile, `${JSON.stringify(state, null, 2)}\n`);
  for (const hierarchy of cgroupMounts()) {
    const cgroupDir = join(hierarchy.path, base.cgroupRoot);
    state.cgroupDirs.push(cgroupDir);
    // The root for the kubelet's pods, and beside them one for containerd's shims.
    for (const dir of [cgroupDir, join(cgroupDir, SHIM_CGROUP)]) {
      await mkdir(dir, { recursive: true });
      if (hierarchy.version === 1 && hierarchy.name.split(',').includes('cpuset')) {
        for (const f of ['cpuset.cpus', 'cpuset.mems']) {
          await writeFile(join(dir, f), readFileSync(join(hierarchy.path, f), 'utf8').trim());
        }
      }
    }
  }
  await writeFile(stateFile, `${JSON.stringify(state, null, 2)}\n`);
  return state;
}

/** The pids in the node's cgroup tree (every container process of every pod), any hierarchy. */
export function pidsInCgroups(cgroupDirs: string[]): number[] {
  const pids = new Set<number>();
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    const entries = listDir(dir);
    try {
      for (const line of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        if (/^\d+$/.test(line)) pids.add(Number(line));
      }
    } catch {
      // gone meanwhile
    }
    for (const e of entries) {
      const sub = join(dir, e);
      try {
        if (statSync(sub).isDirectory()) walk(sub);
      } catch {
        // gone meanwhile
      }
    }
  };
  for (const d of cgroupDirs) walk(d);
  return [...pids];
}

/** Removes the node's cgroup folders, deepest first (a cgroup folder goes with rmdir once it is empty). */
export async function removeCgroups(cgroupDirs: string[]): Promise<void> {
  const left: string[] = [];
  const remove = async (dir: string) => {
    if (!existsSync(dir)) return; // already gone
    const entries = listDir(dir);
    for (const e of entries) {
      const sub = join(dir, e);
      try {
        if (statSync(sub).isDirectory()) await remove(sub);
      } catch {
        // gone meanwhile
      }
    }
    try {
      await rmdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') left.push(dir);
    }
  };
  for (const d of cgroupDirs) await remove(d);
  if (left.length > 0) throw new Error(`could not remove the cgroups ${left.join(', ')}`);
}

/** Puts back the kernel settings the kubelet changed. */
export async function restoreSysctls(saved: Record<string, string>): Promise<string[]> {
  const restored: string[] = [];
  for (const [key, value] of Object.entries(saved)) {
    const file = `/proc/sys/${key}`;
    try {
      if (readFileSync(file, 'utf8').trim() !== value) {
        await writeFile(file, value);
        restored.push(`${key.replaceAll('/', '.')}=${value}`);
      }
    } catch {
      // Not writable here: it was not changed either.
    }
  }
  return restored;
}

/**
 * Removes what the node left in the fixed paths: its links in /var/log/containers, its CNI cache files,
 * and each fixed path it created, once empty (the kubelet's device-plugin socket and checkpoint too when
 * it created that folder).
 */
export async function cleanFixedPaths(
  state: HostState,
  node: { shimSockets: string[]; containerIds: string[] },
): Promise<void> {
  for (const name of listDir('/var/log/containers')) {
    const link = join('/var/log/containers', name);
    try {
      if (readlinkSync(link).startsWith(`${state.dir}/`)) await unlink(link);
    } catch {
      // not a link
    }
  }
  // CNI caches each attachment as NETWORK-SANDBOXID-IFNAME: ours are our network's and the loopback
  // network's (containerd's own, named cni-loopback) for our sandboxes.
  const ids = new Set(node.containerIds);
  for (const name of listDir('/var/lib/cni/results')) {
    const loopback = /^cni-loopback-([0-9a-f]+)-lo$/.exec(name)?.[1];
    if (name.startsWith(`${state.cniNetwork}-`) || (loopback !== undefined && ids.has(loopback))) {
      await rm(join('/var/lib/cni/results', name), { force: true });
    }
  }
  for (const socket of node.shimSockets) await rm(socket, { force: true });
  const created = new Set(state.createdPaths);
  if (created.has('/var/lib/kubelet/device-plugins')) {
    for (const f of ['kubelet.sock', 'kubelet_internal_checkpoint']) {
      await rm(join('/var/lib/kubelet/device-plugins', f), { force: true });
    }
  }
  if (created.has('/run/mount')) {
    for (const f of ['utab.lock', 'utab']) {
      const file = join('/run/mount', f);
      if (existsSync(file) && statSync(file).size === 0) await rm(file, { force: true });
    }
  }
  // Deepest first: a created parent goes once its created children have.
  for (const path of [...state.createdPaths].sort((a, b) => b.length - a.length)) {
    try {
      await rmdir(path);
    } catch {
      // Not empty (something else uses it now) or gone: leave it.
    }
  }
}
