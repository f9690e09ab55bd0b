import type { HttpOptions, HttpResponse } from './processes.ts';

export interface NodeCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** The Ready condition of a node from a GET of it, or undefined when the node does not exist (yet). */
export function readyCondition(res: HttpResponse): NodeCondition | undefined {
  if (res.status !== 200) return undefined;
  const node = JSON.parse(res.body) as { status?: { conditions?: NodeCondition[] } };
  return node.status?.conditions?.find((c) => c.type === 'Ready');
}

/** Whether node `name` is Ready (undefined while it is not, so `waitFor` keeps polling). */
export async function isNodeReady(
  cp: { kube: (path: string, init?: HttpOptions) => Promise<HttpResponse> },
  name: string,
): Promise<true | undefined> {
  return readyCondition(await cp.kube(`/api/v1/nodes/${name}`))?.status === 'True' || undefined;
}
