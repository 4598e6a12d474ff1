// The Beacon web app: the shell (session, navigation, live status) and
// the router. Pages live in pages/, each a Preact component taking
// `{ app }`: the signed-in user, the workspace and the client.
//
// Routing is by the URL's fragment (`#/overview`), so the server serves
// one page and the browser never sends a route (or a token in it) to it.
import { html, render, useEffect, useState } from './vendor/preact-htm.mjs';

import { BeaconClient } from './lib/client.js';
import { Alerts } from './pages/alerts.js';
import { Bookings } from './pages/bookings.js';
import { Customers } from './pages/customers.js';
import { Funnels } from './pages/funnels.js';
import { Inbox, InboxBadge } from './pages/inbox.js';
import { Login } from './pages/login.js';
import { Overview } from './pages/overview.js';
import { Reports } from './pages/reports.js';
import { Heatmap, Retention } from './pages/retention.js';
import { Sales } from './pages/sales.js';
import { Settings } from './pages/settings.js';
import { Sql } from './pages/sql.js';

const EVERYONE = ['viewer', 'analyst', 'admin', 'owner'];
const ANALYSTS = ['analyst', 'admin', 'owner'];
const ADMINS = ['admin', 'owner'];

/** The pages in the navigation: path, title, component, roles allowed (as the server's access table). */
export const PAGES = [
  { path: 'overview', title: 'Overview', component: Overview, roles: EVERYONE },
  { path: 'sales', title: 'Sales', component: Sales, roles: EVERYONE },
  { path: 'bookings', title: 'Bookings', component: Bookings, roles: EVERYONE },
  { path: 'customers', title: 'Customers', component: Customers, roles: EVERYONE },
  { path: 'funnels', title: 'Funnels', component: Funnels, roles: EVERYONE },
  { path: 'retention', title: 'Retention', component: Retention, roles: EVERYONE },
  { path: 'peak-times', title: 'Peak times', component: Heatmap, roles: EVERYONE },
  { path: 'alerts', title: 'Alerts', component: Alerts, roles: EVERYONE },
  { path: 'reports', title: 'Reports', component: Reports, roles: EVERYONE },
  { path: 'sql', title: 'SQL', component: Sql, roles: ANALYSTS },
  { path: 'settings', title: 'Settings', component: Settings, roles: ADMINS },
];

/** Pages reached from the header rather than the navigation. */
const OTHER_PAGES = [{ path: 'inbox', title: 'Inbox', component: Inbox, roles: EVERYONE }];

