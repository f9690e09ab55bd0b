/** The one place for the API group, version, kinds and plurals of Kubewatcher's resources. */
export const GROUP = 'kubewatcher.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const CATEGORY = 'kubewatcher';

export const WATCHED_IMAGE = {
  kind: 'WatchedImage',
  plural: 'watchedimages',
  singular: 'watchedimage',
  shortName: 'wi',
} as const;

export const IMAGE_UPDATE = {
  kind: 'ImageUpdate',
  plural: 'imageupdates',
  singular: 'imageupdate',
  shortName: 'iu',
} as const;

/** Field managers for server-side apply: each writer owns its own status fields. */
export const FIELD_MANAGER = {
  poller: 'kubewatcher-poller',
  controller: 'kubewatcher-controller',
  /** The webhook receiver: only status.checkRequestedTime of WatchedImages. */
  webhook: 'kubewatcher-webhook',
  /** The notifier: only status.notifications of ImageUpdates. */
  notifier: 'kubewatcher-notifier',
  /** The kubectl plugin: status.checkRequestedTime, and approvals. */
  plugin: 'kubectl-kubewatcher',
} as const;

/** Annotations and labels Kubewatcher writes. */
export const ANNOTATION = {
  /** On a workload: the ImageUpdate that last changed it. */
  imageUpdate: `${GROUP}/image-update`,
  /** On an ImageUpdate: `approved` or `rejected`, written with spec.approved by kubectl kubewatcher. */
  decision: `${GROUP}/decision`,
  /** On an ImageUpdate: who made the decision, as the API server authenticated them. */
  decidedBy: `${GROUP}/decided-by`,
  /** On an ImageUpdate: when the decision was made. */
  decidedAt: `${GROUP}/decided-at`,
} as const;

export const LABEL = {
  /** On an ImageUpdate: the name of its WatchedImage, so updates can be listed per WatchedImage. */
  watchedImage: `${GROUP}/watched-image`,
  /** On a RoleBinding the controller made: what it grants (`poller-secrets`). */
  access: `${GROUP}/access`,
} as const;
