// Settings (admins and owners): the workspace (name, time zone, currency,
// week start, retention), its people and their roles (invitations), API
// keys, webhooks, TV links and embed tokens, and email branding. Each
// section is one API (docs/workspace.md, access.md, alerts.md, web.md);
// a secret the server shows once (a key, a webhook secret, a TV link) is
// shown once here too. The server refuses anything a role may not do; the
// page only hides what a role cannot open.
import { html, useEffect, useState } from '../vendor/preact-htm.mjs';

import * as fmt from '../lib/format.js';
import { Failed, useApi } from '../lib/ui.js';

const ROLES = ['viewer', 'analyst', 'admin', 'owner'];

/** `useApi`'s answer picked by `pick`: `[value, error, reload]`. */
function useLoad(client, path, pick) {
  const [answer, error, reload] = useApi(client, path);
  return [answer && pick(answer), error, reload];
}

/** Runs a change; its error is shown in the section. */
function useAction(onDone) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const run = async (fn) => {
    setBusy(true);
    setError(null);
    try {
      const result = await fn();
      if (onDone) await onDone();
      return result;
    } catch (e) {
      setError(e.message);
      return null;
    } finally {
      setBusy(false);
    }
  };
  return [run, error, busy];
}

const when = (us, tz) => (us ? fmt.time(new Date(us / 1000).toISOString(), tz) : '–');

function Secret({ label, value }) {
  if (!value) return null;
  return html`<p class="secret" role="status">${label} (shown once): <code data-secret>${value}</code></p>`;
}

function Workspace({ app, onSaved }) {
  const ws = app.workspace;
  const [form, setForm] = useState({
    name: ws.name,
    timezone: ws.timezone,
    currency: ws.currency,
    week_start: ws.week_start,
    retention_days: ws.retention_days ?? '',
  });
  const [saved, setSaved] = useState(false);
  const [run, error, busy] = useAction();
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  const save = async (e) => {
    e.preventDefault();
    setSaved(false);
    const body = { ...form, retention_days: form.retention_days === '' ? null : Number(form.retention_days) };
    const answer = await run(() => app.client.request('PATCH', '/v1/workspace', body));
    if (answer) {
      setSaved(true);
      onSaved(answer.workspace || answer);
    }
  };
  return html`
    <section class="panel" aria-labelledby="ws-title">
      <h2 id="ws-title">Workspace</h2>
      <form class="rule-form" onSubmit=${save}>
        <label>Name <input required value=${form.name} onInput=${set('name')} /></label>
        <label>Time zone <input required value=${form.timezone} onInput=${set('timezone')} placeholder="Europe/Berlin" /></label>
        <label>Currency <input required maxlength="3" value=${form.currency} onInput=${set('currency')} placeholder="EUR" /></label>
        <label>Week starts <select value=${form.week_start} onChange=${set('week_start')}>
          ${['monday', 'sunday', 'saturday'].map((d) => html`<option value=${d}>${d}</option>`)}
        </select></label>
        <label>Keep events (days, empty: forever) <input type="number" min="1" value=${form.retention_days} onInput=${set('retention_days')} /></label>
        <div class="actions"><button type="submit" disabled=${busy}>Save workspace</button>${saved && html`<span role="status">Saved.</span>`}</div>
      </form>
      ${error && html`<${Failed} error=${error} />`}
    </section>
  `;
}

