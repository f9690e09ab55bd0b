import { isDeepStrictEqual } from 'node:util';
import type { KubernetesObject } from '@kubernetes/client-node';
import {
  API_VERSION,
  apiStatusCode,
  apiVersionOf,
  CONDITION_TYPE,
  errorFields,
  GROUP,
  IMAGE_UPDATE,
  type ImageUpdate,
  isGenerated,
  kindsOf,
  type Logger,
  matchWorkloads,
  namespacedKey,
  objectKey,
  phaseOf,
  podSpecOf,
  settleWithLimit,
  splitKey,
  TERMINAL_PHASES,
  WATCHED_IMAGE,
  type WatchedImage,
  WORKLOAD_KIND_NAMES,
  type WorkloadKind,
} from '@kubewatcher/shared';
import type { ControllerWriter } from './cluster.ts';
import {
  type ControllerMetrics,
  done,
  type EventHandler,
  enqueueTo,
  type Informer,
  type Outcome,
  requeueAfter,
} from './machinery/index.ts';
import { type AutoWatchScope, type NamespaceLike, workloadOptIn } from './plan-auto-watch.ts';
import {
  type PatchAnswer,
  type PlannedEvent,
  planPatchAnswers,
  planUpdate,
  type Workload,
} from './plan-update.ts';
import { planWatchedImage } from './plan-watched-image.ts';
import type { PollerAccess } from './poller-access.ts';

/**
 * A typed read view of an informer. The informer holds the server's JSON; our API types describe
 * that JSON (timestamps as strings), where client-node's KubernetesObject says Date.
 */
export interface Cache<T> {
  get(key: string): T | undefined;
  listByNamespace(namespace: string): T[];
  byIndex(index: string, value: string): T[];
  keys(): string[];
  addEventHandler(handler: EventHandler<T>): () => void;
}

export function typedCache<T>(informer: Informer<KubernetesObject>): Cache<T> {
  return informer as unknown as Cache<T>;
}

/** The informer caches the reconcilers read; every read in a reconcile comes from here. */
export interface Caches {
  watchedImages: Cache<WatchedImage>;
  updates: Cache<ImageUpdate>;
  workloads: Record<WorkloadKind, Cache<Workload>>;
  /**
   * Namespaces, labels and Kubewatcher's annotations only (keys are names). Absent with
   * `--auto-watch=off`, and when the controller is limited to named namespaces (reading Namespaces
   * takes a cluster-wide grant): namespace-level opt-in and settings are then not read.
   */
  namespaces?: Cache<NamespaceLike>;
}

/** A queue, as the reconcilers' `watches()` see it. */
export interface KeyQueue {
  add(key: string): void;
}

/** Index of ImageUpdates by their WatchedImage's key (`namespace/name`). */
export const BY_WATCHED_IMAGE = 'watchedImage';

export function watchedImageKeyOf(update: ImageUpdate): string {
  return namespacedKey(update.metadata.namespace, update.spec.watchedImage);
}

export function workloadsIn(caches: Caches, namespace: string, kinds: readonly WorkloadKind[]): Workload[] {
  const out: Workload[] = [];
  for (const kind of kinds) {
    const informer = caches.workloads[kind as keyof Caches['workloads']];
    if (informer) for (const w of informer.listByNamespace(namespace)) out.push(ofKind(w, kind));
  }
  return out;
}

/**
 * The workloads a WatchedImage may update. A generated one stands for the watched workloads only: a
 * workload that is not opted in (or opted out) keeps its image even when it runs the same tag.
 */
export function workloadsFor(
  caches: Caches,
  scope: AutoWatchScope,
  wi: WatchedImage | undefined,
  namespace: string,
): Workload[] {
  const all = wi ? workloadsIn(caches, namespace, kindsOf(wi.spec)) : [];
  if (!wi || !isGenerated(wi)) return all;
  const ns = caches.namespaces?.get(namespace);
  return all.filter((w) => workloadOptIn(w, ns, scope).watched);
}

