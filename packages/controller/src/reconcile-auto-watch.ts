import {
  API_VERSION,
  AUTO_WATCH_ANNOTATION,
  apiStatusCode,
  type ImageUpdate,
  isGenerated,
  MANAGED_BY_LABEL,
  phaseOf,
  readAnnotations,
  settleWithLimit,
  TERMINAL_PHASES,
  WATCHED_IMAGE,
  type WatchedImage,
  WORKLOAD_KIND_NAMES,
} from '@kubewatcher/shared';
import {
  done,
  enqueueTo,
  type ListWatchSource,
  type Outcome,
  requeueAfter,
  transformedSource,
} from './machinery/index.ts';
import { type AutoWatchReport, planAutoWatch } from './plan-auto-watch.ts';
import {
  type KeyQueue,
  matchingInputsChanged,
  namespaceSettingsChanged,
  onlyWhen,
  type ReconcilerDeps,
  recordEvent,
  WRITES_IN_FLIGHT,
  workloadHandlers,
  workloadsIn,
} from './reconcilers.ts';

/**
 * The Namespace informer's source, keeping only what auto-watch reads: name, uid, version, deletion,
 * labels, and the annotations Kubewatcher reads (a namespace's `kubectl.kubernetes.io/last-applied-configuration`
 * alone can be kilobytes).
 */
export function namespaceLabelsOnly(source: ListWatchSource): ListWatchSource {
  const keep = <T>(obj: T): T => {
    const meta = (obj as { metadata?: Record<string, unknown> } | undefined)?.metadata;
    if (!meta) return obj;
    const annotations = readAnnotations(meta.annotations as Record<string, string> | undefined);
    return {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: {
        name: meta.name,
        uid: meta.uid,
        resourceVersion: meta.resourceVersion,
        ...(meta.deletionTimestamp ? { deletionTimestamp: meta.deletionTimestamp } : {}),
        ...(meta.labels ? { labels: meta.labels } : {}),
        ...(annotations ? { annotations } : {}),
      },
    } as T;
  };
  return transformedSource(source, keep);
}

/** Reports remembered as recorded, before the memory starts over (a bound, not a limit anyone meets). */
const MAX_REPORTED = 10_000;

/**
 * Auto-watch: keeps each namespace's generated WatchedImages as planAutoWatch says. The key is a
 * namespace name. Writes are server-side applies under the controller's field manager, deletes at the
 * version judged unused, and a merge patch that hands an edited one over to the person who edited it.
 */
export class AutoWatchReconciler {
  readonly #d: ReconcilerDeps;
  /**
   * namespace → name → what was last written there and not yet seen in the cache (a spec hash,
   * `delete` or `release`). Until the informer delivers the write, a plan from the cache asks for the
   * same write again: skipped, so a burst of workload events costs one write, not one per event.
   */
  readonly #inFlight = new Map<string, Map<string, string>>();
  /** Reports already recorded as Events by this process: one Event per problem, not one per reconcile. */
  readonly #reported = new Set<string>();

  constructor(deps: ReconcilerDeps) {
    this.#d = deps;
  }

  /**
   * Why a namespace is queued: its labels or Kubewatcher annotations changed; a workload in it changed
   * what opting in and matching read (labels, Kubewatcher annotations, container images); a
   * WatchedImage in it appeared, went, or changed its spec or metadata (a person's may make a
   * generated one redundant; an edit hands a generated one over); an ImageUpdate in it appeared,
   * went or finished (an unused generated WatchedImage waits for its last update).
   */
  watches(queue: KeyQueue): (() => void)[] {
    const { caches } = this.#d;
    const namespaceOf = (obj: { metadata?: { namespace?: string } }) => [obj.metadata?.namespace ?? ''];
    return [
      ...(caches.namespaces
        ? [
            caches.namespaces.addEventHandler(
              onlyWhen(
                namespaceSettingsChanged,
                enqueueTo(queue, (n) => [n.metadata.name]),
              ),
            ),
          ]
        : []),
      ...workloadHandlers(caches, () => onlyWhen(matchingInputsChanged, enqueueTo(queue, namespaceOf))),
      caches.watchedImages.addEventHandler(onlyWhen(definitionChanged, enqueueTo(queue, namespaceOf))),
      caches.updates.addEventHandler(onlyWhen(finishedChanged, enqueueTo(queue, namespaceOf))),
    ];
  }

