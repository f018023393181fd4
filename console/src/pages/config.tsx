import { get, Purpose, Site } from '../api';
import { Page, Problem, Table, useLoad } from '../ui';

export function PurposesSites() {
  const purposes = useLoad(() => get<{ purposes: Purpose[] }>('/v1/purposes'), []);
  const sites = useLoad(() => get<{ sites: Site[] }>('/v1/sites'), []);
  return (
    <Page title="Purposes and sites" intro="What each site asks, and under which consent model per region (the most specific region wins).">
      <h2>Purposes</h2>
      <Problem error={purposes.error} what="The purposes" />
      {purposes.data && (
        <Table caption="Purposes and their consent models" hideCaption>
          <thead><tr><th scope="col">Purpose</th><th scope="col">Kind</th><th scope="col">Default model</th><th scope="col">Per region</th><th scope="col">Legal basis</th><th scope="col">GPC</th><th scope="col">Max age</th></tr></thead>
          <tbody>
            {purposes.data.purposes.map((p) => (
              <tr><th scope="row">{p.title}<span class="sub">{p.key}</span></th><td>{p.kind.replace('_', ' ')}</td><td>{p.consent_model.replace('_', ' ')}</td>
                <td>{Object.entries(p.regions ?? {}).map(([r, m]) => `${r}: ${m.replace('_', ' ')}`).join(', ') || '—'}</td>
                <td>{p.legal_basis.replace('_', ' ')}</td><td>{p.gpc_applies ? 'applies' : '—'}</td><td>{p.max_age_days ? `${p.max_age_days} days` : '—'}</td></tr>
            ))}
          </tbody>
        </Table>
      )}
      <h2>Sites</h2>
      <Problem error={sites.error} what="The sites" />
      {sites.data && (
        <Table caption="Sites, their origins and presented purposes" hideCaption>
          <thead><tr><th scope="col">Site</th><th scope="col">Site key</th><th scope="col">Origins</th><th scope="col">Presents</th></tr></thead>
          <tbody>
            {sites.data.sites.map((s) => (
              <tr><th scope="row">{s.name}<span class="sub">{s.id}</span></th><td><code>{s.site_key}</code></td><td>{s.origins.join(', ')}</td><td>{s.purposes?.join(', ') ?? 'every purpose'}</td></tr>
            ))}
          </tbody>
        </Table>
      )}
    </Page>
  );
}
