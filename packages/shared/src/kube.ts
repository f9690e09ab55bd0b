import { KubeConfig, type RequestContext } from '@kubernetes/client-node';

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
  return reuseConnections(kc);
}

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;
const pooled = new WeakSet<KubeConfig>();

/**
 * Makes every request made through `kc` (API clients from `kc.makeApiClient`, informers' lists and
 * watches, the Lease) share one keep-alive connection pool per cluster and user. client-node 2.0.1
 * builds a new undici Agent for every request, so each call paid a new connection and TLS handshake
 * and left an idle socket behind (5,000 status writes of the poller: 5,000 handshakes, ~0.1 MB each).
 * Headers (tokens, refreshed exec or OIDC credentials) are still applied per request; only the
 * connection is shared. Changes `kc` in place and returns it; calling it twice is harmless.
 */
export function reuseConnections(kc: KubeConfig): KubeConfig {
  if (pooled.has(kc)) return kc;
  pooled.add(kc);
  const apply = kc.applySecurityAuthentication.bind(kc);
  const pools = new Map<string, Dispatcher>();
  kc.applySecurityAuthentication = async (context: RequestContext) => {
    await apply(context);
    const fresh = context.getDispatcher();
    if (!fresh) return;
    const key = JSON.stringify([kc.getCurrentCluster()?.name, kc.getCurrentUser()?.name]);
    const kept = pools.get(key);
    // The fresh Agent never connected, so it holds no socket: the garbage collector takes it.
    if (kept) context.setDispatcher(kept);
    else pools.set(key, fresh);
  };
  return kc;
}
