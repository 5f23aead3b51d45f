import {
  ACTIVE_INTERVAL_MS,
  intervalFromSetting,
  MIN_INTERVAL_MS,
  nextDelay,
  Refresher
} from '../schedule';

describe('nextDelay', () => {
  it('waits the interval after a success', () => {
    expect(nextDelay({ intervalMs: 10000, failures: 0, maxMs: 160000 })).toBe(10000);
  });

  it('doubles for each failure in a row, up to the maximum', () => {
    const delays = [1, 2, 3, 4, 5, 6].map(failures =>
      nextDelay({ intervalMs: 10000, failures, maxMs: 160000 })
    );
    expect(delays).toEqual([20000, 40000, 80000, 160000, 160000, 160000]);
  });

  it('follows a running job closely, but not while failing', () => {
    expect(nextDelay({ intervalMs: 10000, failures: 0, maxMs: 1e5, active: true })).toBe(
      ACTIVE_INTERVAL_MS
    );
    expect(nextDelay({ intervalMs: 10000, failures: 1, maxMs: 1e5, active: true })).toBe(
      20000
    );
  });

  it('never polls faster than the minimum, nor caps below the interval', () => {
    expect(nextDelay({ intervalMs: 10, failures: 0, maxMs: 10 })).toBe(MIN_INTERVAL_MS);
    expect(nextDelay({ intervalMs: 5000, failures: 3, maxMs: 100 })).toBe(5000);
  });

  it('survives absurd failure counts', () => {
    expect(nextDelay({ intervalMs: 1000, failures: 5000, maxMs: 60000 })).toBe(60000);
  });
});

describe('intervalFromSetting', () => {
  it('reads seconds, and falls back on bad values', () => {
    expect(intervalFromSetting(30)).toBe(30000);
    expect(intervalFromSetting(0.1)).toBe(MIN_INTERVAL_MS);
    expect(intervalFromSetting('often')).toBe(10000);
    expect(intervalFromSetting(undefined, 5)).toBe(5000);
    expect(intervalFromSetting(NaN)).toBe(10000);
  });
});

describe('Refresher', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  async function flush() {
    for (let i = 0; i < 5; i++) {
      await Promise.resolve();
    }
  }

  it('backs off while refreshes fail and returns to the interval once one succeeds', async () => {
    let fail = true;
    const refresh = jest.fn(() => (fail ? Promise.reject(new Error('down')) : Promise.resolve()));
    const refresher = new Refresher({ refresh, intervalMs: 1000, maxMs: 8000, isHidden: () => false });
    await refresher.refreshNow();
    expect(refresher.failures).toBe(1);
    expect(refresher.scheduledDelay).toBe(2000);
    jest.advanceTimersByTime(2000);
    await flush();
    expect(refresh).toHaveBeenCalledTimes(2);
    expect(refresher.scheduledDelay).toBe(4000);
    fail = false;
    jest.advanceTimersByTime(4000);
    await flush();
    expect(refresher.failures).toBe(0);
    expect(refresher.scheduledDelay).toBe(1000);
    refresher.dispose();
  });

  it('skips polls while hidden and refreshes when woken', async () => {
    let hidden = true;
    const refresh = jest.fn(() => Promise.resolve());
    const refresher = new Refresher({ refresh, intervalMs: 1000, maxMs: 8000, isHidden: () => hidden });
    await refresher.refreshNow();
    jest.advanceTimersByTime(5000);
    await flush();
    expect(refresh).toHaveBeenCalledTimes(1);
    expect(refresher.paused).toBe(true);
    refresher.wake(); // still hidden: nothing
    await flush();
    expect(refresh).toHaveBeenCalledTimes(1);
    hidden = false;
    refresher.wake();
    await flush();
    expect(refresh).toHaveBeenCalledTimes(2);
    expect(refresher.paused).toBe(false);
    refresher.dispose();
  });

  it('never runs two refreshes at once: one asked for meanwhile follows', async () => {
    let release: () => void = () => undefined;
    let running = 0;
    let most = 0;
    const refresh = jest.fn(
      () =>
        new Promise<void>(resolve => {
          running += 1;
          most = Math.max(most, running);
          release = () => {
            running -= 1;
            resolve();
          };
        })
    );
    const refresher = new Refresher({ refresh, intervalMs: 1000, maxMs: 8000, isHidden: () => false });
    const first = refresher.refreshNow();
    const second = refresher.refreshNow();
    expect(refresh).toHaveBeenCalledTimes(1);
    release();
    await flush();
    expect(refresh).toHaveBeenCalledTimes(2);
    release();
    await Promise.all([first, second]);
    expect(most).toBe(1);
    refresher.dispose();
  });

  it('does nothing once disposed', async () => {
    const refresh = jest.fn(() => Promise.resolve());
    const refresher = new Refresher({ refresh, intervalMs: 1000, maxMs: 8000, isHidden: () => false });
    refresher.dispose();
    await refresher.refreshNow();
    jest.advanceTimersByTime(10000);
    expect(refresh).not.toHaveBeenCalled();
  });
});
