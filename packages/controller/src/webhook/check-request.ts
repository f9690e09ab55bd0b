/**
 * Asking the poller for a check now: `status.checkRequestedTime` on a WatchedImage, which the poller
 * honours on its next run whatever the interval. Written by server-side apply under its own field
 * manager, so it never touches the fields the poller and the controller own.
 */
import { CustomObjectsApi, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import {
  API_VERSION,
  GROUP,
  normalizeReference,
  referenceString,
  VERSION,
  WATCHED_IMAGE,
  type WatchedImage,
} from '@kubewatcher/shared';
import type { Push } from './payloads.ts';

/**
 * The WatchedImages a set of pushes concerns: same canonical registry, repository and tag, not
 * suspended. Only images already watched can be made due, so a payload naming any other host does
 * nothing.
 */
export function watchedImagesToCheck(
  pushes: readonly Push[],
  watchedImages: readonly WatchedImage[],
): WatchedImage[] {
  const pushed = new Set(pushes.map((p) => p.image));
  return watchedImages.filter((wi) => {
    if (wi.spec.suspend) return false;
    try {
      return pushed.has(referenceString(normalizeReference(wi.spec.image)));
    } catch {
      return false; // an invalid spec is reported by the reconciler and the poller
    }
  });
}

/** Writes status.checkRequestedTime of one WatchedImage. */
export class CheckRequester {
  readonly #custom: CustomObjectsApi;
  readonly #fieldManager: string;

  constructor(kc: KubeConfig, fieldManager: string) {
    this.#custom = kc.makeApiClient(CustomObjectsApi);
    this.#fieldManager = fieldManager;
  }

  async requestCheck(namespace: string, name: string, now: Date): Promise<void> {
    await this.#custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        plural: WATCHED_IMAGE.plural,
        namespace,
        name,
        body: {
          apiVersion: API_VERSION,
          kind: WATCHED_IMAGE.kind,
          metadata: { name, namespace },
          status: { checkRequestedTime: now.toISOString() },
        },
        fieldManager: this.#fieldManager,
        force: true,
      },
      setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply),
    );
  }
}
