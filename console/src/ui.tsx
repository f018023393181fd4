import { ComponentChildren } from 'preact';
import { useEffect, useRef, useState, useCallback } from 'preact/hooks';
import { ApiError } from './api';

/** A page: its heading takes the focus when the page opens (screen readers announce it). */
export function Page(props: { title: string; children: ComponentChildren; intro?: string }) {
  const h1 = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    document.title = `${props.title} · Consentry console`;
    h1.current?.focus();
  }, [props.title]);
  return (
    <section aria-labelledby="page-title">
      <h1 id="page-title" tabIndex={-1} ref={h1}>{props.title}</h1>
      {props.intro && <p class="intro">{props.intro}</p>}
      {props.children}
    </section>
  );
}

/** Says what went wrong, in words; for an operation this server lacks, says so. */
export function Problem(props: { error: unknown; what?: string }) {
  const e = props.error;
  if (!e) return null;
  let text: string;
  if (e instanceof ApiError && e.missingEndpoint) {
    text = `${props.what ?? 'This feature'} is not available on this server yet (it answered 404 for ${e.path.split('?')[0]}).`;
  } else if (e instanceof ApiError) {
    text = `${props.what ? props.what + ': ' : ''}the server answered ${e.status || 'nothing'}: ${e.detail}`;
  } else {
    text = String(e);
  }
  return <p class="problem" role="alert">{text}</p>;
}

export function Notice(props: { children: ComponentChildren }) {
  return <p class="notice" role="status">{props.children}</p>;
}

/** Loads with `load` when `deps` change; `reload()` loads again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    setLoading(true);
    load().then(
      (d) => { if (live) { setData(d); setError(null); setLoading(false); } },
      (e) => { if (live) { setError(e); setLoading(false); } },
    );
    return () => { live = false; };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, n]);
  const reload = useCallback(() => setN((x) => x + 1), []);
  return { data, error, loading, reload };
}

/** A table that scrolls sideways on narrow screens; the scroll region is focusable and named. */
export function Table(props: { caption: string; children: ComponentChildren; hideCaption?: boolean }) {
  return (
    <div class="table-wrap" tabIndex={0} role="region" aria-label={props.caption}>
      <table>
        <caption class={props.hideCaption ? 'sr-only' : undefined}>{props.caption}</caption>
        {props.children}
      </table>
    </div>
  );
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
}

export function day(iso: string): string {
  return iso.slice(0, 10);
}

export function pct(x: number): string {
  return `${(x * 100).toFixed(1)} %`;
}