export interface ReconcilerDeps {
  caches: Caches;
  writer: ControllerWriter;
  logger: Logger;
  metrics: ControllerMetrics;
  autoWatch: AutoWatchScope;
  now?: () => Date;
  /** Grants the poller its per-namespace secret access; absent when the install grants it (--namespace). */
  pollerAccess?: PollerAccess;
}

/**
 * `w` with the kind of the informer it came from. Cached workloads carry it already (objects of a list
 * carry none, so `cachedWorkload` sets it): no copy then, which a WatchedImage's plan would otherwise
 * make of every workload of its namespace, every time.
 */
function ofKind(w: Workload, kind: WorkloadKind): Workload {
  return w.kind === kind ? w : ({ ...w, kind } as Workload);
}

/** The handlers of `watches()`: one per cache event source, each adding keys to the reconciler's queue. */
export function workloadHandlers(
  caches: Caches,
  handler: (kind: Workload['kind']) => EventHandler<Workload>,
): (() => void)[] {
  return WORKLOAD_KIND_NAMES.map((kind) => {
    const h = handler(kind);
    const withKind = (w: Workload) => ofKind(w, kind);
    return caches.workloads[kind].addEventHandler({
      add: (w) => h.add?.(withKind(w)),
      update: (a, b) => h.update?.(withKind(a), withKind(b)),
      delete: (w) => h.delete?.(withKind(w)),
    });
  });
}

/** `handler` for adds and deletes, and for updates only when `changed(old, new)`. */
export function onlyWhen<T>(changed: (a: T, b: T) => boolean, handler: EventHandler<T>): EventHandler<T> {
  return {
    add: (obj) => handler.add?.(obj),
    delete: (obj) => handler.delete?.(obj),
    update: (a, b) => {
      if (changed(a, b)) handler.update?.(a, b);
    },
  };
}

/**
 * Whether an update changed what matching a workload to WatchedImages reads (matchWorkloads and
 * workloadOptIn): its labels, Kubewatcher's annotations, and the names and images of its containers
 * and init containers. Without this, every status change of the 500 Deployments of a rollout
 * re-planned their WatchedImage against all 500: half the controller's CPU, and patches waiting
 * behind it on the one thread.
 */
export function matchingInputsChanged(a: Workload, b: Workload): boolean {
  const inputs = (w: Workload) => {
    const pod = podSpecOf(w);
    const images = (list: { name: string; image?: string }[] | undefined) =>
      (list ?? []).map((c) => [c.name, c.image]);
    const ours = Object.entries(w.metadata?.annotations ?? {}).filter(([k]) => k.startsWith(`${GROUP}/`));
    return [w.metadata?.labels ?? {}, ours, images(pod?.containers), images(pod?.initContainers)];
  };
  return !isDeepStrictEqual(inputs(a), inputs(b));
}

/** Whether a Namespace's labels or Kubewatcher's annotations changed (the rest is not cached). */
export function namespaceSettingsChanged(a: NamespaceLike, b: NamespaceLike): boolean {
  return (
    !isDeepStrictEqual(a.metadata.labels ?? {}, b.metadata.labels ?? {}) ||
    !isDeepStrictEqual(a.metadata.annotations ?? {}, b.metadata.annotations ?? {})
  );
}

