import { useState } from 'preact/hooks';
import { get, post, save, toCsv, download, OptOut } from '../api';
import { Page, Problem, Notice, Table, useLoad, when } from '../ui';

function daysLeft(due: string): number {
  return Math.ceil((Date.parse(due) - Date.now()) / 86400_000);
}

export function OptOuts() {
  const [status, setStatus] = useState('open');
  const list = useLoad(() => get<{ opt_outs: OptOut[] }>(`/v1/opt-outs${status ? `?status=${status}` : ''}`), [status]);
  const [completing, setCompleting] = useState<string | null>(null);
  const [note, setNote] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState('');
  const rows = [...(list.data?.opt_outs ?? [])].sort((a, b) => a.due_at.localeCompare(b.due_at));

  async function complete(id: string) {
    setError(null);
    try {
      await post(`/v1/opt-outs/${encodeURIComponent(id)}/complete`, note.trim() ? { note: note.trim() } : {});
      setDone(`Request ${id} completed.`);
      setCompleting(null);
      setNote('');
      list.reload();
    } catch (e) {
      setError(e);
    }
  }

  function queueCsv() {
    save(new Blob([toCsv([
      ['id', 'subject_id', 'channel', 'scope', 'received_at', 'due_at', 'status', 'completed_at', 'completion_note'],
      ...rows.map((r) => [r.id, r.subject_id, r.channel, r.scope, r.received_at, r.due_at, r.status, r.completed_at, r.completion_note]),
    ])], { type: 'text/csv' }), `opt-out-requests-${status || 'all'}.csv`);
  }

  return (
    <Page title="Opt-out requests" intro="CCPA “Do Not Sell or Share” requests, due 15 business days after receipt (11 CCR §7026(f)). Soonest due first.">
      <div class="filters">
        <label>Show
          <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="open">Open (overdue included)</option>
            <option value="overdue">Overdue</option>
            <option value="completed">Completed</option>
            <option value="">All</option>
          </select>
        </label>
        <button type="button" onClick={queueCsv} disabled={!rows.length}>Download this list (CSV)</button>
        <button type="button" onClick={() => download('/v1/analytics/opt-outs?format=csv&from=' + new Date(Date.now() - 364 * 86400_000).toISOString().slice(0, 10), 'opt-out-report.csv', 'text/csv')}>
          Download the 12-month report (CSV)
        </button>
      </div>
      <Problem error={list.error} what="The opt-out requests" />
      <Problem error={error} what="Completing the request" />
      {done && <Notice>{done}</Notice>}
      {list.data && !rows.length && <p>No requests.</p>}
      {rows.length > 0 && (
        <Table caption="Opt-out requests by due date">
          <thead><tr><th scope="col">Due</th><th scope="col">Status</th><th scope="col">Channel</th><th scope="col">Received</th><th scope="col">Subject</th><th scope="col">Action</th></tr></thead>
          <tbody>
            {rows.map((r) => (
              <tr class={r.status === 'overdue' ? 'overdue' : undefined} data-opt-out={r.id}>
                <td>{when(r.due_at)}{r.status !== 'completed' && <span class="sub">{daysLeft(r.due_at) < 0 ? `${-daysLeft(r.due_at)} days late` : `${daysLeft(r.due_at)} days left`}</span>}</td>
                <td><span class={`badge ${r.status}`}>{r.status === 'overdue' ? 'Overdue' : r.status === 'open' ? 'Open' : 'Completed'}</span></td>
                <td>{r.channel.replace('_', ' ')}</td>
                <td>{when(r.received_at)}</td>
                <td><code>{r.subject_id.slice(0, 13)}…</code></td>
                <td>
                  {r.status === 'completed' ? (r.completion_note ? <span>Note: {r.completion_note}</span> : <span>Done {when(r.completed_at)}</span>) :
                    completing === r.id ? (
                      <form class="inline" onSubmit={(e) => { e.preventDefault(); complete(r.id); }}>
                        <label>Note (what was done)
                          <textarea value={note} rows={2} maxLength={2000} onInput={(e) => setNote(e.currentTarget.value)} />
                        </label>
                        <button type="submit">Confirm completion</button>
                        <button type="button" class="secondary" onClick={() => setCompleting(null)}>Cancel</button>
                      </form>
                    ) : <button type="button" onClick={() => { setCompleting(r.id); setDone(''); }}>Complete…</button>}
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
      )}
    </Page>
  );
}
