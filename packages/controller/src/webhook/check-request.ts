/**
 * Asking the poller for a check now: `status.checkRequestedTime` on a WatchedImage, which the poller
 * honours on its next run whatever the interval. Written by server-side apply under its own field
 * manager, so it never touches the fields the poller and the controller own.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import {
  applyStatus,
  normalizeReference,
  referenceString,
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

/** Writes status.checkRequestedTime of one WatchedImage, and nothing else of its status. */
export class CheckRequester {
  readonly #kc: KubeConfig;
  readonly #fieldManager: string;

  constructor(kc: KubeConfig, fieldManager: string) {
    this.#kc = kc;
    this.#fieldManager = fieldManager;
  }

  async requestCheck(namespace: string, name: string, now: Date): Promise<void> {
    // Milliseconds kept: the poller compares this with its lastCheckedTime, which has them too.
    await applyStatus(this.#kc, {
      resource: WATCHED_IMAGE,
      namespace,
      name,
      fieldManager: this.#fieldManager,
      status: { checkRequestedTime: now.toISOString() },
    });
  }
}
