export * from './constants.ts';
export * from './kube.ts';
export * from './logging.ts';