function People({ app }) {
  const [users, loadError, reload] = useLoad(app.client, '/v1/users', (r) => r.users);
  const [run, error, busy] = useAction(reload);
  const [email, setEmail] = useState('');
  const [role, setRole] = useState('viewer');
  const [invited, setInvited] = useState(null);
  const owner = app.role === 'owner';
  const invite = async (e) => {
    e.preventDefault();
    const id = email.trim().toLowerCase();
    const done = await run(async () => {
      await app.client.request('PUT', `/v1/users/${encodeURIComponent(id)}`, { email: id, role });
      return app.client.post(`/v1/users/${encodeURIComponent(id)}/invite`, {});
    });
    if (done) {
      setInvited(id);
      setEmail('');
    }
  };
  const tz = app.workspace.timezone;
  return html`
    <section class="panel" aria-labelledby="people-title">
      <h2 id="people-title">People</h2>
      ${(loadError || error) && html`<${Failed} error=${loadError || error} />`}
      ${users === null
        ? html`<p class="loading">Loading…</p>`
        : html`<div class="table-wrap"><table class="people">
            <thead><tr><th scope="col">Person</th><th scope="col">Role</th><th scope="col">Signed in</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>${users.map(
              (u) => html`<tr data-user=${u.id}>
                <td>${u.name || u.email || u.id}${u.email && u.name ? html` <span class="muted">${u.email}</span>` : ''}${u.has_password ? '' : html` <span class="muted">(invited)</span>`}</td>
                <td><label class="sr-only" for=${`role-${u.id}`}>Role of ${u.email || u.id}</label>
                  <select id=${`role-${u.id}`} value=${u.role} disabled=${busy || (!owner && u.role === 'owner')}
                    onChange=${(e) => run(() => app.client.request('PUT', `/v1/users/${encodeURIComponent(u.id)}`, { email: u.email, name: u.name, role: e.target.value }))}>
                    ${ROLES.filter((r) => owner || r !== 'owner' || u.role === 'owner').map((r) => html`<option value=${r}>${r}</option>`)}
                  </select></td>
                <td>${when(u.last_login_at_us, tz)}</td>
                <td>${u.id !== app.me.user.id &&
                html`<button type="button" class="danger" disabled=${busy}
                  onClick=${() => confirm(`Remove ${u.email || u.id}?`) && run(() => app.client.request('DELETE', `/v1/users/${encodeURIComponent(u.id)}`))}>Remove</button>`}</td>
              </tr>`,
            )}</tbody></table></div>`}
      <form class="rule-form" onSubmit=${invite}>
        <label>Email <input type="email" required value=${email} onInput=${(e) => setEmail(e.target.value)} /></label>
        <label>Role <select value=${role} onChange=${(e) => setRole(e.target.value)}>
          ${ROLES.filter((r) => owner || r !== 'owner').map((r) => html`<option value=${r}>${r}</option>`)}
        </select></label>
        <div class="actions"><button type="submit" disabled=${busy}>Invite</button>${invited && html`<span role="status">Invitation sent to ${invited}.</span>`}</div>
      </form>
    </section>
  `;
}

function Keys({ app }) {
  const [keys, loadError, reload] = useLoad(app.client, '/v1/workspace/keys', (r) => r.keys);
  const [run, error, busy] = useAction(reload);
  const [role, setRole] = useState('read');
  const [label, setLabel] = useState('');
  const [secret, setSecret] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    const answer = await run(() => app.client.post('/v1/workspace/keys', { role, label: label || undefined }));
    if (answer) {
      setSecret(answer.key.key);
      setLabel('');
    }
  };
  const tz = app.workspace.timezone;
  return html`
    <section class="panel" aria-labelledby="keys-title">
      <h2 id="keys-title">API keys</h2>
      ${(loadError || error) && html`<${Failed} error=${loadError || error} />`}
      ${keys &&
      html`<div class="table-wrap"><table class="keys">
        <thead><tr><th scope="col">Key</th><th scope="col">Label</th><th scope="col">Scopes</th><th scope="col">Expires</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${keys.map(
          (k) => html`<tr data-key=${k.prefix}>
            <td><code>${k.prefix}…</code></td><td>${k.label || '–'}</td><td>${(k.scopes || []).join(', ')}</td><td>${when(k.expires_at_us, tz)}</td>
            <td><button type="button" class="danger" disabled=${busy} onClick=${() => confirm(`Revoke ${k.prefix}…?`) && run(() => app.client.request('DELETE', `/v1/workspace/keys/${k.prefix}`))}>Revoke</button></td>
          </tr>`,
        )}</tbody></table></div>`}
      <form class="rule-form" onSubmit=${create}>
        <label>Kind <select value=${role} onChange=${(e) => setRole(e.target.value)}>
          <option value="write">write (send events)</option><option value="read">read (dashboards, SQL)</option><option value="admin">admin</option>
        </select></label>
        <label>Label <input value=${label} maxlength="200" onInput=${(e) => setLabel(e.target.value)} placeholder="metabase" /></label>
        <div class="actions"><button type="submit" disabled=${busy}>Create key</button></div>
      </form>
      <${Secret} label="New key" value=${secret} />
    </section>
  `;
}