/** WatchedImage: report matching workloads, the newest update and Ready; keep historyLimit updates. */
export class WatchedImageReconciler {
  readonly #d: ReconcilerDeps;
  readonly #writes = new OwnWrites();
  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
  }

  /**
   * Why a WatchedImage is queued: it changed; one of its ImageUpdates changed (latestUpdate,
   * history); a workload it matches changed what matching reads (enqueueTo looks at the workload
   * before and after, so one that stops matching counts); for a generated one, its Namespace's labels
   * or settings changed. Nothing else reads a workload (planWatchedImage): enqueueing every
   * WatchedImage of the namespace made each status change of a rollout re-plan them all against every
   * workload, which kept the controller busy for minutes at 100 WatchedImages and 500 Deployments.
   */
  watches(queue: KeyQueue): (() => void)[] {
    const { caches } = this.#d;
    return [
      caches.watchedImages.addEventHandler(enqueueTo(queue)),
      caches.updates.addEventHandler(enqueueTo(queue, (u) => [watchedImageKeyOf(u)])),
      ...workloadHandlers(caches, () =>
        onlyWhen(
          matchingInputsChanged,
          enqueueTo(queue, (w) => watchedImagesMatching(caches, w)),
        ),
      ),
      ...(caches.namespaces
        ? [
            caches.namespaces.addEventHandler(
              onlyWhen(
                namespaceSettingsChanged,
                enqueueTo(queue, (n) =>
                  caches.watchedImages
                    .listByNamespace(n.metadata.name)
                    .filter(isGenerated)
                    .map((wi) => objectKey(wi)),
                ),
              ),
            ),
          ]
        : []),
    ];
  }

  reconcile = async (key: string): Promise<Outcome> => {
    const { caches, writer } = this.#d;
    const wi = caches.watchedImages.get(key);
    const namespace = splitKey(key).namespace!;
    if (!wi) {
      if (this.#d.pollerAccess && caches.watchedImages.listByNamespace(namespace).length === 0) {
        await this.#d.pollerAccess.unwatched(namespace);
      }
      return this.#writes.forget(key);
    }
    await this.#d.pollerAccess?.watched(namespace);
    if (this.#writes.cacheIsBehind(key, wi)) return requeueAfter(1000, 'cache behind our status write');
    const now = (this.#d.now ?? (() => new Date()))();
    const updates = caches.updates.byIndex(BY_WATCHED_IMAGE, key);
    const plan = planWatchedImage(wi, workloadsFor(caches, this.#d.autoWatch, wi, namespace), updates, now);

    const current = {
      observedGeneration: wi.status?.observedGeneration,
      workloads: wi.status?.workloads ?? [],
      workloadCount: wi.status?.workloadCount,
      latestUpdate: wi.status?.latestUpdate,
      refusedDigest: wi.status?.refusedDigest,
      conditions: (wi.status?.conditions ?? []).filter((c) => c.type === CONDITION_TYPE.Ready),
    };
    const next = { latestUpdate: undefined, refusedDigest: undefined, ...plan.status };
    if (!isDeepStrictEqual(current, next)) {
      await writer.applyWatchedImageStatus(wi, plan.status);
      this.#writes.wroteOver(key, wi);
      const before = current.conditions[0];
      const after = plan.status.conditions[0]!;
      if (before?.status !== after.status || before?.reason !== after.reason) {
        // Not awaited: an Event is best effort (recordEvent logs failures) and a reconcile that waited
        // for it held its worker for a second round trip, a quarter of the first sync of 1,000
        // WatchedImages. One per Ready transition, so the ones in flight stay few.
        void this.#event(
          wi,
          {
            type: after.status === 'False' ? 'Warning' : 'Normal',
            reason: after.reason,
            message: after.message,
          },
          now,
        );
      }
    }
    for (const name of plan.prune) {
      this.#d.logger.info('pruning ImageUpdate beyond historyLimit', {
        watchedImage: key,
        imageUpdate: name,
      });
      await writer.deleteUpdate(wi.metadata.namespace!, name);
    }
    return done();
  };

  async #event(wi: WatchedImage, e: Omit<PlannedEvent, 'on'>, now: Date) {
    await recordEvent(
      this.#d,
      {
        apiVersion: API_VERSION,
        kind: WATCHED_IMAGE.kind,
        name: wi.metadata.name,
        namespace: wi.metadata.namespace!,
        uid: wi.metadata.uid,
      },
      e,
      now,
    );
  }
}

/** ImageUpdate: drive the state machine of plan-update.ts; patch workloads; follow rollouts. */
export class ImageUpdateReconciler {
  readonly #d: ReconcilerDeps & { rolloutTimeoutMs: number };
  readonly #writes = new OwnWrites();
  constructor(deps: ReconcilerDeps & { rolloutTimeoutMs: number }) {
    this.#d = deps;
  }

