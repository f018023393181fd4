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
export declare const BACKOFF_MS = 1000;
export declare const BACKOFF_MAX_MS = 60000;
/** Delay before retry number `attempt` (0-based): 1 s, 2 s, 4 s … capped at 60 s, times 0.5–1 jitter. */
export declare function backoff(attempt: number, r: number): number;
/** Creates a queue, loading writes left by an earlier page. */
export declare function createQueue(o: QueueOptions): WriteQueue;
