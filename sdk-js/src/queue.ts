/**
 * Durable write queue: each user action is one POST with its own
 * Idempotency-Key, kept in localStorage until the server accepted it, retried
 * in order with exponential backoff, and re-sent with `fetch(…, {keepalive})`
 * when the page is hidden (sendBeacon cannot set the Idempotency-Key header).
 * A write the server refuses (4xx other than 408/429) is dropped at once; one
 * still failing after {@link MAX_TRIES} attempts or {@link MAX_AGE_MS} is
 * given up: neither blocks the writes after it for long. Tabs of one origin
 * share the stored queue: saving merges with what another tab stored, and a
 * tab whose write another tab's save dropped stores it again at once.
 */
import type { ConsentWrite, ConsentWriteResult, Problem } from './types';

/** One queued write; `key` is the Idempotency-Key, reused on every retry. */
export interface QueuedWrite {
  key: string;
  body: ConsentWrite;
  /** When it was queued, epoch ms. */
  at: number;
  /** Failed attempts so far. */
  n?: number;
}

/** Settings of {@link createQueue}. */
export interface QueueOptions {
  /** `POST` target: `{endpoint}/v1/sites/{site_key}/consents`. */
  url: string;
  /** localStorage key. */
  storageKey: string;
  /** Called after a 2xx, with the parsed body (null if unreadable). */
  onSent(item: QueuedWrite, result: ConsentWriteResult | null): void;
  /**
   * Called when a write is dropped: the server refused it for good (4xx other
   * than 408/429; `problem` is its body, null if unreadable), or it was given
   * up after too many attempts or too long (`status` 0).
   */
  onDrop(item: QueuedWrite, status: number, problem: Problem | null): void;
  /** Aborting it stops scheduled retries. */
  signal?: AbortSignal;
}

/** The queue's interface. */
export interface WriteQueue {
  /** Number of writes of this page not yet accepted. */
  size(): number;
  /** Writes not yet accepted, oldest first, including those another tab stored. */
  items(): QueuedWrite[];
  /** Appends a write (persisted at once) and flushes; true once the server accepted this write. */
  push(item: QueuedWrite): Promise<boolean>;
  /** Sends queued writes in order; true when the queue is empty afterwards. */
  flush(): Promise<boolean>;
  /** Fires every queued write with keepalive, without waiting (page hide). */
  beacon(): void;
}

/** First retry delay and cap, in milliseconds. */
export const BACKOFF_MS = 1000;
export const BACKOFF_MAX_MS = 60000;
/** A write still failing after this many attempts, or this long after it was queued, is given up. */
export const MAX_TRIES = 100;
export const MAX_AGE_MS = 86400000;

/** Delay before retry number `attempt` (0-based): 1 s, 2 s, 4 s … capped at 60 s, times 0.5–1 jitter. */
export function backoff(attempt: number, r: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** attempt) * (0.5 + r / 2);
}

/** Creates a queue, loading writes left by an earlier page. */
export function createQueue(o: QueueOptions): WriteQueue {
  // blocked storage (e.g. sandboxed iframe) throws on access: the queue lives in memory only
  const key = o.storageKey;
  const load = (): QueuedWrite[] => {
    try {
      // writes without a policy revision are refused by the server: never send them
      return (JSON.parse(localStorage.getItem(key) || '[]') as QueuedWrite[]).filter((it) => it.body.policy_revision);
    } catch {
      return []; // a corrupt entry is dropped: the server stays the record
    }
  };
  let items = load();
  /** Keys this page removed: 1 dropped, 2 accepted; another tab's copy must not bring them back. */
  const done: Record<string, number> = {};
  let busy: Promise<boolean> = Promise.resolve(true);
  let attempt = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * This page's writes and, merged by key, those only another tab stored,
   * oldest first; `keep`: also those this page removed (see the storage listener).
   */
  const all = (keep?: unknown) =>
    load()
      .filter((it) => (keep || !done[it.key]) && !items.some((x) => x.key == it.key))
      .concat(items)
      .sort((a, b) => a.at - b.at);
  const save = (keep?: unknown) => {
    const v = all(keep);
    try {
      v.length ? localStorage.setItem(key, JSON.stringify(v)) : localStorage.removeItem(key);
    } catch {
      // blocked, or quota exceeded: keep the in-memory copy
    }
  };
  const send = (it: QueuedWrite, keepalive?: boolean) =>
    fetch(o.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': it.key },
      body: JSON.stringify(it.body),
      // with credentials: an API on the page's site sets the visitor cookie in its answer
      credentials: 'include',
      keepalive,
    });
  const run = async (): Promise<boolean> => {
    for (let it; (it = items[0]); ) {
      // a network error (or a refusal without CORS headers) is retried
      const res = await send(it).catch(() => {});
      // the server's final answer: accepted, or refused for good (4xx other than 408/429)
      const final = res && (res.ok || !/^(5|408|429)/.test(res.status as never));
      if (final || (it.n = (it.n || 0) + 1) >= MAX_TRIES || Date.now() - it.at > MAX_AGE_MS) {
        items.shift();
        done[it.key] = res && res.ok ? 2 : 1;
        save();
        const body = final ? await res.json().catch(() => null) : null;
        if (final) attempt = 0;
        if (done[it.key] > 1) o.onSent(it, body);
        else o.onDrop(it, final ? res.status : 0, body);
        continue;
      }
      save();
      clearTimeout(timer);
      // after an abort, a retry due does nothing
      timer = setTimeout(() => o.signal?.aborted || flush(), backoff(attempt++, Math.random()));
      return false;
    }
    return true;
  };
  // one run at a time; a call during a run waits for it, then runs again for what came since (also after a failed run)
  const flush = (): Promise<boolean> => (busy = busy.then(run, run));

  // Each tab holds its own copy of localStorage, updated asynchronously: a tab may save from a
  // read that does not have the write another tab stored a moment ago, and so overwrite it. The
  // tab that lost its write sees that here and puts it back at once, only adding (removing what
  // this page sent could undo what the other tab just stored, and the two tabs could take turns).
  addEventListener(
    'storage',
    (e) => e.key == key && items.some((it) => !(e.newValue || '').includes(it.key)) && save(1),
    { signal: o.signal },
  );

  return {
    size: () => items.length,
    items: () => all(),
    push(it) {
      items.push(it);
      save();
      // a write in flight picks this one up next; during a backoff wait, a new action tries at once
      return flush().then(() => done[it.key] > 1);
    },
    flush,
    beacon() {
      items.map((it) => send(it, true).catch(() => {}));
    },
  };
}
