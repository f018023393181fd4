import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backoff, createQueue, type QueuedWrite } from '../../src/queue';
import { json, lowerHeaders, UUID } from './helpers';

const URL_ = 'https://api.consentry.test/v1/sites/sk_test/consents';
const KEY = 'consentry:sk_test';
const item = (key: string, statistics = true): QueuedWrite => ({
  key,
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
    const q = createQueue({ url: URL_, storageKey: KEY, onSent, onDrop: vi.fn(), random: () => 1 });
    expect(await q.push(item('k1'))).toBe(false);
    expect(JSON.parse(localStorage.getItem(KEY)!)).toEqual([item('k1')]);

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
    const q = createQueue({ url: URL_, storageKey: KEY, onSent: vi.fn(), onDrop: vi.fn(), random: () => 1 });
    expect(await q.push(item('k1', true))).toBe(false);
    // a new action tries at once, the older write first
    expect(await q.push(item('k2', false))).toBe(true);
    expect(calls.map((c) => c.headers['idempotency-key'])).toEqual(['k1', 'k1', 'k2']);
    await vi.advanceTimersByTimeAsync(120000);
    expect(calls).toHaveLength(3);
  });

  it('drops a write the server refuses for good (4xx) and goes on', async () => {
    const calls = mockFetch([json({ title: 'bad' }, 400)]);
    const onDrop = vi.fn();
    const onSent = vi.fn();
    const q = createQueue({ url: URL_, storageKey: KEY, onSent, onDrop });
    expect(await q.push(item('k1'))).toBe(true);
    expect(onDrop).toHaveBeenCalledWith(item('k1'), 400);
    expect(onSent).not.toHaveBeenCalled();
    expect(q.size()).toBe(0);
    expect(calls).toHaveLength(1);
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
