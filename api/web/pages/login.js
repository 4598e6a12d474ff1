// Sign-in: email and password, then the second factor when the account
// has one, and the workspace when the address is in several.
import { html, useState } from '../vendor/preact-htm.mjs';

import { ApiError, BeaconClient } from '../lib/client.js';

export function Login({ onSignedIn }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [totp, setTotp] = useState('');
  const [workspace, setWorkspace] = useState('');
  const [needs, setNeeds] = useState({ totp: false, workspace: false });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const body = { email, password };
    if (needs.totp) body.totp = totp;
    if (needs.workspace) body.workspace = workspace;
    try {
      await new BeaconClient().post('/v1/auth/login', body);
      onSignedIn();
    } catch (e) {
      if (e instanceof ApiError && e.code === 'totp_required') {
        setNeeds({ ...needs, totp: true });
      } else if (e instanceof ApiError && e.code === 'choose_workspace') {
        setNeeds({ ...needs, workspace: true });
        setError(e.message);
      } else {
        setError(e.message);
      }
    } finally {
      setBusy(false);
    }
  };

  return html`
    <main class="login">
      <form onSubmit=${submit} aria-labelledby="login-title">
        <h1 id="login-title">Sign in to Beacon</h1>
        <label>Email<input type="email" name="email" autocomplete="username" required value=${email} onInput=${(e) => setEmail(e.target.value)} /></label>
        <label>Password<input type="password" name="password" autocomplete="current-password" required value=${password} onInput=${(e) => setPassword(e.target.value)} /></label>
        ${needs.totp &&
        html`<label>Code from your authenticator app (or a recovery code)<input name="totp" autocomplete="one-time-code" inputmode="numeric" required value=${totp} onInput=${(e) => setTotp(e.target.value)} /></label>`}
        ${needs.workspace &&
        html`<label>Workspace<input name="workspace" required value=${workspace} onInput=${(e) => setWorkspace(e.target.value)} /></label>`}
        ${error && html`<p class="error" role="alert">${error}</p>`}
        <button type="submit" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </main>
  `;
}
