import {
  type ApiConstructor,
  type ApiType,
  createConfiguration,
  KubeConfig,
  type RequestContext,
  type SecurityAuthentication,
  ServerConfiguration,
  setHeaderMiddleware,
} from '@kubernetes/client-node';

/**
 * The one place that builds a KubeConfig: an explicit file when given, else $KUBECONFIG,
 * ~/.kube/config or the in-cluster service account, in that order.
 */
export function loadKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kc = new KubeConfig();
  if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
  else kc.loadFromDefault();
  if (!kc.getCurrentCluster()) {
    throw new Error('no Kubernetes cluster configured: pass --kubeconfig, set KUBECONFIG, or run in a pod');
  }
  return kc;
}

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

/**
 * The kubeconfig's authentication, with one connection pool per (cluster, user) instead of one per
 * request. @kubernetes/client-node 2.0.1 gives every API request a new undici Agent
 * (KubeConfig.createDispatcher is not cached, unlike createAgent for watches), so every call pays a
 * TLS handshake and leaves its socket idle behind it: 5,000 status writes of the poller were 5,000
 * handshakes and ~0.1 MB each. The Agent of the first request serves every later one; the key is the
 * one client-node uses for its watch agents.
 */
class PooledAuthentication implements SecurityAuthentication {
  readonly #kc: KubeConfig;
  readonly #dispatchers = new Map<string, Dispatcher>();

  constructor(kc: KubeConfig) {
    this.#kc = kc;
  }

  getName(): string {
    return this.#kc.getName();
  }

  async applySecurityAuthentication(context: RequestContext): Promise<void> {
    // Headers (tokens, refreshed exec or OIDC credentials) and TLS settings, as the kubeconfig says.
    await this.#kc.applySecurityAuthentication(context);
    const fresh = context.getDispatcher();
    if (!fresh) return;
    const key = JSON.stringify([this.#kc.getCurrentCluster()?.name, this.#kc.getCurrentUser()?.name]);
    const kept = this.#dispatchers.get(key);
    if (!kept) {
      this.#dispatchers.set(key, fresh);
      return;
    }
    // The fresh one never connected, so it holds no socket: leave it to the garbage collector
    // (closing it costs more than building it).
    context.setDispatcher(kept);
  }
}

const pooled = new WeakMap<KubeConfig, PooledAuthentication>();

/**
 * `kc.makeApiClient(api)` whose requests reuse their connections: every client made from one
 * KubeConfig shares one keep-alive pool (see PooledAuthentication).
 */
export function makeApiClient<T extends ApiType>(kc: KubeConfig, api: ApiConstructor<T>): T {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('no Kubernetes cluster configured');
  let auth = pooled.get(kc);
  if (!auth) {
    auth = new PooledAuthentication(kc);
    pooled.set(kc, auth);
  }
  return new api(
    createConfiguration({
      baseServer: new ServerConfiguration(cluster.server, {}),
      authMethods: { default: auth },
      middleware: [setHeaderMiddleware('User-Agent', 'kubewatcher')],
    }),
  );
}
