import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { get, post, setToken, token, Token } from './api';
import { Overview } from './pages/overview';
import { OptOuts } from './pages/optouts';
import { People } from './pages/people';
import { Policies } from './pages/policies';
import { PurposesSites } from './pages/config';
import { Webhooks } from './pages/webhooks';
import { TrackerAudit } from './pages/audit';
import { Tokens } from './pages/tokens';
import { Problem } from './ui';

const PAGES: [string, string, () => preact.JSX.Element][] = [
  ['overview', 'Overview', Overview],
  ['opt-outs', 'Opt-out requests', OptOuts],
  ['people', 'People', People],
  ['policies', 'Policies', Policies],
  ['purposes', 'Purposes and sites', PurposesSites],
  ['webhooks', 'Webhooks', Webhooks],
  ['audit', 'Tracker audit', TrackerAudit],
  ['tokens', 'Tokens', Tokens],
];

function route(): string {
  const m = /^#\/([a-z-]+)/.exec(location.hash);
  return m && PAGES.some(([k]) => k === m[1]) ? m[1] : 'overview';
}

function SignIn(props: { onSignedIn: () => void; reason?: string }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<unknown>(null);
  async function submit(e: Event) {
    e.preventDefault();
    setError(null);
    setToken(value.trim());
    try {
      await get('/v1/tokens'); // an admin token can list tokens
      props.onSignedIn();
    } catch (err) {
      setToken(null);
      setError(err);
    }
  }
  return (
    <main id="main" class="signin">
      <h1>Consentry console</h1>
      <p>Sign in with an admin token of your tenant (<code>consentry tokens issue --tenant &lt;slug&gt; --scope admin</code>). It is kept in this tab only.</p>
      {props.reason && <p class="problem" role="alert">{props.reason}</p>}
      <form class="stack" onSubmit={submit}>
        <label>Admin token
          <input type="password" required autocomplete="off" value={value} onInput={(e) => setValue(e.currentTarget.value)} />
        </label>
        <button type="submit">Sign in</button>
      </form>
      <Problem error={error} what="Signing in" />
    </main>
  );
}

function App() {
  const [signedIn, setSignedIn] = useState(!!token());
  const [page, setPage] = useState(route());
  const [reason, setReason] = useState<string | undefined>(undefined);
  const [menu, setMenu] = useState(false);
  useEffect(() => {
    const onHash = () => { setPage(route()); setMenu(false); };
    const onUnauthorized = (e: Event) => {
      setToken(null);
      setSignedIn(false);
      setReason(`Signed out: ${(e as CustomEvent<string>).detail}`);
    };
    window.addEventListener('hashchange', onHash);
    window.addEventListener('consentry:unauthorized', onUnauthorized);
    // A one-time code from `serve --demo` (in the fragment: never sent to a server or logged).
    const code = /^#code=([A-Za-z0-9_-]+)$/.exec(location.hash)?.[1];
    if (code) {
      history.replaceState(null, '', `${location.pathname}#/overview`);
      post<Token>('/v1/console/sign-in', { code }).then(
        (t) => { setToken(t.token!); setSignedIn(true); setPage('overview'); },
        (err) => setReason(`The sign-in link did not work: ${err.detail ?? err}`),
      );
    }
    return () => {
      window.removeEventListener('hashchange', onHash);
      window.removeEventListener('consentry:unauthorized', onUnauthorized);
    };
  }, []);
  if (!signedIn) return <SignIn reason={reason} onSignedIn={() => { setSignedIn(true); setReason(undefined); }} />;
  const Current = PAGES.find(([k]) => k === page)![2];
  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('page-title')?.focus(); }}>Skip to content</a>
      <header>
        <span class="brand">Consentry</span>
        <button type="button" class="menu" aria-expanded={menu} aria-controls="nav" onClick={() => setMenu(!menu)}>Menu</button>
        <nav id="nav" aria-label="Console" class={menu ? 'open' : undefined}>
          <ul>
            {PAGES.map(([k, label]) => (
              <li><a href={`#/${k}`} aria-current={k === page ? 'page' : undefined}>{label}</a></li>
            ))}
          </ul>
        </nav>
        <button type="button" class="secondary signout" onClick={() => { setToken(null); setSignedIn(false); setReason(undefined); }}>Sign out</button>
      </header>
      <main id="main">
        <Current />
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
