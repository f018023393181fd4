/**
 * A small in-memory stand-in for the Consentry API, implementing only the
 * contract the SDK and the browser tests use. It exists so the SDK can be
 * developed before the Rust server is complete: the browser tests use it only
 * with CONSENTRY_BROWSER_FAKE_API=1. The real server is the reference; when
 * the two disagree, fix this file.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

interface Purpose {
  key: string;
  title: string;
  description: string;
  kind: string;
  consent_model: 'opt_in' | 'opt_out' | 'notice_only';
  legal_basis: string;
  gpc_applies: boolean;
  max_age_days: number | null;
}
interface Revision {
  policy_key: string;
  revision_date: string;
  effective_at: string;
  url: string;
  sha256: string;
  requires_reconsent: boolean;
}
interface Event {
  id: string;
  subject: string;
  purpose: string;
  decision: 'granted' | 'denied';
  source: string;
  policy_revision: string | null;
  occurred_at: string;
}
interface Tenant {
  slug: string;
  purposes: Map<string, Purpose>;
  revisions: Revision[];
  events: Event[];
  idempotency: Map<string, unknown>;
}

export interface FakeApi {
  origin: string;
  createTenant(slug: string): { tenant: string; token: string };
  close(): Promise<void>;
}

export async function startFakeApi(): Promise<FakeApi> {
  const tenants = new Map<string, Tenant>(); // by token
  const sites = new Map<string, { tenant: Tenant; site_key: string; name: string; origins: string[] }>();

  const inForce = (t: Tenant) => {
    const latest = new Map<string, Revision>();
    for (const r of t.revisions) if (!latest.has(r.policy_key) || latest.get(r.policy_key)!.revision_date < r.revision_date) latest.set(r.policy_key, r);
    return [...latest.values()];
  };
  const state = (t: Tenant, subject: string) => {
    const purposes: Record<string, object> = {};
    let needs = false;
    const reconsent = t.revisions.filter((r) => r.requires_reconsent).map((r) => r.revision_date).sort().pop();
    for (const p of t.purposes.values()) {
      const last = t.events.filter((e) => e.subject == subject && e.purpose == p.key).pop();
      let status = last ? last.decision : 'not_asked';
      if (last && last.decision == 'granted' && reconsent && (last.policy_revision || '') < reconsent) status = 'stale';
      if (p.consent_model == 'opt_in' && status != 'granted' && status != 'denied') needs = true;
      const allowed = p.consent_model == 'notice_only' || (p.consent_model == 'opt_in' ? status == 'granted' : status != 'denied');
      purposes[p.key] = { status, allowed, ...(last ? { decision: last.decision, policy_revision: last.policy_revision, updated_at: last.occurred_at, expires_at: null, source: last.source } : {}) };
    }
    return { subject, needs_consent: needs, purposes };
  };

  const send = (res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}) => {
    const problem = status >= 400;
    res.writeHead(status, { 'content-type': problem ? 'application/problem+json' : 'application/json', ...headers });
    res.end(body === undefined ? '' : JSON.stringify(problem ? { type: 'about:blank', title: String(body), status, detail: String(body) } : body));
  };
  const readBody = (req: IncomingMessage) =>
    new Promise<any>((ok) => {
      let s = '';
      req.on('data', (c) => (s += c));
      req.on('end', () => ok(s ? JSON.parse(s) : undefined));
    });

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url!, 'http://x');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const body = await readBody(req);
    if (url.pathname == '/healthz') return send(res, 200, { status: 'ok' });

    // public, per site: CORS for the site's origins only
    if (parts[0] == 'v1' && parts[1] == 'sites' && parts[2]) {
      const site = sites.get(parts[2]);
      const origin = String(req.headers.origin || '');
      if (!site) return send(res, 404, 'unknown site');
      if (!site.origins.includes(origin)) return send(res, 403, 'origin not allowed');
      const cors = { 'access-control-allow-origin': origin, 'access-control-allow-credentials': 'true', vary: 'Origin' };
      if (req.method == 'OPTIONS')
        return send(res, 204, undefined, { ...cors, 'access-control-allow-methods': 'GET, POST', 'access-control-allow-headers': 'content-type, idempotency-key', 'access-control-max-age': '600' });
      const t = site.tenant;
      if (req.method == 'GET' && parts[3] == 'config')
        return send(res, 200, { site: { site_key: site.site_key, name: site.name }, region: url.searchParams.get('region'), gpc_honored: true, cookie_max_age_days: 395, policies: inForce(t), purposes: [...t.purposes.values()] }, cors);
      if (req.method == 'GET' && parts[3] == 'visitors' && parts[5] == 'consents') return send(res, 200, state(t, 'visitor:' + parts[4]), cors);
      if (req.method == 'POST' && parts[3] == 'consents') {
        const key = String(req.headers['idempotency-key'] || '');
        if (key && t.idempotency.has(key)) return send(res, 201, t.idempotency.get(key), cors);
        // like the real server: a policy revision in force is required, identity linking is not enabled yet
        if (!inForce(t).some((r) => r.revision_date == body.policy_revision)) return send(res, 400, 'policy_revision must be in force', cors);
        if (body.identity_token != null) return send(res, 401, "identity_token: the token is not signed with this site's identity secret", cors);
        const subject = 'visitor:' + body.visitor_id;
        const now = new Date().toISOString();
        const ids: string[] = [];
        const current = state(t, subject).purposes as Record<string, { status: string }>;
        const record = (purpose: string, decision: 'granted' | 'denied', source: string) => {
          if (current[purpose] && current[purpose].status == decision) return;
          const e = { id: randomUUID(), subject, purpose, decision, source, policy_revision: body.policy_revision ?? null, occurred_at: now };
          t.events.push(e);
          ids.push(e.id);
          current[purpose] = { status: decision };
        };
        const gpc = req.headers['sec-gpc'] == '1' || body.gpc === true;
        if (gpc) for (const p of t.purposes.values()) if (p.gpc_applies) record(p.key, 'denied', 'gpc');
        for (const [k, v] of Object.entries(body.choices as Record<string, boolean>)) {
          const p = t.purposes.get(k);
          if (!p) return send(res, 400, 'unknown purpose ' + k, cors);
          if (p.consent_model == 'notice_only' && !v) return send(res, 400, 'notice_only purpose cannot be refused', cors);
          record(k, v ? 'granted' : 'denied', body.source);
        }
        const result = { event_ids: ids, consents: state(t, subject), gpc_honored: gpc };
        if (key) t.idempotency.set(key, result);
        return send(res, 201, result, cors);
      }
      return send(res, 404, 'not found', cors);
    }

    // management
    const t = tenants.get(String(req.headers.authorization || '').replace(/^Bearer /, ''));
    if (!t) return send(res, 401, 'unauthorized');
    if (req.method == 'POST' && url.pathname == '/v1/sites') {
      const site = { tenant: t, site_key: 'sk_' + randomUUID().replace(/-/g, ''), name: body.name, origins: body.origins };
      sites.set(site.site_key, site);
      return send(res, 201, { id: randomUUID(), site_key: site.site_key, name: site.name, origins: site.origins });
    }
    if (req.method == 'PUT' && parts[1] == 'purposes') {
      t.purposes.set(parts[2], { key: parts[2], ...body });
      return send(res, 200, { key: parts[2], ...body });
    }
    if (req.method == 'POST' && parts[1] == 'policies' && parts[3] == 'revisions') {
      const r = { policy_key: parts[2], revision_date: body.revision_date, effective_at: body.revision_date + 'T00:00:00Z', url: body.url, sha256: '', requires_reconsent: !!body.requires_reconsent };
      t.revisions.push(r);
      return send(res, 201, r);
    }
    if (req.method == 'GET' && parts[1] == 'subjects' && parts[3] == 'events') return send(res, 200, { events: t.events.filter((e) => e.subject == parts[2]) });
    return send(res, 404, 'not found');
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    origin: 'http://127.0.0.1:' + (server.address() as AddressInfo).port,
    createTenant(slug) {
      const token = 'fake.' + randomUUID();
      tenants.set(token, { slug, purposes: new Map(), revisions: [], events: [], idempotency: new Map() });
      return { tenant: slug, token };
    },
    close: () => new Promise<void>((ok) => (server.closeAllConnections(), server.close(() => ok()))),
  };
}
