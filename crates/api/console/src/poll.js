// Repeating a refresh while a page is open.
//
// The next run is scheduled only after the previous one finished, so a slow witness never gets a
// pile of overlapping requests, and everything stops when the page's AbortSignal fires (the
// reviewer navigated away or logged out).

/** Runs `task` now and then `intervalMs` after each run ends, until `signal` aborts. */
export function every(intervalMs, signal, task) {
  let timer = null;
  const run = async () => {
    if (signal.aborted) return;
    try {
      await task();
    } catch (e) {
      // Tasks report their own failures to the reviewer; this only keeps a bug in one from
      // stopping the refresh for good.
      console.error(e);
    } finally {
      if (!signal.aborted) timer = setTimeout(run, intervalMs);
    }
  };
  signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  run();
}