function Webhooks({ app }) {
  const [hooks, loadError, reload] = useLoad(app.client, '/v1/webhooks', (r) => r.webhooks);
  const [run, error, busy] = useAction(reload);
  const [url, setUrl] = useState('');
  const [secret, setSecret] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    const answer = await run(() => app.client.post('/v1/webhooks', { url }));
    if (answer) {
      setSecret(answer.secrets && answer.secrets[0] && answer.secrets[0].secret);
      setUrl('');
    }
  };
  return html`
    <section class="panel" aria-labelledby="hooks-title">
      <h2 id="hooks-title">Webhooks</h2>
      ${(loadError || error) && html`<${Failed} error=${loadError || error} />`}
      ${hooks &&
      (hooks.length === 0
        ? html`<p>No webhooks.</p>`
        : html`<ul class="silences">${hooks.map(
            (h) => html`<li data-webhook=${h.id}>${h.url} <span class="muted">${(h.categories || []).join(', ') || 'every category'}</span>
              <button type="button" class="danger" disabled=${busy} onClick=${() => run(() => app.client.request('DELETE', `/v1/webhooks/${h.id}`))}>Delete</button></li>`,
          )}</ul>`)}
      <form class="rule-form" onSubmit=${create}>
        <label>Endpoint URL <input type="url" required value=${url} onInput=${(e) => setUrl(e.target.value)} placeholder="https://example.com/beacon" /></label>
        <div class="actions"><button type="submit" disabled=${busy}>Add webhook</button></div>
      </form>
      <${Secret} label="Signing secret" value=${secret} />
    </section>
  `;
}

function EmbedTokens({ app }) {
  const [tokens, loadError, reload] = useLoad(app.client, '/v1/embed/tokens', (r) => r.tokens);
  const [run, error, busy] = useAction(reload);
  const [name, setName] = useState('TV');
  const [link, setLink] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    const answer = await run(() => app.client.post('/v1/embed/tokens', { name, expires_in: '365days' }));
    if (answer) setLink(`${location.origin}/#/tv?token=${answer.token}`);
  };
  return html`
    <section class="panel" aria-labelledby="embed-title">
      <h2 id="embed-title">TV links and embed tokens</h2>
      <p class="hint">A TV link shows the Overview full screen, live, without signing in. Portals mint embed tokens for their clients with the API.</p>
      ${(loadError || error) && html`<${Failed} error=${loadError || error} />`}
      ${tokens &&
      (tokens.length === 0
        ? html`<p>None.</p>`
        : html`<ul class="silences">${tokens.map(
            (t) => html`<li data-token=${t.id}>${t.name}${t.customer ? ` · customer ${t.customer}` : ' · whole workspace'} · until ${fmt.time(t.expires_at, app.workspace.timezone)}
              ${t.revoked_at ? html` <strong>revoked</strong>` : html` <button type="button" class="danger" disabled=${busy} onClick=${() => run(() => app.client.request('DELETE', `/v1/embed/tokens/${t.id}`))}>Revoke</button>`}</li>`,
          )}</ul>`)}
      <form class="rule-form" onSubmit=${create}>
        <label>Screen name <input required maxlength="200" value=${name} onInput=${(e) => setName(e.target.value)} /></label>
        <div class="actions"><button type="submit" disabled=${busy}>Make a TV link</button></div>
      </form>
      <${Secret} label="TV link" value=${link} />
    </section>
  `;
}

function Branding({ app }) {
  const [branding, loadError] = useLoad(app.client, '/v1/notify/branding', (r) => r.branding || r);
  const [run, error, busy] = useAction();
  const [saved, setSaved] = useState(false);
  if (loadError) return html`<section class="panel"><h2>Email branding</h2><${Failed} error=${loadError} /></section>`;
  if (!branding) return null;
  const save = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const body = {};
    for (const k of ['name', 'color', 'logo_url', 'footer', 'email_from_name']) {
      const v = String(f.get(k) || '').trim();
      if (v) body[k] = v;
    }
    setSaved(false);
    if (await run(() => app.client.request('PUT', '/v1/notify/branding', body))) setSaved(true);
  };
  return html`
    <section class="panel" aria-labelledby="brand-title">
      <h2 id="brand-title">Email branding</h2>
      <form class="rule-form" onSubmit=${save}>
        <label>Name <input name="name" value=${branding.name || ''} /></label>
        <label>Colour <input name="color" value=${branding.color || ''} placeholder="#1f5fbf" /></label>
        <label>Logo URL <input name="logo_url" type="url" value=${branding.logo_url || ''} /></label>
        <label>Footer <input name="footer" value=${branding.footer || ''} /></label>
        <label>Sender name <input name="email_from_name" value=${branding.email_from_name || ''} /></label>
        <div class="actions"><button type="submit" disabled=${busy}>Save branding</button>${saved && html`<span role="status">Saved.</span>`}</div>
      </form>
      ${error && html`<${Failed} error=${error} />`}
    </section>
  `;
}

export function Settings({ app, onWorkspace }) {
  return html`
    <h1>Settings</h1>
    <${Workspace} app=${app} onSaved=${(ws) => onWorkspace && onWorkspace(ws)} />
    <${People} app=${app} />
    <${Keys} app=${app} />
    <${Webhooks} app=${app} />
    <${EmbedTokens} app=${app} />
    <${Branding} app=${app} />
  `;
}
