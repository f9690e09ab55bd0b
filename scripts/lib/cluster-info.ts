/**
 * What a running local environment (control plane + registries) tells its users: the demo, the
 * integration tests (through vitest's `inject('localCluster')`) and the benchmarks. `scripts/local-cluster
 * up` writes it to `.local/cluster.json`; the test global setup starts a private one per test run.
 */
export interface RegistryEndpoint {
  /** `host:port` to use in image references, e.g. `127.0.0.1:41234`. */
  host: string;
  /** Base URL of the registry API (`http://…` or `https://…`). */
  url: string;
  /** Credentials accepted by this registry; absent for the open registry. */
  username?: string;
  password?: string;
  /** PEM file of the CA that signed the registry's certificate, when it serves HTTPS. */
  caFile?: string;
}

/** The real node (`startLocalCluster({ realNode: true })`): what tests and installs on it need. */
export interface RealNodeInfo {
  /** Node name, also its InternalIP: `127.0.0.1`. */
  name: string;
  /** Where pods with `hostNetwork: true` reach the apiserver (no kube-proxy: the Service IP routes nowhere). */
  apiServerHost: string;
  apiServerPort: number;
  /** containerd's socket (`ctr --address SOCKET --namespace k8s.io ...`). */
  containerdSocket: string;
  containerdNamespace: string;
  /** The kubelet's API port on 127.0.0.1. */
  kubeletPort: number;
  /** Pods' IPs (they live on no interface: probes to them reach the host; use exec probes). */
  podSubnet: string;
  /** The pause image every pod's sandbox runs. */
  sandboxImage: string;
  /** `host:port` of each registry as the node pulls from it (image references for pods). */
  registries: { open: string; basic: string; token: string };
}

export interface LocalClusterInfo {
  /** Admin kubeconfig (system:masters). */
  kubeconfig: string;
  /** `https://127.0.0.1:PORT` of kube-apiserver. */
  apiServer: string;
  /** PEM bundle of the apiserver's serving CA. */
  apiServerCaFile: string;
  /** Folder holding the built binaries (kubectl, crane, …). */
  binDir: string;
  /** Working folder of this environment (logs, data, pids). */
  dir: string;
  /** The node pods run on: `kwok-node-0` (fake, the default) or `127.0.0.1` (the real node). */
  nodeName: string;
  /** Set when the environment has a real node (containerd + kubelet) instead of the kwok one. */
  realNode?: RealNodeInfo;
  registries: {
    /** No authentication, plain HTTP. */
    open: RegistryEndpoint;
    /** htpasswd basic authentication, HTTPS with the environment's own CA. */
    basic: RegistryEndpoint;
    /** Bearer token authentication through the project's token server, plain HTTP. */
    token: RegistryEndpoint & { tokenRealm: string; tokenService: string };
  };
}

// What the test global setup (scripts/lib/test-global-setup.ts) provides to every test file, declared
// here, beside the type, so each file that imports it can `inject('localCluster')`.
declare module 'vitest' {
  interface ProvidedContext {
    localCluster: LocalClusterInfo;
  }
}
