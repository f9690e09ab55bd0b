/** A counting semaphore per host, so one run never has more than `limit` requests open to a registry. */

export type Release = () => void;

export class HostLimiter {
  readonly #limit: number;
  readonly #active = new Map<string, number>();
  readonly #waiting = new Map<string, Array<() => void>>();

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`per-host limit must be ≥ 1, got ${limit}`);
    this.#limit = limit;
  }

  get limit(): number {
    return this.#limit;
  }

  /** Resolves once a slot for `host` is free; call the returned function exactly once to give it back. */
  async acquire(host: string): Promise<Release> {
    const active = this.#active.get(host) ?? 0;
    if (active < this.#limit) {
      this.#active.set(host, active + 1);
    } else {
      // The slot is handed over by release(), so the count stays as it is.
      await new Promise<void>((resolve) => {
        const queue = this.#waiting.get(host) ?? [];
        queue.push(resolve);
        this.#waiting.set(host, queue);
      });
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#release(host);
    };
  }

  #release(host: string): void {
    const next = this.#waiting.get(host)?.shift();
    if (next) {
      next();
      return;
    }
    if (this.#waiting.get(host)?.length === 0) this.#waiting.delete(host);
    const active = (this.#active.get(host) ?? 1) - 1;
    if (active === 0) this.#active.delete(host);
    else this.#active.set(host, active);
  }

  /** Requests open to `host` right now (for tests and debugging). */
  active(host: string): number {
    return this.#active.get(host) ?? 0;
  }
}
