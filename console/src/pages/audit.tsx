import { useState } from 'preact/hooks';
import { get, enc, Site } from '../api';
import { Page, Problem, useLoad } from '../ui';

/** Renders any JSON list the audit endpoints answer as rows of key: value. */
function Items(props: { title: string; data: unknown }) {
  const body = props.data as Record<string, unknown> | undefined;
  const list = body ? (Object.values(body).find(Array.isArray) as Record<string, unknown>[] | undefined) : undefined;
  return (
    <>
      <h2>{props.title}</h2>
      {!list || list.length === 0 ? <p>Nothing recorded.</p> : (
        <ul class="items">
          {list.map((item) => <li>{Object.entries(item).map(([k, v]) => <span><b>{k}</b>: {typeof v === 'object' ? JSON.stringify(v) : String(v)} </span>)}</li>)}
        </ul>
      )}
    </>
  );
}

export function TrackerAudit() {
  const sites = useLoad(() => get<{ sites: Site[] }>('/v1/sites'), []);
  const [site, setSite] = useState('');
  const chosen = site || sites.data?.sites[0]?.id || '';
  const inventory = useLoad(() => (chosen ? get<unknown>(`/v1/sites/${enc(chosen)}/inventory`) : Promise.resolve(undefined)), [chosen]);
  const violations = useLoad(() => (chosen ? get<unknown>(`/v1/sites/${enc(chosen)}/violations`) : Promise.resolve(undefined)), [chosen]);
  return (
    <Page title="Tracker audit" intro="Cookies and hosts the SDK observed on each site, and those set before the consent their category needs.">
      <div class="filters">
        <label>Site
          <select value={chosen} onChange={(e) => setSite(e.currentTarget.value)}>
            {sites.data?.sites.map((s) => <option value={s.id}>{s.name}</option>)}
          </select>
        </label>
      </div>
      <Problem error={sites.error} what="The sites" />
      <Problem error={inventory.error} what="The tracker inventory" />
      {!inventory.error && inventory.data !== undefined && <Items title="Inventory" data={inventory.data} />}
      <Problem error={violations.error} what="The violations" />
      {!violations.error && violations.data !== undefined && <Items title="Violations" data={violations.data} />}
    </Page>
  );
}
