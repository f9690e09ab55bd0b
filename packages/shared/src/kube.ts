import { KubeConfig } from '@kubernetes/client-node';

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