  /**
   * Why an ImageUpdate is queued: it changed; its WatchedImage changed (policy, suspension decide what
   * it does next); a sibling appeared or finished (supersession); a workload it concerns changed (one
   * its WatchedImage matches while the update is unfinished, or one listed in its results).
   */
  watches(queue: KeyQueue): (() => void)[] {
    const { caches } = this.#d;
    const siblingsOf = (wiKey: string) =>
      caches.updates.byIndex(BY_WATCHED_IMAGE, wiKey).map((u) => objectKey(u));
    const unfinishedUpdatesConcerning = (w: Workload) => {
      const watchedImages = new Set(watchedImagesMatching(caches, w));
      return caches.updates
        .listByNamespace(w.metadata?.namespace ?? '')
        .filter((u) => !TERMINAL_PHASES.includes(phaseOf(u)))
        .filter(
          (u) =>
            watchedImages.has(watchedImageKeyOf(u)) ||
            (u.status?.workloads ?? []).some((r) => r.kind === w.kind && r.name === w.metadata?.name),
        )
        .map((u) => objectKey(u));
    };
    return [
      caches.watchedImages.addEventHandler(enqueueTo(queue, (wi) => siblingsOf(objectKey(wi)))),
      caches.updates.addEventHandler(enqueueTo(queue)),
      caches.updates.addEventHandler(enqueueTo(queue, (u) => siblingsOf(watchedImageKeyOf(u)))),
      ...workloadHandlers(caches, () => enqueueTo(queue, unfinishedUpdatesConcerning)),
    ];
  }

