// The notification center: the signed-in user's inbox, live (the
// `notifications:<user>` channel), with read, unread and archive; and the
// unread badge of the header. `/v1/inbox`, `/v1/inbox/mark`.
import { html, useEffect, useState } from '../vendor/preact-htm.mjs';

import * as fmt from '../lib/format.js';
import { Failed } from '../lib/ui.js';

const channel = (app) => `notifications:${app.me.user.id}`;

/** The live unread count: from the server, then from each push. */
export function useUnread(app) {
  const [unread, setUnread] = useState(null);
  useEffect(() => {
    let current = true;
    const refresh = () =>
      app.client
        .get('/v1/inbox/unread-count')
        .then((r) => current && setUnread(r.unread))
        .catch(() => {});
    refresh();
    const off = app.client.subscribe(channel(app), {
      onMessage: (msg) => {
        if (msg.type === 'inbox' && typeof msg.payload.unread === 'number') setUnread(msg.payload.unread);
        else refresh();
      },
      // Once subscribed (also after each reconnect) and when the server
      // could not resume: ask again, so nothing sent before the
      // subscription took effect is missed.
      onSubscribed: refresh,
      onHistoryLost: refresh,
    });
    return () => {
      current = false;
      off();
    };
  }, [app.client]);
  return unread;
}

export function InboxBadge({ app }) {
  const unread = useUnread(app);
  // data-unread on the link too, once known: what the count is (0 included)
  // can be waited for, unlike a badge that is absent both before the count
  // arrives and when it is zero.
  return html`<a href="#/inbox" class="inbox-link" data-unread=${unread ?? undefined}>Inbox${unread > 0 && html` <span class="badge" data-unread=${unread} aria-label=${`${unread} unread`}>${unread}</span>`}</a>`;
}

/**
 * The user's own notification preferences (`GET /v1/users/{id}`,
 * `PUT /v1/users/{id}/preferences`): email on or off, a daily digest,
 * quiet hours. Other preferences (per category, business hours) are kept
 * as they are.
 */
function Preferences({ app }) {
  const id = app.me.user.id;
  const [prefs, setPrefs] = useState(null);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => {
    app.client
      .get(`/v1/users/${encodeURIComponent(id)}`)
      .then((u) => setPrefs(u.preferences || {}))
      .catch((e) => setError(e.message));
  }, [app.client, id]);
  if (error && !prefs) return html`<${Failed} error=${error} />`;
  if (!prefs) return null;
  const channels = prefs.channels || {};
  const quiet = prefs.quiet_hours || null;
  const save = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const next = {
      ...prefs,
      channels: { ...channels, email: f.get('email') === 'on' },
      digest: f.get('digest'),
      quiet_hours: f.get('quiet') === 'on' ? { start: f.get('quiet_start'), end: f.get('quiet_end') } : null,
    };
    if (next.quiet_hours === null) delete next.quiet_hours;
    setSaved(false);
    setError(null);
    try {
      const answer = await app.client.request('PUT', `/v1/users/${encodeURIComponent(id)}/preferences`, next);
      setPrefs((answer && answer.preferences) || next);
      setSaved(true);
    } catch (err) {
      setError(err.message);
    }
  };
  return html`
    <details class="panel prefs">
      <summary>Your notification settings</summary>
      <form class="rule-form" onSubmit=${save}>
        <label class="inline check"><input type="checkbox" name="email" checked=${channels.email !== false} /> Email me</label>
        <label>Emails <select name="digest" value=${prefs.digest || 'none'}>
          <option value="none">as they happen</option><option value="daily">in one daily digest</option>
        </select></label>
        <label class="inline check"><input type="checkbox" name="quiet" checked=${!!quiet} /> Quiet hours</label>
        <label>From <input name="quiet_start" type="time" value=${(quiet && quiet.start) || '22:00'} /></label>
        <label>Until <input name="quiet_end" type="time" value=${(quiet && quiet.end) || '07:00'} /></label>
        <p class="hint">Critical notifications ignore quiet hours and the digest; the inbox and live pushes are never held back.</p>
        <div class="actions"><button type="submit">Save settings</button>${saved && html`<span role="status">Saved.</span>`}</div>
      </form>
      ${error && html`<${Failed} error=${error} />`}
    </details>
  `;
}

export function Inbox({ app }) {
  const [items, setItems] = useState(null);
  const [archived, setArchived] = useState(false);
  const [error, setError] = useState(null);
  const load = () =>
    app.client
      .get(`/v1/inbox?archived=${archived}&limit=100`)
      .then((r) => setItems(r.notifications))
      .catch((e) => setError(e.message));
  useEffect(() => {
    load();
    return app.client.subscribe(channel(app), { onMessage: load, onSubscribed: load, onHistoryLost: load });
  }, [app.client, archived]);
  const mark = async (ids, action) => {
    try {
      await app.client.post('/v1/inbox/mark', { ids, action });
      await load();
    } catch (e) {
      setError(e.message);
    }
  };
  return html`
    <h1>Inbox</h1>
    <${Preferences} app=${app} />
    <div class="actions">
      <button type="button" onClick=${() => mark([], 'read')}>Mark all read</button>
      <label class="inline check"><input type="checkbox" checked=${archived} onChange=${(e) => setArchived(e.target.checked)} /> Show archived</label>
    </div>
    ${error && html`<${Failed} error=${error} />`}
    ${items === null
      ? html`<p class="loading">Loading…</p>`
      : items.length === 0
        ? html`<p class="muted">Nothing here.</p>`
        : html`<ul class="inbox">
            ${items.map(
              (n) => html`<li key=${n.id} class=${n.read_at_us ? 'read' : 'unread'} data-id=${n.id}>
                <div>
                  <strong>${n.title}</strong> <span class=${'severity severity-' + n.severity}>${n.severity}</span>
                  <p>${n.body}</p>
                  <time>${fmt.time(new Date(n.created_at_us / 1000).toISOString(), app.workspace.timezone)}</time> · <span class="muted">${n.category}</span>
                </div>
                <div class="actions">
                  ${n.read_at_us
                    ? html`<button type="button" onClick=${() => mark([n.id], 'unread')}>Mark unread</button>`
                    : html`<button type="button" onClick=${() => mark([n.id], 'read')}>Mark read</button>`}
                  ${n.archived_at_us
                    ? html`<button type="button" onClick=${() => mark([n.id], 'unarchive')}>Unarchive</button>`
                    : html`<button type="button" onClick=${() => mark([n.id], 'archive')}>Archive</button>`}
                </div>
              </li>`,
            )}
          </ul>`}
  `;
}
