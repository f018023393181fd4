import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoff, createQueue, MAX_AGE_MS, MAX_TRIES, type QueuedWrite } from '../../src/queue';
import { json, lowerHeaders, UUID } from './helpers';

const URL_ = 'https://api.consentry.test/v1/sites/sk_test/consents';
const KEY = 'consentry:sk_test';
const item = (key: string, statistics = true, at = Date.now()): QueuedWrite => ({
  key,
  at,
  body: { visitor_id: '0b7c8f5e-3c1a-4d2b-9e8f-1a2b3c4d5e6f', choices: { statistics }, policy_revision: '2021-02-01', source: 'banner' },
});
const created = () => json({ event_ids: ['e'], consents: { subject: 'visitor:x', needs_consent: false, purposes: {} }, gpc_honored: false }, 201);

function mockFetch(answers: (Response | 'fail')[]) {
  const calls: { headers: Record<string, string>; body: unknown; keepalive?: boolean }[] = [];
  const f = vi.fn(async (_u: RequestInfo | URL, init: RequestInit = {}) => {
    calls.push({ headers: lowerHeaders(init.headers), body: JSON.parse(String(init.body)), keepalive: init.keepalive });
    const a = answers.shift() || created();
    if (a == 'fail') throw new TypeError('Failed to fetch');
    return a;
  });
  vi.stubGlobal('fetch', f);
  return calls;
}

