import { useState } from 'preact/hooks';
import { get, post, del, enc, Token } from '../api';
import { Page, Problem, Notice, Table, useLoad, when } from '../ui';

const SCOPES = ['admin', 'consents:read', 'consents:write', 'consents:check'];

export function Tokens() {
  const list = useLoad(() => get<{ tokens: Token[] }>('/v1/tokens'), []);
  const [scopes, setScopes] = useState<string[]>(['consents:check']);
  const [label, setLabel] = useState('');
  const [ttl, setTtl] = useState('90d');
  const [issued, setIssued] = useState<Token | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');

  async function issue(e: Event) {
    e.preventDefault();
    setError(null); setNotice(''); setIssued(null);
    try {
      const body: Record<string, unknown> = { scopes };
      if (label.trim()) body.label = label.trim();
      if (ttl.trim()) body.ttl = ttl.trim();
      setIssued(await post<Token>('/v1/tokens', body));
      list.reload();
    } catch (err) {
      setError(err);
    }
  }

  async function revoke(t: Token) {
    if (!window.confirm(`Revoke the token ${t.label ?? t.id}? Systems using it are refused at once.`)) return;
    setError(null); setNotice('');
    try {
      await del(`/v1/tokens/${enc(t.id)}`);
      setNotice(`Token ${t.label ?? t.id} revoked.`);
      list.reload();
    } catch (err) {
      setError(err);
    }
  }

  return (
    <Page title="Tokens" intro="Management tokens of this tenant. Give each system the narrowest scope it needs.">
      <Problem error={list.error} what="The tokens" />
      <Problem error={error} what="Tokens" />
      {notice && <Notice>{notice}</Notice>}
      {list.data && (
        <Table caption="Tokens, newest first" hideCaption>
          <thead><tr><th scope="col">Label</th><th scope="col">Scopes</th><th scope="col">Status</th><th scope="col">Created</th><th scope="col">Expires</th><th scope="col">Action</th></tr></thead>
          <tbody>
            {list.data.tokens.map((t) => (
              <tr data-token={t.id}><th scope="row">{t.label ?? '—'}<span class="sub">{t.id}{t.current ? ' (this session)' : ''}</span></th>
                <td>{t.scopes.join(', ')}</td><td><span class={`badge ${t.status}`}>{t.status}</span></td><td>{when(t.created_at)}</td><td>{t.expires_at ? when(t.expires_at) : 'never'}</td>
                <td>{t.status === 'active' && !t.current ? <button type="button" class="danger" onClick={() => revoke(t)}>Revoke</button> : '—'}</td></tr>
            ))}
          </tbody>
        </Table>
      )}
      <h2>Issue a token</h2>
      <form class="stack" onSubmit={issue}>
        <fieldset>
          <legend>Scopes</legend>
          {SCOPES.map((s) => (
            <label class="check"><input type="checkbox" checked={scopes.includes(s)} onChange={(e) => setScopes(e.currentTarget.checked ? [...scopes, s] : scopes.filter((x) => x !== s))} /> {s}</label>
          ))}
        </fieldset>
        <label>Label <input value={label} maxLength={100} placeholder="mailer" onInput={(e) => setLabel(e.currentTarget.value)} /></label>
        <label>Lifetime (e.g. 90d, 12h; empty: no expiry) <input value={ttl} onInput={(e) => setTtl(e.currentTarget.value)} /></label>
        <button type="submit" disabled={!scopes.length}>Issue token</button>
      </form>
      {issued && (
        <div class="issued" role="status">
          <p>Copy this token now: it is not shown again.</p>
          <label>New token <textarea readOnly rows={3} value={issued.token} data-issued-token /></label>
        </div>
      )}
    </Page>
  );
}