  reconcile = async (namespace: string): Promise<Outcome> => {
    const { caches, writer, metrics, logger, autoWatch } = this.#d;
    const namespaceObject = caches.namespaces?.get(namespace);
    // Gone or going: everything in it goes with it, and a create there would be refused.
    if (caches.namespaces && (!namespaceObject || namespaceObject.metadata.deletionTimestamp)) {
      this.#inFlight.delete(namespace);
      return done();
    }
    const watchedImages = caches.watchedImages.listByNamespace(namespace);
    const cached = new Map(watchedImages.map((wi) => [wi.metadata.name, wi]));
    const inFlight = this.#settle(namespace, cached);
    const plan = planAutoWatch({
      namespace,
      namespaceObject,
      scope: autoWatch,
      workloads: workloadsIn(caches, namespace, WORKLOAD_KIND_NAMES),
      watchedImages,
      updates: caches.updates.listByNamespace(namespace),
    });

    let behind = false;
    const pending = (name: string, token: string) => {
      if (inFlight.get(name) !== token) return false;
      behind = true;
      return true;
    };
    const now = (this.#d.now ?? (() => new Date()))();
    const outcomes = [
      ...(await settleWithLimit(plan.apply, WRITES_IN_FLIGHT, async (wi) => {
        const hash = wi.metadata.annotations[AUTO_WATCH_ANNOTATION.generatedSpec]!;
        if (pending(wi.metadata.name, hash)) return;
        const existing = cached.get(wi.metadata.name);
        try {
          await writer.applyGeneratedWatchedImage(wi, existing?.metadata.resourceVersion);
        } catch (err) {
          // A change of one deleted meanwhile: the delete event queues the namespace again.
          if (existing && apiStatusCode(err) === 404) return;
          throw err;
        }
        inFlight.set(wi.metadata.name, hash);
        metrics.generatedWrites.inc({ action: existing ? 'change' : 'create' });
        logger.info(existing ? 'generated WatchedImage changed' : 'WatchedImage generated', {
          watchedImage: `${namespace}/${wi.metadata.name}`,
          image: wi.spec.image,
          updatePolicy: wi.spec.updatePolicy,
          interval: wi.spec.interval,
        });
      })),
      ...(await settleWithLimit(plan.delete, WRITES_IN_FLIGHT, async (d) => {
        if (pending(d.name, 'delete')) return;
        await writer.deleteWatchedImage(namespace, d.name, {
          ...(d.uid ? { uid: d.uid } : {}),
          ...(d.resourceVersion ? { resourceVersion: d.resourceVersion } : {}),
        });
        inFlight.set(d.name, 'delete');
        metrics.generatedWrites.inc({ action: 'delete' });
        logger.info('generated WatchedImage deleted: no watched workload runs its image', {
          watchedImage: `${namespace}/${d.name}`,
        });
      })),
      ...(await settleWithLimit(plan.release, WRITES_IN_FLIGHT, async (r) => {
        if (pending(r.name, 'release')) return;
        await writer.releaseWatchedImage(namespace, r.name, cached.get(r.name)?.metadata.resourceVersion);
        inFlight.set(r.name, 'release');
        metrics.generatedWrites.inc({ action: 'release' });
        logger.info('generated WatchedImage edited by a person: kept as theirs, no longer generated', {
          watchedImage: `${namespace}/${r.name}`,
        });
        await recordEvent(
          this.#d,
          {
            apiVersion: API_VERSION,
            kind: WATCHED_IMAGE.kind,
            name: r.name,
            namespace,
            ...(r.uid ? { uid: r.uid } : {}),
          },
          {
            type: 'Normal',
            reason: 'NoLongerGenerated',
            message: `its spec was edited, so Kubewatcher keeps it as written and no longer changes or deletes it (label app.kubernetes.io/managed-by removed); delete it to have it generated again from the workloads' annotations`,
          },
          now,
        );
      })),
    ];
    for (const w of plan.waiting) {
      logger.debug('unused generated WatchedImage waits for its unfinished ImageUpdates', {
        watchedImage: `${namespace}/${w.name}`,
        imageUpdates: w.updates,
      });
    }
    await settleWithLimit(plan.reports, WRITES_IN_FLIGHT, (r) => this.#report(namespace, r, now));
    const failed = outcomes.find((o) => o.status === 'rejected');
    if (failed) throw failed.reason;
    return behind ? requeueAfter(1000, 'cache behind our writes of generated WatchedImages') : done();
  };

  /** Forgets the in-flight writes of `namespace` that the cache now shows; returns the rest. */
  #settle(namespace: string, cached: ReadonlyMap<string, WatchedImage>): Map<string, string> {
    const inFlight = this.#inFlight.get(namespace) ?? new Map<string, string>();
    this.#inFlight.set(namespace, inFlight);
    for (const [name, token] of inFlight) {
      const wi = cached.get(name);
      const seen =
        token === 'delete'
          ? !wi
          : token === 'release'
            ? !wi || !isGenerated(wi)
            : wi?.metadata.annotations?.[AUTO_WATCH_ANNOTATION.generatedSpec] === token;
      if (seen) inFlight.delete(name);
    }
    return inFlight;
  }

  async #report(namespace: string, r: AutoWatchReport, now: Date): Promise<void> {
    const id = `${namespace}/${r.on.kind}/${r.on.name}/${r.on.uid ?? ''}/${r.reason}/${r.message}`;
    if (this.#reported.has(id)) return;
    if (this.#reported.size >= MAX_REPORTED) this.#reported.clear();
    this.#reported.add(id);
    this.#d.logger.warn('auto-watch cannot watch something it was asked to', {
      namespace,
      object: `${r.on.kind}/${r.on.name}`,
      reason: r.reason,
      message: r.message,
    });
    const apiVersion =
      r.on.kind === 'Namespace' ? 'v1' : r.on.kind === WATCHED_IMAGE.kind ? API_VERSION : 'apps/v1';
    await recordEvent(
      this.#d,
      { apiVersion, kind: r.on.kind, name: r.on.name, namespace, ...(r.on.uid ? { uid: r.on.uid } : {}) },
      { type: 'Warning', reason: r.reason, message: r.message },
      now,
    );
  }
}

/** What auto-watch reads of a WatchedImage: not its status, which changes far more often. */
function definitionChanged(a: WatchedImage, b: WatchedImage): boolean {
  return (
    a.metadata.generation !== b.metadata.generation ||
    a.metadata.deletionTimestamp !== b.metadata.deletionTimestamp ||
    a.metadata.labels?.[MANAGED_BY_LABEL] !== b.metadata.labels?.[MANAGED_BY_LABEL] ||
    a.metadata.annotations?.[AUTO_WATCH_ANNOTATION.generatedSpec] !==
      b.metadata.annotations?.[AUTO_WATCH_ANNOTATION.generatedSpec]
  );
}

/** Whether an ImageUpdate finished or started again: what an unused generated WatchedImage waits for. */
function finishedChanged(a: ImageUpdate, b: ImageUpdate): boolean {
  const finished = (u: ImageUpdate) => TERMINAL_PHASES.includes(phaseOf(u));
  return finished(a) !== finished(b);
}
