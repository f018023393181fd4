import { useState } from 'preact/hooks';
import { get, enc, ConsentReport, OptOutReport, OptOut, Site, download } from '../api';
import { Chart } from '../chart';
import { Page, Problem, Table, useLoad, pct } from '../ui';

const COLORS = ['#1f5fa8', '#b3261e', '#2e7d32', '#8a4b00', '#6a1b9a', '#00695c', '#ad1457', '#37474f'];

function isoDay(d: Date) {
  return d.toISOString().slice(0, 10);
}

export function Overview() {
  const [days, setDays] = useState('30');
  const [interval, setInterval] = useState('day');
  const [site, setSite] = useState('');
  const [region, setRegion] = useState('');
  const to = isoDay(new Date());
  const from = isoDay(new Date(Date.now() - (Number(days) - 1) * 86400_000));
  const query = `from=${from}&to=${to}&interval=${interval}${site ? `&site=${enc(site)}` : ''}${region ? `&region=${enc(region)}` : ''}`;
  const sites = useLoad(() => get<{ sites: Site[] }>('/v1/sites'), []);
  const report = useLoad(() => get<ConsentReport>(`/v1/analytics/consents?${query}`), [query]);
  const optOuts = useLoad(() => get<OptOutReport>(`/v1/analytics/opt-outs?from=${from}&to=${to}`), [from, to]);
  const queue = useLoad(() => get<{ opt_outs: OptOut[] }>('/v1/opt-outs?status=open'), []);
  const open = queue.data?.opt_outs.length;
  const overdue = queue.data?.opt_outs.filter((o) => o.status === 'overdue').length;

  const r = report.data;
  const x = r?.buckets.map((b) => b.start) ?? [];
  const purposes = [...new Set(r?.totals.decisions.map((d) => d.purpose) ?? [])].sort();
  const rate = (purpose: string) =>
    r!.buckets.map((b) => {
      const of = b.decisions.filter((d) => d.purpose === purpose);
      const granted = of.filter((d) => d.decision === 'granted').reduce((n, d) => n + d.count, 0);
      const all = of.reduce((n, d) => n + d.count, 0);
      return all ? granted / all : null;
    });
  const t = r?.totals.submissions;
  const banner = t ? t.accept_all + t.reject_all + t.partial : 0;
  return (
    <Page title="Overview" intro="Consent decisions and opt-out requests over time, from the analytics API.">
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filters">
        <label>Range
          <select value={days} onChange={(e) => setDays(e.currentTarget.value)}>
            <option value="7">Last 7 days</option>
            <option value="30">Last 30 days</option>
            <option value="90">Last 90 days</option>
            <option value="365">Last 365 days</option>
          </select>
        </label>
        <label>Buckets
          <select value={interval} onChange={(e) => setInterval(e.currentTarget.value)}>
            <option value="day">Days</option>
            <option value="week">Weeks</option>
            <option value="month">Months</option>
          </select>
        </label>
        <label>Site
          <select value={site} onChange={(e) => setSite(e.currentTarget.value)}>
            <option value="">All sites</option>
            {sites.data?.sites.map((s) => <option value={s.id}>{s.name}</option>)}
          </select>
        </label>
        <label>Region
          <input value={region} placeholder="e.g. US-CA" size={8} onChange={(e) => setRegion(e.currentTarget.value.trim())} />
        </label>
        <button type="button" onClick={() => download(`/v1/analytics/consents?${query}&format=csv`, `consent-analytics-${from}-${to}.csv`, 'text/csv')}>
          Download CSV
        </button>
      </form>
      <Problem error={report.error} what="Consent analytics" />
      <Problem error={optOuts.error} what="Opt-out analytics" />
      <Problem error={queue.error} what="The opt-out queue" />
      <dl class="cards" aria-label="Totals for the range">
        <div><dt>Submissions</dt><dd data-figure="submissions">{t?.total ?? '…'}</dd></div>
        <div><dt>Accept all (banner)</dt><dd data-figure="accept_all">{t ? `${t.accept_all}${banner ? ` · ${pct(t.accept_all / banner)}` : ''}` : '…'}</dd></div>
        <div><dt>Reject all (banner)</dt><dd data-figure="reject_all">{t ? `${t.reject_all}${banner ? ` · ${pct(t.reject_all / banner)}` : ''}` : '…'}</dd></div>
        <div><dt>Partial (banner)</dt><dd data-figure="partial">{t ? `${t.partial}${banner ? ` · ${pct(t.partial / banner)}` : ''}` : '…'}</dd></div>
        <div><dt>GPC share</dt><dd data-figure="gpc_share">{t ? pct(t.gpc_share) : '…'}</dd></div>
        <div><dt>Opt-outs open now</dt><dd data-figure="open">{open ?? '…'}</dd></div>
        <div class={overdue ? 'alert' : undefined}><dt>Overdue now</dt><dd data-figure="overdue">{overdue ?? '…'}</dd></div>
        <div><dt>Opt-outs received in range</dt><dd data-figure="received">{optOuts.data?.totals.received ?? '…'}</dd></div>
        <div><dt>Median days to complete</dt><dd data-figure="median">{optOuts.data ? (optOuts.data.totals.median_business_days ?? '—') : '…'}</dd></div>
      </dl>
      {r && (
        <>
          <h2>Consent rate per purpose</h2>
          <p class="hint">Share of decisions that were grants, per {interval}.</p>
          {purposes.length ? (
            <Chart label={`Consent rate per purpose per ${interval}`} x={x} yFormat={(v) => `${Math.round(v * 100)}%`}
              series={purposes.map((p, i) => ({ label: p, values: rate(p), color: COLORS[i % COLORS.length] }))} />
          ) : <p>No decisions in this range.</p>}
          <h2>Banner outcomes and GPC</h2>
          <Chart label={`Banner submissions per ${interval}: accept all, reject all, partial, and GPC`} x={x}
            series={[
              { label: 'accept all', values: r.buckets.map((b) => b.submissions.accept_all), color: COLORS[2] },
              { label: 'reject all', values: r.buckets.map((b) => b.submissions.reject_all), color: COLORS[1] },
              { label: 'partial', values: r.buckets.map((b) => b.submissions.partial), color: COLORS[3] },
              { label: 'with GPC', values: r.buckets.map((b) => b.submissions.gpc), color: COLORS[4], dash: [6, 4] },
            ]} />
          <details>
            <summary>The figures as a table</summary>
            <Table caption="Submissions and decisions per bucket">
              <thead><tr><th scope="col">Bucket</th><th scope="col">Submissions</th><th scope="col">Accept all</th><th scope="col">Reject all</th><th scope="col">Partial</th><th scope="col">GPC</th><th scope="col">Decisions</th></tr></thead>
              <tbody>
                {r.buckets.map((b) => (
                  <tr>
                    <th scope="row">{b.start}</th><td>{b.submissions.total}</td><td>{b.submissions.accept_all}</td>
                    <td>{b.submissions.reject_all}</td><td>{b.submissions.partial}</td><td>{b.submissions.gpc}</td>
                    <td>{b.decisions.map((d) => `${d.purpose} ${d.decision} (${d.source}): ${d.count}`).join('; ')}</td>
                  </tr>
                ))}
              </tbody>
            </Table>
          </details>
          <h2>Decisions in the range</h2>
          <Table caption="Decisions per purpose, decision and source" hideCaption>
            <thead><tr><th scope="col">Purpose</th><th scope="col">Decision</th><th scope="col">Source</th><th scope="col">Count</th></tr></thead>
            <tbody>
              {r.totals.decisions.map((d) => <tr><td>{d.purpose}</td><td>{d.decision}</td><td>{d.source}</td><td data-count={`${d.purpose}/${d.decision}/${d.source}`}>{d.count}</td></tr>)}
            </tbody>
          </Table>
        </>
      )}
    </Page>
  );
}
