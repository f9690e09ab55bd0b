export { main } from './cli.ts';
export { Controller, type ControllerOptions } from './controller.ts';
export { pinImage, planUpdate } from './plan-update.ts';
export { planWatchedImage } from './plan-watched-image.ts';
export { rolloutState } from './rollout.ts';
