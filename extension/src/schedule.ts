/**
 * When the panel asks the server again: a slow poll that backs off while the server fails,
 * quickens while a job runs, and pauses while nobody can see the answer.
 */

export interface IDelayOptions {
  /** the poll interval of the settings, in ms */
  intervalMs: number;
  /** refreshes that failed in a row (0 after a success) */
  failures: number;
  /** the longest wait between two tries, in ms */
  maxMs: number;
  /** a job of the notebook is queued or running: follow it closely */
  active?: boolean;
}

/** How often a running job's progress is asked for, in ms. */
export const ACTIVE_INTERVAL_MS = 2000;
/** The shortest poll interval the settings may give, in ms (a faster poll only loads the server). */
export const MIN_INTERVAL_MS = 1000;

/**
 * The wait before the next refresh: the interval after a success (shorter while a job runs),
 * doubled for each failure in a row, never past `maxMs`.
 */
export function nextDelay(options: IDelayOptions): number {
  const interval = Math.max(MIN_INTERVAL_MS, options.intervalMs);
  const max = Math.max(interval, options.maxMs);
  if (options.failures <= 0) {
    return options.active ? Math.min(interval, ACTIVE_INTERVAL_MS) : interval;
  }
  const exponent = Math.min(options.failures, 30);
  return Math.min(max, interval * Math.pow(2, exponent));
}

/** The poll interval in ms from the setting in seconds (bad values fall back to the default). */
export function intervalFromSetting(seconds: unknown, fallbackSeconds = 10): number {
  const value = typeof seconds === 'number' && isFinite(seconds) ? seconds : fallbackSeconds;
  return Math.max(MIN_INTERVAL_MS, Math.round(value * 1000));
}

export interface IRefresherOptions {
  refresh: () => Promise<void>;
  intervalMs: number;
  maxMs: number;
  /** nobody can see the answer (the page or the panel is hidden): do not poll */
  isHidden: () => boolean;
  /** a job is running: poll at ACTIVE_INTERVAL_MS */
  isActive?: () => boolean;
}

/**
 * Runs `refresh` now (`refreshNow`, e.g. after a cell ran) and then on the schedule of
 * `nextDelay`. Refreshes never overlap: one asked for while another runs follows it. A poll
 * due while hidden is skipped and the refresher sleeps until `wake()`.
 */
export class Refresher {
  constructor(options: IRefresherOptions) {
    this._options = options;
  }

  get failures(): number {
    return this._failures;
  }

  /** The wait before the poll now scheduled, in ms (null when paused or disposed). */
  get scheduledDelay(): number | null {
    return this._timer === null ? null : this._delay;
  }

  get paused(): boolean {
    return this._paused;
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  set intervalMs(value: number) {
    this._options.intervalMs = value;
    if (this._timer !== null) {
      this._schedule();
    }
  }

  /** Refresh now; the promise settles when this refresh (or the one it joined) ends. */
  refreshNow(): Promise<void> {
    if (this._disposed) {
      return Promise.resolve();
    }
    if (this._running) {
      this._again = true;
      return this._running;
    }
    this._clear();
    this._paused = false;
    this._running = this._run();
    return this._running;
  }

  /** Called when the page or panel shows again: refresh if a poll was skipped meanwhile. */
  wake(): void {
    if (this._paused && !this._options.isHidden()) {
      void this.refreshNow();
    }
  }

  dispose(): void {
    this._disposed = true;
    this._clear();
  }

  private async _run(): Promise<void> {
    do {
      this._again = false;
      try {
        await this._options.refresh();
        this._failures = 0;
      } catch {
        this._failures += 1;
      }
    } while (this._again && !this._disposed);
    this._running = null;
    this._schedule();
  }

  private _schedule(): void {
    this._clear();
    if (this._disposed) {
      return;
    }
    this._delay = nextDelay({
      intervalMs: this._options.intervalMs,
      failures: this._failures,
      maxMs: this._options.maxMs,
      active: this._options.isActive ? this._options.isActive() : false
    });
    this._timer = setTimeout(() => {
      this._timer = null;
      if (this._options.isHidden()) {
        this._paused = true;
        return;
      }
      void this.refreshNow();
    }, this._delay);
  }

  private _clear(): void {
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _options: IRefresherOptions;
  private _failures = 0;
  private _delay = 0;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _running: Promise<void> | null = null;
  private _again = false;
  private _paused = false;
  private _disposed = false;
}
