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
  return html`<a href="#/inbox" class="inbox-link">Inbox${unread > 0 && html` <span class="badge" data-unread=${unread} aria-label=${`${unread} unread`}>${unread}</span>`}</a>`;
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
