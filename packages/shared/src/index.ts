export * from './api/index.ts';
export * from './command-line.ts';
export * from './constants.ts';
export * from './kube.ts';
export * from './logging.ts';
export * from './matching.ts';
export * from './reference.ts';
