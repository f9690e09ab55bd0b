/**
 * The poller's writes: the ImageUpdate a decision asks for, then the WatchedImage's status. Every
 * outcome ends in a status write with a reason, an ImageUpdate that cannot be created included, so
 * a WatchedImage is never re-polled every run in silence. One WatchedImage's failed write never
 * stops the others.
 */
import { boundMessage, type Logger, namespacedKey, objectKey, type WatchedImage } from '@kubewatcher/shared';
import {
  formatCheckRecord,
  MAX_RECORD_BYTES,
  mergeCheckRecords,
  parseCheckRecord,
  pruneCheckRecord,
  type UnwrittenChecks,
} from './check-record.ts';
import type { PollerCluster } from './cluster.ts';
import type { CheckRecordRead } from './gather.ts';
import {
  type Decision,
  type ImageUpdateDraft,
  imageUpdateFailedStatus,
  isSameChange,
  lastWrittenCheckOf,
  type PollerStatus,
  type PollTarget,
} from './plan.ts';

/** How many suffixed names a tag that moves back and forth may use before the run gives up. */
const MAX_NAME_ATTEMPTS = 10;

export class PollApplier {
  readonly #cluster: PollerCluster;
  readonly #logger: Logger;
  readonly #now: () => Date;

  constructor(cluster: PollerCluster, logger: Logger, now: () => Date) {
    this.#cluster = cluster;
    this.#logger = logger;
    this.#now = now;
  }

  /** Writes a status the plan computed whole (an invalid spec's); true when it was written. */
  async writeStatus(wi: WatchedImage, status: PollerStatus): Promise<boolean> {
    return this.#guarded(wi, () => this.#cluster.applyStatus(wi, status));
  }

  /**
   * The ImageUpdate first, the status second: a run killed in between finds the same change again
   * next time and meets its own ImageUpdate, so nothing is lost or doubled. When the ImageUpdate
   * cannot be created, the status says so and keeps the old baseline. Whether this call created
   * the ImageUpdate, and whether the status was written.
   */
  async record(
    target: PollTarget,
    decision: Pick<Decision, 'status' | 'imageUpdate'>,
  ): Promise<{ imageUpdateCreated: boolean; statusWritten: boolean }> {
    const wi = target.watchedImage;
    let created = false;
    let status = decision.status;
    if (decision.imageUpdate) {
      try {
        created = await this.#createUpdate(decision.imageUpdate, wi.status?.lastChangedTime);
      } catch (err) {
        const message = boundMessage(
          `the tag moved to ${decision.imageUpdate.body.spec.toDigest} but ImageUpdate ${decision.imageUpdate.name} could not be created: ${(err as Error).message}`,
        );
        this.#logger.warn('ImageUpdate not created', { watchedImage: objectKey(wi), error: message });
        status = imageUpdateFailedStatus(target, message, this.#now());
      }
    }
    const statusWritten = await this.#guarded(wi, () => this.#cluster.applyStatus(wi, status));
    return { imageUpdateCreated: created, statusWritten };
  }

  /**
   * Replaces the check record with `run`'s unwritten checks and the older entries still needed
   * (pruneCheckRecord). A run that meets another's write (a conflict) reads the record again, merges
   * and tries once more. False when the record could not be saved: the caller writes the checks to
   * their status instead.
   */
  async saveCheckRecord(record: CheckRecordRead, run: RecordedRun): Promise<boolean> {
    const lastWritten = new Map<string, number>();
    for (const wi of run.listed) {
      const uid = wi.metadata.uid;
      if (!uid) continue;
      lastWritten.set(uid, run.written.get(uid) ?? lastWrittenCheckOf(wi));
    }
    const context = { lastWritten, allNamespaces: run.allNamespaces, now: run.now };
    const additions: UnwrittenChecks = new Map(run.uids.map((uid) => [uid, run.checkedAt]));
    const where = `${record.ref.namespace}/${record.ref.name}`;
    let stored = record.stored;
    let base: ReadonlyMap<string, number> = record.checks;
    try {
      for (let attempt = 1; attempt <= 2; attempt++) {
        const next = pruneCheckRecord(mergeCheckRecords(base, additions), context);
        const text = formatCheckRecord(next);
        // Most runs leave the record as it was (nothing due, or only changes written): no write.
        if (text === stored.text || (next.size === 0 && stored.text === undefined)) return true;
        if (text.length > MAX_RECORD_BYTES) {
          this.#logger.warn('check record too large: its checks are written to their status', {
            configMap: where,
            bytes: text.length,
          });
          return false;
        }
        if (await this.#cluster.replaceCheckRecord(record.ref, stored, text)) return true;
        const fresh = await this.#cluster.readCheckRecord(record.ref);
        if (!fresh) break;
        stored = fresh;
        base = mergeCheckRecords(record.checks, parseCheckRecord(fresh.text).checks);
      }
      this.#logger.warn(
        'check record changed or went away meanwhile: its checks are written to their status',
        {
          configMap: where,
        },
      );
    } catch (err) {
      this.#logger.warn('check record not saved: its checks are written to their status', {
        configMap: where,
        error: boundMessage((err as Error).message),
      });
    }
    return false;
  }

  /** Creates the ImageUpdate under its deterministic name; true when this call created it. */
  async #createUpdate(draft: ImageUpdateDraft, baselineSince: string | undefined): Promise<boolean> {
    // A tag that moves back to an earlier digest meets that digest's old record: the next free
    // suffix is taken, deterministically, so reruns still find their own.
    for (let attempt = 1; attempt <= MAX_NAME_ATTEMPTS; attempt++) {
      const name = attempt === 1 ? draft.name : `${draft.name.slice(0, 250)}-${attempt}`;
      const candidate = {
        ...draft,
        name,
        body: { ...draft.body, metadata: { ...draft.body.metadata, name } },
      };
      const res = await this.#cluster.createImageUpdate(candidate);
      if (res.created) {
        this.#logger.info('ImageUpdate created', {
          imageUpdate: namespacedKey(draft.body.metadata.namespace, name),
        });
        return true;
      }
      if (isSameChange(res.existing, candidate, baselineSince)) return false;
    }
    throw new Error(
      `no free name for the ImageUpdate ${draft.name}: delete old ImageUpdates of this WatchedImage`,
    );
  }

  async #guarded(wi: WatchedImage, write: () => Promise<void>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (err) {
      this.#logger.error('could not record the result', {
        watchedImage: objectKey(wi),
        error: boundMessage((err as Error).message),
      });
      return false;
    }
  }
}

/** What a run leaves for the check record. */
export interface RecordedRun {
  /** Every WatchedImage the run listed. */
  listed: readonly WatchedImage[];
  /** The lastCheckedTime (ms) of each status the run wrote, by uid. */
  written: ReadonlyMap<string, number>;
  allNamespaces: boolean;
  /** The run's checks left unwritten, all recorded as made at `checkedAt` (ms). */
  uids: readonly string[];
  checkedAt: number;
  now: number;
}