describe('write queue', () => {
  beforeEach(() => {
    localStorage.clear();
    vi.useFakeTimers();
    // the longest backoff: 1 s, 2 s, 4 s …
    vi.spyOn(Math, 'random').mockReturnValue(1);
  });
  afterEach(() => vi.useRealTimers());

  it('backoff doubles from 1 s, is capped at 60 s, with 0.5–1 jitter', () => {
    expect([0, 1, 2, 3].map((n) => backoff(n, 1))).toEqual([1000, 2000, 4000, 8000]);
    expect(backoff(10, 1)).toBe(60000);
    expect(backoff(0, 0)).toBe(500);
  });

  it('sends JSON with the Idempotency-Key and reports the result', async () => {
    const calls = mockFetch([]);
    const onSent = vi.fn();
    const q = createQueue({ url: URL_, storageKey: KEY, onSent, onDrop: vi.fn() });
    const key = crypto.randomUUID();
    expect(await q.push(item(key))).toBe(true);
    expect(calls).toHaveLength(1);
    expect(calls[0].headers['idempotency-key']).toBe(key);
    expect(calls[0].headers['idempotency-key']).toMatch(UUID);
    expect(calls[0].headers['content-type']).toBe('application/json');
    expect(onSent).toHaveBeenCalledWith(item(key), expect.objectContaining({ event_ids: ['e'] }));
    expect(q.size()).toBe(0);
    expect(localStorage.getItem(KEY)).toBeNull();
  });

  it('keeps a failed write in localStorage and retries with backoff and the same key', async () => {
    const calls = mockFetch(['fail', json({ title: 'busy' }, 503), json({ title: 'slow down' }, 429)]);
    const onSent = vi.fn();
    const q = createQueue({ url: URL_, storageKey: KEY, onSent, onDrop: vi.fn() });
    expect(await q.push(item('k1'))).toBe(false);
    expect(JSON.parse(localStorage.getItem(KEY)!)).toEqual([{ ...item('k1'), n: 1 }]);

    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1); // 1 s: second try (503)
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1999);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1); // +2 s: third try (429)
    expect(calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(4000); // +4 s: accepted
    expect(calls).toHaveLength(4);
    expect(new Set(calls.map((c) => c.headers['idempotency-key']))).toEqual(new Set(['k1']));
    expect(onSent).toHaveBeenCalledTimes(1);
    expect(localStorage.getItem(KEY)).toBeNull();
  });

  it('sends queued writes in order, each once accepted', async () => {
    const calls = mockFetch(['fail']);
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() });
    expect(await q.push(item('k1', true))).toBe(false);
    // a new action tries at once, the older write first
    expect(await q.push(item('k2', false))).toBe(true);
    expect(calls.map((c) => c.headers['idempotency-key'])).toEqual(['k1', 'k1', 'k2']);
    await vi.advanceTimersByTimeAsync(120000);
    expect(calls).toHaveLength(3);
  });

  it('drops a write the server refuses for good (4xx), reports it as not accepted, and goes on', async () => {
    const calls = mockFetch([json({ title: 'bad' }, 400), 'fail', json({ title: 'gone' }, 404)]);
    const onDrop = vi.fn();
    const onSent = vi.fn();
    const q = createQueue({ url: URL_, storageKey: KEY, onSent, onDrop });
    expect(await q.push(item('k1'))).toBe(false);
    expect(onDrop).toHaveBeenCalledWith(item('k1'), 400, { title: 'bad' });
    expect(onSent).not.toHaveBeenCalled();
    expect(q.size()).toBe(0);
    expect(calls).toHaveLength(1);
    // a refusal behind a retried write does not block the one after it
    expect(await q.push(item('k2'))).toBe(false);
    // a new action tries at once: k2 is refused (404) and dropped, k3 goes through
    expect(await q.push(item('k3'))).toBe(true);
    expect(onDrop).toHaveBeenLastCalledWith(expect.objectContaining({ key: 'k2' }), 404, { title: 'gone' });
    expect(onSent).toHaveBeenCalledWith(expect.objectContaining({ key: 'k3' }), expect.anything());
    expect(calls.map((c) => c.headers['idempotency-key'])).toEqual(['k1', 'k2', 'k2', 'k3']);
    expect(localStorage.getItem(KEY)).toBeNull();
  });

  it('408 and 429 are retried, not dropped', async () => {
    const calls = mockFetch([json({}, 408), json({}, 429)]);
    const onDrop = vi.fn();
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop });
    expect(await q.push(item('k1'))).toBe(false);
    await vi.advanceTimersByTimeAsync(3000);
    expect(calls).toHaveLength(3);
    expect(onDrop).not.toHaveBeenCalled();
    expect(q.size()).toBe(0);
  });

  it(`gives a write up after ${MAX_TRIES} failed attempts, so later writes are not blocked forever`, async () => {
    let n = 0;
    vi.stubGlobal('fetch', vi.fn(async () => (n++ < MAX_TRIES ? json({ title: 'broken' }, 500) : created())));
    const onDrop = vi.fn();
    const onSent = vi.fn();
    const q = createQueue({ url: URL_, storageKey: KEY, onSent, onDrop });
    q.push(item('stuck', true, Date.now()));
    q.push(item('later', false, Date.now() + 1));
    for (let i = 0; i < MAX_TRIES && !onDrop.mock.calls.length; i++) await vi.advanceTimersByTimeAsync(60000);
    expect(onDrop).toHaveBeenCalledWith(expect.objectContaining({ key: 'stuck' }), 0, null);
    expect(n).toBe(MAX_TRIES + 1);
    expect(onSent).toHaveBeenCalledWith(expect.objectContaining({ key: 'later' }), expect.anything());
    expect(q.size()).toBe(0);
  });

  it('gives a write up once it is more than a day old', async () => {
    const calls = mockFetch(['fail', 'fail']);
    const onDrop = vi.fn();
    localStorage.setItem(KEY, JSON.stringify([item('old', true, Date.now() - MAX_AGE_MS - 1), item('new', false, Date.now())]));
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop });
    expect(await q.flush()).toBe(false); // the old one is dropped after its failure, the new one failed too
    expect(onDrop).toHaveBeenCalledWith(expect.objectContaining({ key: 'old' }), 0, null);
    expect(calls.map((c) => c.headers['idempotency-key'])).toEqual(['old', 'new']);
    expect(JSON.parse(localStorage.getItem(KEY)!).map((i: QueuedWrite) => i.key)).toEqual(['new']);
  });

  it('never sends a stored write without a policy revision (the server refuses those)', async () => {
    const calls = mockFetch([]);
    const bad = { key: 'no-rev', at: 1, body: { visitor_id: item('x').body.visitor_id, choices: { statistics: true }, source: 'banner' } };
    localStorage.setItem(KEY, JSON.stringify([bad, item('ok')]));
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() });
    expect(q.size()).toBe(1);
    await q.flush();
    expect(calls.map((c) => c.headers['idempotency-key'])).toEqual(['ok']);
  });

  it('two tabs: saving merges with what the other tab stored, by write key, oldest first', async () => {
    mockFetch(['fail', 'fail', 'fail', 'fail']);
    const a = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() });
    const b = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() });
    await a.push(item('from-a', false, Date.now()));
    await b.push(item('from-b', true, Date.now() + 1));
    const stored = () => JSON.parse(localStorage.getItem(KEY)!).map((i: QueuedWrite) => i.key);
    expect(stored()).toEqual(['from-a', 'from-b']);
    expect(a.items().map((i) => i.key)).toEqual(['from-a', 'from-b']);
    expect(a.size()).toBe(1); // each tab sends its own
    // a sends its write; b saving afterwards does not bring it back
    vi.stubGlobal('fetch', vi.fn(async () => created()));
    expect(await a.flush()).toBe(true);
    expect(stored()).toEqual(['from-b']);
    await b.push(item('from-b2', true, Date.now() + 2));
    expect(localStorage.getItem(KEY)).toBeNull();
  });

  it("two tabs: a tab whose write another tab's save dropped (from a stale copy) stores it again at once, only adding", async () => {
    mockFetch(['fail', 'fail']);
    // its own key: queues of earlier tests still listen on theirs
    const KEY = 'consentry:sk_tabs';
    const a = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() });
    await a.push(item('from-a', false));
    const stored = () => JSON.parse(localStorage.getItem(KEY) || '[]').map((i: QueuedWrite) => i.key);
    // another tab saved a queue without a's write (the storage event reaches only the other tabs)
    const other = JSON.stringify([item('from-b', true, Date.now() + 1)]);
    localStorage.setItem(KEY, other);
    dispatchEvent(new StorageEvent('storage', { key: KEY, newValue: other }));
    expect(stored()).toEqual(['from-a', 'from-b']);
    // a save that has it: nothing to do
    const both = localStorage.getItem(KEY);
    const set = vi.spyOn(Storage.prototype, 'setItem');
    dispatchEvent(new StorageEvent('storage', { key: KEY, newValue: both }));
    // another key, or the queue removed altogether
    dispatchEvent(new StorageEvent('storage', { key: 'other', newValue: null }));
    expect(set).not.toHaveBeenCalled();
    localStorage.removeItem(KEY);
    dispatchEvent(new StorageEvent('storage', { key: KEY, newValue: null }));
    expect(stored()).toEqual(['from-a']);
  });

  it('a later page picks up the stored queue and resends with the same key', async () => {
    localStorage.setItem(KEY, JSON.stringify([item('left-over')]));
    const calls = mockFetch([]);
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() });
    expect(q.size()).toBe(1);
    expect(await q.flush()).toBe(true);
    expect(calls[0].headers['idempotency-key']).toBe('left-over');
  });

  it('beacon() fires every queued write with keepalive and the headers', async () => {
    const calls = mockFetch(['fail', 'fail', 'fail']);
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() });
    await q.push(item('k1'));
    q.beacon();
    expect(calls).toHaveLength(2);
    expect(calls[1]).toMatchObject({ keepalive: true, headers: { 'idempotency-key': 'k1', 'content-type': 'application/json' } });
    expect(q.size()).toBe(1); // only a 2xx seen by the page removes it
  });

  it('a corrupt stored queue is ignored', () => {
    localStorage.setItem(KEY, '{nope');
    expect(createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn() }).size()).toBe(0);
  });

  it('stops retrying when its signal is aborted', async () => {
    const calls = mockFetch(['fail']);
    const stop = new AbortController();
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn(), signal: stop.signal });
    await q.push(item('k1'));
    stop.abort();
    await vi.advanceTimersByTimeAsync(120000);
    expect(calls).toHaveLength(1);
  });
});
