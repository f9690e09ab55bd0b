/**
 * A local environment as its folder holds it: find the running one, probe it, stop it and remove what it
 * wrote (`scripts/local-cluster status|down`), and the shell exports of `dir/env`.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { LocalClusterInfo } from '../cluster-info.ts';
import { KWOK_NODE_NAME } from './kwok-node.ts';
import { readyCondition } from './node-status.ts';
import {
  type HttpResponse,
  httpRequest,
  isRecordedProcessAlive,
  readProcessRecords,
  STOP_GRACE_MS,
  stopRecordedProcesses,
} from './processes.ts';
import { tearDownRealNode } from './real-node.ts';
import { mountsUnder, readMountInfo } from './real-node-host.ts';

const STATE_ENTRIES = [
  'kubeconfig',
  'cluster.json',
  'env',
  'pids',
  'logs',
  'pki',
  'etcd',
  'config',
  'registry',
  'node',
];

/** The environment running in `dir`, if every recorded process still runs. */
export async function findRunningLocalCluster(dir: string): Promise<LocalClusterInfo | undefined> {
  const records = await readProcessRecords(dir);
  if (records.length === 0 || !records.every(isRecordedProcessAlive)) return undefined;
  try {
    return JSON.parse(await readFile(join(dir, 'cluster.json'), 'utf8')) as LocalClusterInfo;
  } catch {
    return undefined;
  }
}

/**
 * Stops everything the environment in `dir` runs, from its files alone: the real node first (its
 * containers, mounts, cgroups and kernel settings), then every recorded process. Returns what it stopped.
 */
export async function stopLocalCluster(dir: string, graceMs = STOP_GRACE_MS): Promise<string[]> {
  const node = await tearDownRealNode(dir);
  const processes = await stopRecordedProcesses(dir, graceMs);
  return [...node, ...processes.filter((p) => !node.includes(p))];
}

/**
 * Removes what `startLocalCluster` wrote in `dir` (only that: `dir` may hold other files). Refuses while
 * anything is mounted under `dir`: a container's root filesystem may hold a bind mount of a host folder.
 */
export async function removeLocalClusterState(dir: string): Promise<void> {
  const mounted = mountsUnder(dir, process.platform === 'linux' ? readMountInfo() : []);
  if (mounted.length > 0) {
    throw new Error(
      `not removing ${dir}: still mounted under it: ${mounted.join(', ')}; run scripts/local-cluster down --dir ${dir}`,
    );
  }
  await Promise.all(STATE_ENTRIES.map((e) => rm(join(dir, e), { recursive: true, force: true })));
}

export interface ProbeResult {
  name: string;
  ok: boolean;
  detail: string;
}

/** Checks that the apiserver is ready, the node Ready and each registry answers `/v2/`. */
export async function probeLocalCluster(info: LocalClusterInfo): Promise<ProbeResult[]> {
  const ca = await readFile(info.apiServerCaFile, 'utf8');
  const kubeconfig = parseYaml(await readFile(info.kubeconfig, 'utf8')) as {
    users?: { user?: { token?: string } }[];
  };
  const headers = { authorization: `Bearer ${kubeconfig.users?.[0]?.user?.token ?? ''}` };
  const probe = async (name: string, url: string, check: (r: HttpResponse) => string | undefined) => {
    try {
      const res = await httpRequest(url, { ca, headers: url.startsWith(info.apiServer) ? headers : {} });
      const problem = check(res);
      return { name, ok: problem === undefined, detail: problem ?? `${url} OK` };
    } catch (err) {
      return { name, ok: false, detail: `${url}: ${err instanceof Error ? err.message : String(err)}` };
    }
  };
  const nodeName = info.nodeName ?? KWOK_NODE_NAME; // cluster.json of an environment from before nodeName
  const status = (want: number) => (r: HttpResponse) => (r.status === want ? undefined : `HTTP ${r.status}`);
  return Promise.all([
    probe('kube-apiserver', `${info.apiServer}/readyz`, status(200)),
    probe(`node ${nodeName}`, `${info.apiServer}/api/v1/nodes/${nodeName}`, (r) => {
      if (r.status !== 200) return `HTTP ${r.status}`;
      const ready = readyCondition(r);
      return ready?.status === 'True' ? undefined : `Ready=${ready?.status ?? 'unknown'}`;
    }),
    probe('registry open', `${info.registries.open.url}/v2/`, status(200)),
    probe('registry basic', `${info.registries.basic.url}/v2/`, status(401)),
    probe('registry token', `${info.registries.token.url}/v2/`, status(401)),
    probe('token server', new URL('/healthz', info.registries.token.tokenRealm).href, status(200)),
  ]);
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** `dir/env`: shell exports for a running environment (`eval "$(scripts/local-cluster env)"`). */
export function renderEnvFile(info: LocalClusterInfo): string {
  const { open, basic, token } = info.registries;
  const vars: [string, string | undefined][] = [
    ['KUBECONFIG', info.kubeconfig],
    ['KW_NODE_NAME', info.nodeName],
    ['KW_REGISTRY_OPEN', open.host],
    ['KW_REGISTRY_BASIC', basic.host],
    ['KW_REGISTRY_BASIC_USERNAME', basic.username],
    ['KW_REGISTRY_BASIC_PASSWORD', basic.password],
    ['KW_REGISTRY_BASIC_CA_FILE', basic.caFile],
    ['KW_REGISTRY_TOKEN', token.host],
    ['KW_REGISTRY_TOKEN_USERNAME', token.username],
    ['KW_REGISTRY_TOKEN_PASSWORD', token.password],
    ['KW_REGISTRY_TOKEN_REALM', token.tokenRealm],
    ['KW_REGISTRY_TOKEN_SERVICE', token.tokenService],
    // ctr reads these: `ctr containers ls` shows the real node's containers.
    ['CONTAINERD_ADDRESS', info.realNode?.containerdSocket],
    ['CONTAINERD_NAMESPACE', info.realNode?.containerdNamespace],
  ];
  return [
    `# Kubewatcher local environment in ${info.dir}: eval "$(scripts/local-cluster env)"`,
    `export PATH=${shellQuote(info.binDir)}:"$PATH"`,
    ...vars.filter(([, v]) => v !== undefined).map(([k, v]) => `export ${k}=${shellQuote(v ?? '')}`),
    '',
  ].join('\n');
}
