// The console is an API client: every call here is a documented operation of /openapi.json,
// made with the admin token the user signed in with (kept in sessionStorage, never in a URL).

const TOKEN_KEY = 'consentry.console.token';

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(t: string | null): void {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An RFC 9457 problem answered by the server (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(
    public status: number,
    public detail: string,
    public path: string,
  ) {
    super(detail);
  }
  /** Whether the server does not offer this operation at all (a 404 naming no route). */
  get missingEndpoint(): boolean {
    return this.status === 404 && /no route for/.test(this.detail);
  }
}

async function fail(res: Response, path: string): Promise<never> {
  let detail = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && typeof body.detail === 'string') detail = body.detail;
  } catch {
    /* not a problem body */
  }
  if (res.status === 401) window.dispatchEvent(new CustomEvent('consentry:unauthorized', { detail }));
  throw new ApiError(res.status, detail, path);
}

export async function request(method: string, path: string, body?: unknown, accept = 'application/json'): Promise<Response> {
  const headers: Record<string, string> = { Accept: accept };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `the server could not be reached (${String(e)})`, path);
  }
  if (!res.ok) await fail(res, path);
  return res;
}

export async function get<T>(path: string): Promise<T> {
  return (await request('GET', path)).json();
}

export async function post<T>(path: string, body?: unknown): Promise<T> {
  const res = await request('POST', path, body);
  return res.status === 204 ? (undefined as T) : res.json();
}

export async function del(path: string): Promise<void> {
  await request('DELETE', path);
}

/** Saves `blob` as a file named `name` (a download, no navigation). */
export function save(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** GETs `path` and saves the answer as `name`. */
export async function download(path: string, name: string, accept = 'application/json'): Promise<void> {
  const res = await request('GET', path, undefined, accept);
  save(await res.blob(), name);
}

export const enc = encodeURIComponent;

/** RFC 4180 CSV of rows (the first row is the header). */
export function toCsv(rows: (string | number | boolean | null | undefined)[][]): string {
  const cell = (v: string | number | boolean | null | undefined) => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return rows.map((r) => r.map(cell).join(',')).join('\r\n') + '\r\n';
}

// Shapes of the answers the console reads (see openapi/openapi.json).
export interface Site { id: string; site_key: string; name: string; origins: string[]; purposes?: string[] | null; created_at: string }
export interface Purpose {
  key: string; title: string; description: string; kind: string; consent_model: string; legal_basis: string;
  gpc_applies: boolean; max_age_days?: number | null; regions?: Record<string, string>;
}
export interface DecisionCount { purpose: string; decision: string; source: string; count: number }
export interface Submissions {
  total: number; accept_all: number; reject_all: number; partial: number; gpc: number;
  visitor_submissions: number; gpc_share: number; by_source: Record<string, Record<string, number>>;
}
export interface Bucket { start: string; decisions: DecisionCount[]; submissions: Submissions }
export interface ConsentReport { from: string; to: string; interval: string; buckets: Bucket[]; totals: Bucket; pending_events: number }
export interface OptOutFigures {
  received: number; completed: number; open: number; overdue: number; completed_late: number;
  median_business_days: number | null; p95_business_days: number | null;
}
export interface OptOutReport { from: string; to: string; totals: OptOutFigures; by_channel: (OptOutFigures & { channel: string })[] }
export interface OptOut {
  id: string; subject_id: string; channel: string; scope: string; received_at: string; due_at: string;
  completed_at: string | null; completion_note?: string | null; status: 'open' | 'overdue' | 'completed';
}
export interface Revision {
  id: string; policy_key: string; revision_date: string; effective_at: string; url: string; sha256: string | null;
  requires_reconsent: boolean; purposes: string[] | null; in_force: boolean; created_at: string;
}
export interface Webhook { id: string; url: string; events: string[]; created_at: string }
export interface Delivery {
  id: string; webhook_id: string; event_id: string; event_type: string; status: string; attempts: number;
  last_attempt_at: string | null; last_response_status: number | null; last_error: string | null; created_at: string;
}
export interface Token {
  id: string; scopes: string[]; label: string | null; created_at: string; expires_at: string | null;
  revoked_at: string | null; status: string; current: boolean; token?: string;
}
export interface ConsentEvent {
  id: string; purpose: string; decision: string; policy_revision: string | null; source: string; region: string | null;
  site_id: string | null; occurred_at: string; recorded_at: string; prev_hash: string; hash: string;
}
