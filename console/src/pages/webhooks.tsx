import { useState } from 'preact/hooks';
import { get, post, enc, Webhook, Delivery } from '../api';
import { Page, Problem, Notice, Table, useLoad, when } from '../ui';

function Deliveries(props: { hook: Webhook }) {
  const [status, setStatus] = useState('dead');
  const list = useLoad(() => get<{ deliveries: Delivery[] }>(`/v1/webhooks/${enc(props.hook.id)}/deliveries?limit=50${status ? `&status=${status}` : ''}`), [status, props.hook.id]);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState('');
  async function retry(d: Delivery) {
    setError(null); setNotice('');
    try {
      await post(`/v1/webhooks/${enc(props.hook.id)}/deliveries/${enc(d.id)}/retry`);
      setNotice(`Delivery ${d.id} queued again.`);
      list.reload();
    } catch (e) {
      setError(e);
    }
  }
  return (
    <section class="card" aria-label={`Webhook ${props.hook.url}`}>
      <h2>{props.hook.url}</h2>
      <p class="sub">{props.hook.events.join(', ')} · since {when(props.hook.created_at)}</p>
      <label>Deliveries
        <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
          <option value="dead">Dead letters</option>
          <option value="pending">Pending</option>
          <option value="delivered">Delivered</option>
          <option value="">All</option>
        </select>
      </label>
      <Problem error={list.error} what="The deliveries" />
      <Problem error={error} what="Retrying" />
      {notice && <Notice>{notice}</Notice>}
      {list.data && (list.data.deliveries.length === 0 ? <p>None.</p> : (
        <Table caption={`Deliveries to ${props.hook.url}`} hideCaption>
          <thead><tr><th scope="col">Event</th><th scope="col">Status</th><th scope="col">Attempts</th><th scope="col">Last attempt</th><th scope="col">Last error</th><th scope="col">Action</th></tr></thead>
          <tbody>
            {list.data.deliveries.map((d) => (
              <tr data-delivery={d.id}><td>{d.event_type}<span class="sub">{when(d.created_at)}</span></td><td><span class={`badge ${d.status}`}>{d.status}</span></td>
                <td>{d.attempts}</td><td>{when(d.last_attempt_at)}</td><td>{d.last_error ?? '—'}</td>
                <td>{d.status === 'dead' ? <button type="button" onClick={() => retry(d)}>Retry</button> : '—'}</td></tr>
            ))}
          </tbody>
        </Table>
      ))}
    </section>
  );
}

export function Webhooks() {
  const hooks = useLoad(() => get<{ webhooks: Webhook[] }>('/v1/webhooks'), []);
  return (
    <Page title="Webhooks" intro="Receivers of consent changes and opt-out requests; deliveries that exhausted their retries are dead letters until retried here.">
      <Problem error={hooks.error} what="The webhooks" />
      {hooks.data?.webhooks.length === 0 && <p>No webhooks.</p>}
      {hooks.data?.webhooks.map((h) => <Deliveries hook={h} />)}
    </Page>
  );
}
