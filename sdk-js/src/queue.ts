/**
 * Durable write queue: each user action is one POST with its own
 * Idempotency-Key, kept in localStorage until the server accepted it, retried
 * in order with exponential backoff, and re-sent with `fetch(…, {keepalive})`
 * when the page is hidden (sendBeacon cannot set the Idempotency-Key header).
 */
import type { ConsentWrite, ConsentWriteResult } from './types';

/** One queued write; `key` is the Idempotency-Key, reused on every retry. */
export interface QueuedWrite {
  key: string;
  body: ConsentWrite;
}

/** Settings of {@link createQueue}. */
export interface QueueOptions {
  /** `POST` target: `{endpoint}/v1/sites/{site_key}/consents`. */
  url: string;
  /** localStorage key. */
  storageKey: string;
  /** Called after a 2xx, with the parsed body (null if unreadable). */
  onSent(item: QueuedWrite, result: ConsentWriteResult | null): void;
  /** Called when the server refused a write for good (4xx other than 408/429). */
  onDrop(item: QueuedWrite, status: number): void;
  /** Aborting it stops scheduled retries. */
  signal?: AbortSignal;
  /** 0 ≤ r < 1, for backoff jitter; default Math.random. */
  random?: () => number;
}

/** The queue's interface. */
export interface WriteQueue {
  /** Number of writes not yet accepted. */
  size(): number;
  /** Appends a write (persisted at once) and flushes. */
  push(item: QueuedWrite): Promise<boolean>;
  /** Sends queued writes in order; true when the queue is empty afterwards. */
  flush(): Promise<boolean>;
  /** Fires every queued write with keepalive, without waiting (page hide). */
  beacon(): void;
}

/** First retry delay and cap, in milliseconds. */
export const BACKOFF_MS = 1000;
export const BACKOFF_MAX_MS = 60000;

/** Delay before retry number `attempt` (0-based): 1 s, 2 s, 4 s … capped at 60 s, times 0.5–1 jitter. */
export function backoff(attempt: number, r: number): number {
  return Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** attempt) * (0.5 + r / 2);
}

function storage(): Storage | null {
  try {
    return localStorage;
  } catch {
    return null; // blocked storage (e.g. sandboxed iframe): the queue lives in memory only
  }
}

/** Creates a queue, loading writes left by an earlier page. */
export function createQueue(o: QueueOptions): WriteQueue {
  const ls = storage();
  let items: QueuedWrite[] = [];
  try {
    items = JSON.parse((ls && ls.getItem(o.storageKey)) || '[]');
  } catch {
    // a corrupt entry is dropped: the server stays the record
  }
  let busy: Promise<boolean> | null = null;
  let attempt = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (o.signal) o.signal.addEventListener('abort', () => clearTimeout(timer));

  const save = () => {
    try {
      if (ls) items.length ? ls.setItem(o.storageKey, JSON.stringify(items)) : ls.removeItem(o.storageKey);
    } catch {
      // quota exceeded: keep the in-memory copy
    }
  };
  const send = (it: QueuedWrite, keepalive?: boolean) =>
    fetch(o.url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Idempotency-Key': it.key },
      body: JSON.stringify(it.body),
      credentials: 'omit',
      keepalive,
    });

  const run = async (): Promise<boolean> => {
    while (items.length) {
      const it = items[0];
      let res: Response | undefined;
      try {
        res = await send(it);
      } catch {
        // network error: retry below
      }
      if (res && (res.ok || (res.status < 500 && res.status != 408 && res.status != 429))) {
        items.shift();
        save();
        attempt = 0;
        if (res.ok) o.onSent(it, await res.json().catch(() => null));
        else o.onDrop(it, res.status);
        continue;
      }
      clearTimeout(timer);
      if (!(o.signal && o.signal.aborted)) timer = setTimeout(flush, backoff(attempt++, (o.random || Math.random)()));
      return false;
    }
    return true;
  };
  // one run at a time; a call during a run waits for it, then runs again for what came since
  function flush(): Promise<boolean> {
    return busy ? busy.then(flush) : (busy = run().finally(() => (busy = null)));
  }

  return {
    size: () => items.length,
    push(it) {
      items.push(it);
      save();
      // a write in flight picks this one up next; during a backoff wait, a new action tries at once
      return flush();
    },
    flush,
    beacon() {
      for (const it of items) send(it, true).catch(() => {});
    },
  };
}