  reconcile = async (key: string): Promise<Outcome> => {
    const { caches, writer, metrics, logger } = this.#d;
    const update = caches.updates.get(key);
    if (!update) return this.#writes.forget(key);
    if (this.#writes.cacheIsBehind(key, update)) {
      return requeueAfter(1000, 'cache behind our status write');
    }
    const now = (this.#d.now ?? (() => new Date()))();
    const wiKey = watchedImageKeyOf(update);
    const wi = caches.watchedImages.get(wiKey);
    const siblings = caches.updates
      .byIndex(BY_WATCHED_IMAGE, wiKey)
      .filter((u) => u.metadata.name !== update.metadata.name);
    const namespace = update.metadata.namespace!;
    let plan = planUpdate({
      update,
      watchedImage: wi,
      siblings,
      // Without its WatchedImage the update fails without looking at any workload.
      workloads: wi ? workloadsFor(caches, this.#d.autoWatch, wi, namespace) : [],
      now,
      rolloutTimeoutMs: this.#d.rolloutTimeoutMs,
    });

    // Patches before the status that records them: a crash in between leaves the update in Applying,
    // and the next reconcile finds the containers already on the new image and patches nothing twice.
    // The workloads of one update are independent: patch them several at a time, so an update costs a
    // round trip per WRITES_IN_FLIGHT workloads rather than per workload (50 updates of 5 Deployments,
    // one patch after the other on two workers, left the last Deployment unpatched a minute after the
    // push). A transient failure still fails the reconcile, once every patch has been answered.
    const answers = await settleWithLimit(
      plan.patches,
      WRITES_IN_FLIGHT,
      async (patch): Promise<PatchAnswer> => {
        try {
          await writer.patchWorkload(namespace, patch, update.metadata.name);
          metrics.updatesApplied.inc({ kind: patch.kind });
          logger.info('workload patched', {
            imageUpdate: key,
            workload: `${patch.kind}/${patch.name}`,
            containers: [...patch.containers, ...patch.initContainers].map((c) => c.name),
          });
          return { kind: patch.kind, name: patch.name };
        } catch (err) {
          const fields = errorFields(err);
          logger.warn('workload patch failed', {
            imageUpdate: key,
            workload: `${patch.kind}/${patch.name}`,
            ...fields,
          });
          return {
            kind: patch.kind,
            name: patch.name,
            error: { code: apiStatusCode(err), message: String(fields.error) },
          };
        }
      },
    );
    // What each answer means (deleted, refused, worth a retry) is the planner's decision.
    const answered = planPatchAnswers(
      plan,
      update,
      wi!,
      answers.map((a, i) =>
        a.status === 'fulfilled'
          ? a.value
          : { ...plan.patches[i]!, error: { code: undefined, message: String(a.reason) } },
      ),
      now,
    );
    if (answered.retry !== undefined) throw new Error(`workload patch failed: ${answered.retry}`);
    plan = answered;

    // status.notifications belongs to the notifier (its own field manager), never to the plan.
    const { notifications: _notifier, ...current } = update.status ?? {};
    if (!isDeepStrictEqual(current, plan.status)) {
      await writer.applyUpdateStatus(update, plan.status);
      this.#writes.wroteOver(key, update);
      this.#observeCompletion(update, plan.status);
      // Best effort and independent of each other: recorded several at a time.
      await settleWithLimit(plan.events, WRITES_IN_FLIGHT, (e) => {
        const involved =
          e.on === 'update'
            ? {
                apiVersion: API_VERSION,
                kind: IMAGE_UPDATE.kind,
                name: update.metadata.name,
                namespace,
                uid: update.metadata.uid,
              }
            : { apiVersion: apiVersionOf(e.on.kind), kind: e.on.kind, name: e.on.name, namespace };
        return recordEvent(this.#d, involved, e, now);
      });
    }
    return plan.requeueAfterMs !== undefined
      ? requeueAfter(plan.requeueAfterMs, `ImageUpdate ${plan.status.phase}`)
      : done();
  };

  #observeCompletion(update: ImageUpdate, status: NonNullable<ImageUpdate['status']>) {
    const was = update.status?.phase;
    // A rolled-back update failed its rollout: counted as a failure.
    const failed = status.phase === 'Failed' || status.phase === 'RolledBack';
    if (was === status.phase || (status.phase !== 'Succeeded' && !failed)) return;
    if (!status.appliedTime) return;
    const seconds = (Date.parse(status.completedTime ?? '') - Date.parse(status.appliedTime)) / 1000;
    for (const kind of new Set((status.workloads ?? []).map((r) => r.kind))) {
      if (Number.isFinite(seconds))
        this.#d.metrics.rolloutDuration.observe(
          { kind, result: status.phase === 'Succeeded' ? 'success' : 'failure' },
          seconds,
        );
      if (failed) this.#d.metrics.updatesFailed.inc({ kind });
    }
  }
}

/** The WatchedImages in a workload's namespace that match it. */
function watchedImagesMatching(caches: Caches, w: Workload): string[] {
  return caches.watchedImages
    .listByNamespace(w.metadata?.namespace ?? '')
    .filter((wi) => matchWorkloads(wi.spec, [w]).length > 0)
    .map((wi) => objectKey(wi));
}

/** Writes in flight at once for one reconcile (workload patches, Events). */
export const WRITES_IN_FLIGHT = 8;

/**
 * The resourceVersion each key's last status write was made over. Until the informer delivers the
 * object that write produced, the cache still holds that version, and planning from it again would only
 * earn a 409 (a wasted write: ~0.5 s of API server time for an update of 500 workloads, 30 of them per
 * rollout when every workload event re-planned from the stale copy). The write's own watch event
 * queues the key again, so nothing is lost by waiting for it; the requeue is a backstop.
 */
export class OwnWrites {
  readonly #over = new Map<string, string>();

  wroteOver(key: string, obj: { metadata: { resourceVersion?: string } }): void {
    if (obj.metadata.resourceVersion) this.#over.set(key, obj.metadata.resourceVersion);
  }

  cacheIsBehind(key: string, cached: { metadata: { resourceVersion?: string } }): boolean {
    const over = this.#over.get(key);
    if (over === undefined) return false;
    if (over === cached.metadata.resourceVersion) return true;
    this.#over.delete(key);
    return false;
  }

  forget(key: string): Outcome {
    this.#over.delete(key);
    return done();
  }
}

/** Events are best effort: failing to record one never fails the reconcile. */
export async function recordEvent(
  d: ReconcilerDeps,
  involved: Parameters<ControllerWriter['recordEvent']>[0],
  e: Omit<PlannedEvent, 'on'>,
  now: Date,
): Promise<void> {
  try {
    await d.writer.recordEvent(involved, e, now);
  } catch (err) {
    d.logger.warn('could not record an Event', {
      object: `${involved.kind}/${involved.name}`,
      reason: e.reason,
      ...errorFields(err),
    });
  }
}
