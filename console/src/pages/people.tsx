import { useState } from 'preact/hooks';
import { get, del, download, enc, ConsentEvent } from '../api';
import { Page, Problem, Notice, Table, when } from '../ui';

interface PurposeState { status: string; allowed: boolean; reason: string; decision?: string; source?: string; updated_at?: string; policy_revision?: string }
interface State { subject: string; needs_consent?: boolean; purposes: Record<string, PurposeState> }

export function People() {
  const [input, setInput] = useState('');
  const [subject, setSubject] = useState('');
  const [state, setState] = useState<State | null>(null);
  const [events, setEvents] = useState<ConsentEvent[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  const [confirming, setConfirming] = useState(false);
  const [confirmText, setConfirmText] = useState('');

  async function find(e: Event) {
    e.preventDefault();
    const s = input.trim();
    setError(null); setActionError(null); setNotice(''); setState(null); setEvents(null); setConfirming(false);
    if (!s) return;
    try {
      const [st, ev] = await Promise.all([
        get<State>(`/v1/subjects/${enc(s)}/consents`),
        get<{ events: ConsentEvent[] }>(`/v1/subjects/${enc(s)}/events`),
      ]);
      setSubject(s); setState(st); setEvents(ev.events);
    } catch (err) {
      setError(err);
    }
  }

  const [actionWhat, setActionWhat] = useState('This action');
  async function act(what: string, run: () => Promise<void>) {
    setActionError(null); setNotice(''); setActionWhat(what);
    try {
      await run();
      setNotice(`${what}: done.`);
    } catch (err) {
      setActionError(err);
    }
  }

  // Each event's prev_hash must be the previous event's hash (64 zeros for the first).
  const chainOk = events?.every((e, i) => e.prev_hash === (i === 0 ? '0'.repeat(64) : events[i - 1].hash));
  const safe = subject.replace(/[^A-Za-z0-9@._+-]/g, '_');
  return (
    <Page title="People" intro="Find a person by an identifier: visitor:<uuid>, user:<id>, email:<address> or phone:<+E.164>.">
      <form class="filters" onSubmit={find} role="search">
        <label>Identifier
          <input name="subject" value={input} required autocomplete="off" size={40} placeholder="email:ada@example.com" onInput={(e) => setInput(e.currentTarget.value)} />
        </label>
        <button type="submit">Find</button>
      </form>
      <Problem error={error} what="Finding the person" />
      {state && events && (
        <>
          <h2>Current state</h2>
          <Table caption={`Consent state of ${subject}`} hideCaption>
            <thead><tr><th scope="col">Purpose</th><th scope="col">Status</th><th scope="col">Allowed</th><th scope="col">Why</th><th scope="col">Last decided</th></tr></thead>
            <tbody>
              {Object.entries(state.purposes).map(([k, p]) => (
                <tr data-purpose={k}><th scope="row">{k}</th><td>{p.status}</td><td>{p.allowed ? 'yes' : 'no'}</td><td>{p.reason}</td><td>{p.updated_at ? `${when(p.updated_at)} (${p.source})` : '—'}</td></tr>
              ))}
            </tbody>
          </Table>
          <div class="actions">
            <button type="button" onClick={() => act('Export', () => download(`/v1/subjects/${enc(subject)}/export`, `export-${safe}.json`))}>Download export</button>
            <button type="button" onClick={() => act('Proof', () => download(`/v1/subjects/${enc(subject)}/proof`, `proof-${safe}.json`))}>Download proof of consent</button>
            <button type="button" class="danger" onClick={() => { setConfirming(true); setConfirmText(''); }}>Erase…</button>
          </div>
          {confirming && (
            <form class="confirm" onSubmit={(e) => { e.preventDefault(); act('Erasure', async () => { await del(`/v1/subjects/${enc(subject)}`); setConfirming(false); }); }}>
              <p>Erasure removes this person's identifiers; the pseudonymous proof of their decisions is kept. It cannot be undone.</p>
              <label>Type the identifier to confirm
                <input value={confirmText} autocomplete="off" onInput={(e) => setConfirmText(e.currentTarget.value)} />
              </label>
              <button type="submit" class="danger" disabled={confirmText.trim() !== subject}>Erase this person</button>
              <button type="button" class="secondary" onClick={() => setConfirming(false)}>Cancel</button>
            </form>
          )}
          <Problem error={actionError} what={actionWhat} />
          {notice && <Notice>{notice}</Notice>}
          <h2>Events</h2>
          <p class={chainOk ? 'verified' : 'problem'} data-chain={chainOk ? 'verified' : 'broken'}>
            {events.length === 0 ? 'No events recorded.' : chainOk ? `Hash chain verified: each of the ${events.length} events links to the one before it.` : 'Hash chain broken: an event does not link to the one before it.'}
          </p>
          <ol class="timeline">
            {events.map((e) => (
              <li>
                <time dateTime={e.occurred_at}>{when(e.occurred_at)}</time>{' '}
                <strong>{e.purpose}</strong> {e.decision} <span class="sub">via {e.source}{e.region ? `, ${e.region}` : ''}{e.policy_revision ? `, policy ${e.policy_revision}` : ''}</span>
                <span class="hash" title={e.hash}>#{e.hash.slice(0, 12)}</span>
              </li>
            ))}
          </ol>
        </>
      )}
    </Page>
  );
}
