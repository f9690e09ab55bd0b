export { main } from './cli.ts';
export { KubePollerCluster, type PollerCluster } from './cluster.ts';
export { decide, selectDue } from './plan.ts';
export * from './registry/index.ts';
export { type RunOptions, type RunSummary, runPoll } from './run.ts';
