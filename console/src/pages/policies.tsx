import { useState } from 'preact/hooks';
import { get, post, enc, Revision, Purpose } from '../api';
import { Page, Problem, Notice, Table, useLoad, when } from '../ui';

export function Policies() {
  const [policy, setPolicy] = useState('privacy');
  const list = useLoad(() => get<{ revisions: Revision[] }>(`/v1/policies/${enc(policy)}/revisions`), [policy]);
  const purposes = useLoad(() => get<{ purposes: Purpose[] }>('/v1/purposes'), []);
  const [date, setDate] = useState('');
  const [url, setUrl] = useState('');
  const [reconsent, setReconsent] = useState(false);
  const [chosen, setChosen] = useState<string[]>([]);
  const [error, setError] = useState<unknown>(null);
  const preview = useLoad(
    () => (reconsent ? get<{ people: number; grants: number }>(`/v1/policies/${enc(policy)}/reconsent-preview${chosen.length ? `?purposes=${enc(chosen.join(','))}` : ''}`) : Promise.resolve(undefined)),
    [reconsent, policy, chosen.join()],
  );
  const [notice, setNotice] = useState('');

  async function publish(e: Event) {
    e.preventDefault();
    setError(null); setNotice('');
    try {
      const body: Record<string, unknown> = { revision_date: date, url, requires_reconsent: reconsent };
      if (chosen.length) body.purposes = chosen;
      const r = await post<Revision>(`/v1/policies/${enc(policy)}/revisions`, body);
      setNotice(`Revision ${r.revision_date} of ${policy} published${r.in_force ? ' and in force' : `; in force from ${when(r.effective_at)}`}.`);
      list.reload();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <Page title="Policies" intro="Policy revisions are immutable. A revision that requires reconsent makes earlier grants of its purposes stale, so the banner asks again.">
      <div class="filters">
        <label>Policy
          <select value={policy} onChange={(e) => setPolicy(e.currentTarget.value)}>
            <option value="privacy">privacy</option>
            <option value="cookies">cookies</option>
          </select>
        </label>
      </div>
      <Problem error={list.error} what="The revisions" />
      {list.data && (
        <Table caption={`Revisions of the ${policy} policy`}>
          <thead><tr><th scope="col">Revision</th><th scope="col">In force</th><th scope="col">Effective</th><th scope="col">Reconsent</th><th scope="col">Purposes</th><th scope="col">Text</th></tr></thead>
          <tbody>
            {list.data.revisions.length === 0 && <tr><td colSpan={6}>No revisions yet.</td></tr>}
            {list.data.revisions.map((r) => (
              <tr data-revision={r.revision_date}>
                <th scope="row">{r.revision_date}</th><td>{r.in_force ? 'yes' : 'not yet'}</td><td>{when(r.effective_at)}</td>
                <td>{r.requires_reconsent ? 'required' : 'no'}</td><td>{r.purposes?.join(', ') ?? 'all'}</td>
                <td><a href={r.url} rel="noreferrer noopener" target="_blank">{r.url}</a></td>
              </tr>
            ))}
          </tbody>
        </Table>
      )}
      <h2>Publish a revision</h2>
      <form class="stack" onSubmit={publish}>
        <label>Revision date
          <input type="date" required value={date} onInput={(e) => setDate(e.currentTarget.value)} />
        </label>
        <label>Address of the published text
          <input type="url" required value={url} placeholder="https://www.example.com/privacy" onInput={(e) => setUrl(e.currentTarget.value)} />
        </label>
        <label class="check"><input type="checkbox" checked={reconsent} onChange={(e) => setReconsent(e.currentTarget.checked)} /> Requires reconsent</label>
        <fieldset>
          <legend>Purposes it changes (none chosen: all)</legend>
          {purposes.data?.purposes.map((p) => (
            <label class="check"><input type="checkbox" checked={chosen.includes(p.key)}
              onChange={(e) => setChosen(e.currentTarget.checked ? [...chosen, p.key] : chosen.filter((k) => k !== p.key))} /> {p.title} ({p.key})</label>
          ))}
        </fieldset>
        {reconsent && (
          <p class="hint" role="status" data-reconsent-preview>
            {preview.data
              ? `Publishing it now asks ${preview.data.people} ${preview.data.people === 1 ? 'person' : 'people'} again (${preview.data.grants} grants of ${chosen.length ? chosen.join(', ') : 'any purpose'} become stale).`
              : 'Counting the people it will ask again…'}
          </p>
        )}
        <Problem error={preview.error} what="Counting whom it asks again" />
        <button type="submit">Publish revision</button>
      </form>
      <Problem error={error} what="Publishing" />
      {notice && <Notice>{notice}</Notice>}
    </Page>
  );
}