function currentRoute() {
  const path = location.hash.replace(/^#\/?/, '').split('?')[0];
  return path || 'overview';
}

function useRoute() {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const onChange = () => setRoute(currentRoute());
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

/** The live status of the hub connection, as a badge. */
function LiveBadge({ client }) {
  const [status, setStatus] = useState(client.status);
  useEffect(() => client.onStatus(setStatus), [client]);
  const label = { live: 'Live', connecting: 'Connecting…', reconnecting: 'Reconnecting…', closed: 'Offline' }[status];
  return html`<span class="live live-${status}" role="status" aria-live="polite" data-status=${status}>${label}</span>`;
}

function Shell({ me, onSignOut }) {
  const route = useRoute();
  const [client] = useState(() => new BeaconClient({ csrf: me.csrf_token }));
  useEffect(() => {
    client.onRefused = () => onSignOut();
    return () => client.close();
  }, [client]);
  // Settings may change the workspace (its name, zone, currency).
  const [workspace, setWorkspace] = useState(me.workspace);
  const app = { me, client, workspace, role: me.role };
  const page = [...PAGES, ...OTHER_PAGES].find((p) => p.path === route);
  const allowed = page && page.roles.includes(me.role);
  const signOut = async () => {
    try {
      await client.post('/v1/auth/logout');
    } catch {
      // Signed out already.
    }
    onSignOut();
  };
  return html`
    <header class="top">
      <a class="brand" href="#/overview">Beacon</a>
      <span class="workspace">${workspace.name}</span>
      <nav aria-label="Pages">
        ${PAGES.filter((p) => p.roles.includes(me.role)).map(
          (p) => html`<a href=${'#/' + p.path} aria-current=${p.path === route ? 'page' : undefined}>${p.title}</a>`,
        )}
      </nav>
      <${LiveBadge} client=${client} />
      <${InboxBadge} app=${app} />
      <span class="who">${me.user.email || me.user.id} · ${me.role}</span>
      <button type="button" class="link" onClick=${signOut}>Sign out</button>
    </header>
    <main id="main">
      ${allowed
        ? html`<${page.component} app=${app} onWorkspace=${setWorkspace} />`
        : html`<section class="notice" role="alert"><h1>Not available</h1><p>${page ? `Your role (${me.role}) cannot open this page.` : 'There is no such page.'}</p><p><a href="#/overview">Go to the overview</a></p></section>`}
    </main>
  `;
}

/** Where a TV link's token is kept, so a reload stays on the screen. */
const TV_TOKEN = 'beacon.tv.token';

/**
 * TV mode (`#/tv?token=be_...`, from `POST /v1/embed/tokens` without a
 * customer): the Overview full screen on an embed token, live, with no
 * sign-in. The token leaves the address bar at once and stays in this
 * browser's storage; a refused token shows why, never the sign-in page.
 */
function Tv() {
  const [client] = useState(() => new BeaconClient({ token: localStorage.getItem(TV_TOKEN) }));
  const [workspace, setWorkspace] = useState(null);
  const [refused, setRefused] = useState(null);
  useEffect(() => {
    client.onRefused = (code, reason) => setRefused(reason || `the server closed the connection (${code})`);
    client
      .get('/v1/workspace')
      .then((r) => setWorkspace(r.workspace))
      .catch((e) => setRefused(e.message));
    return () => client.close();
  }, [client]);
  if (refused) {
    return html`<section class="notice" role="alert"><h1>This TV link does not work</h1><p>${refused}</p><p>Ask an admin of the workspace for a new link.</p></section>`;
  }
  if (!workspace) return html`<p class="loading">Loading Beacon…</p>`;
  const app = { me: null, client, workspace, role: 'tv' };
  return html`
    <header class="top tv">
      <span class="brand">Beacon</span>
      <span class="workspace">${workspace.name}</span>
      <${LiveBadge} client=${client} />
    </header>
    <main id="main" class="tv"><${Overview} app=${app} /></main>
  `;
}

/** Takes a TV link's token out of the address into storage. */
function takeTvToken() {
  const match = location.hash.match(/^#\/tv\?(.*)$/);
  if (!match) return;
  const token = new URLSearchParams(match[1]).get('token');
  if (token) localStorage.setItem(TV_TOKEN, token);
  history.replaceState(null, '', '#/tv');
}

function App() {
  takeTvToken();
  if (currentRoute() === 'tv' && localStorage.getItem(TV_TOKEN)) return html`<${Tv} />`;
  return html`<${SignedIn} />`;
}

function SignedIn() {
  const [me, setMe] = useState(undefined);
  const [error, setError] = useState(null);
  const load = async () => {
    try {
      // Always 200: a signed-out visitor is not an error.
      const session = await new BeaconClient().get('/v1/auth/session');
      setMe(session.signed_in ? session : null);
      setError(null);
    } catch (e) {
      setError(e.message);
    }
  };
  useEffect(() => {
    load();
  }, []);
  if (error) {
    return html`<section class="notice" role="alert"><h1>Beacon is not answering</h1><p>${error}</p><button type="button" onClick=${load}>Try again</button></section>`;
  }
  if (me === undefined) return html`<p class="loading">Loading Beacon…</p>`;
  if (me === null) return html`<${Login} onSignedIn=${load} />`;
  return html`<${Shell} me=${me} onSignOut=${() => setMe(null)} />`;
}

render(html`<${App} />`, document.getElementById('app'));
