// Sign-in: a client id and secret traded for an access token by the page itself.

import { signIn } from '../api.js';
import { errorBox, h, showError } from '../dom.js';

export function signInView(main, { onSignedIn, reason }) {
  document.title = 'Sign in · portd';
  const error = errorBox('sign-in-error');
  const clientId = h('input', {
    id: 'client-id',
    name: 'clientId',
    autocomplete: 'username',
    spellcheck: 'false',
    autocapitalize: 'none',
    required: true,
  });
  const clientSecret = h('input', {
    id: 'client-secret',
    name: 'clientSecret',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button', { class: 'button button-primary', type: 'submit', text: 'Sign in' });
  const form = h(
    'form',
    { class: 'card stack signin', 'aria-labelledby': 'sign-in-title', novalidate: true },
    h('h1', { id: 'sign-in-title', tabindex: '-1', text: 'Sign in to portd' }),
    h('p', {
      class: 'muted',
      text: 'Use a client id and secret of your organization (portd prints them on its first start and keeps them in credentials.json). The token stays in this browser tab only.',
    }),
    reason === 'expired'
      ? h('p', { class: 'notice', role: 'status', text: 'Your session ended. Please sign in again.' })
      : null,
    h('div', { class: 'field' }, h('label', { for: 'client-id', text: 'Client ID' }), clientId),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'client-secret', text: 'Client secret' }),
      clientSecret,
    ),
    error,
    h('div', { class: 'actions-row' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!clientId.value.trim() || !clientSecret.value) {
      showError(error, new Error('Enter both the client ID and the client secret.'));
      (clientId.value.trim() ? clientSecret : clientId).focus();
      return;
    }
    submit.disabled = true;
    showError(error, null);
    try {
      await signIn(clientId.value.trim(), clientSecret.value);
      clientSecret.value = '';
      onSignedIn();
    } catch (e) {
      showError(
        error,
        e.status === 401 || e.status === 403 ? new Error('Wrong client ID or secret.') : e,
      );
      submit.disabled = false;
      clientSecret.focus();
    }
  });
  main.append(h('div', { class: 'narrow' }, form));
  clientId.focus();
  return () => {};
}
