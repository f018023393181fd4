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
export declare const BACKOFF_MS = 1000;
export declare const BACKOFF_MAX_MS = 60000;
/** A write still failing after this many attempts, or this long after it was queued, is given up. */
export declare const MAX_TRIES = 100;
export declare const MAX_AGE_MS = 86400000;
/** Delay before retry number `attempt` (0-based): 1 s, 2 s, 4 s … capped at 60 s, times 0.5–1 jitter. */
export declare function backoff(attempt: number, r: number): number;
/** Creates a queue, loading writes left by an earlier page. */
export declare function createQueue(o: QueueOptions): WriteQueue;
