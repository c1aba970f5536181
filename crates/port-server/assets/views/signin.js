// Sign-in: a person with their e-mail address and password (or single sign-on, when
// the server offers it), or a machine with a client id and secret traded for an access
// token by the page itself.

import { signIn, signInOptions, signInWithPassword } from '../api.js';
import { errorBox, h, showError } from '../dom.js';

/** What the server's `?sso_error=` reasons mean. */
const SSO_ERRORS = {
  expired: 'The single sign-on took too long or was started in another browser. Please try again.',
  denied: 'The identity provider did not sign you in.',
  unknown_user: 'Your identity provider signed you in, but your address is not a user of portd. Ask an admin to add you.',
  unverified_email: 'Your identity provider has not verified your e-mail address.',
  no_email: 'Your identity provider did not tell portd your e-mail address.',
  failed: 'Single sign-on failed. Please try again, or ask an admin to look at portd’s log.',
};

function personForm(onSignedIn) {
  const error = errorBox('password-error');
  const email = h('input', {
    id: 'email',
    name: 'email',
    type: 'email',
    autocomplete: 'username',
    spellcheck: 'false',
    autocapitalize: 'none',
    required: true,
  });
  const password = h('input', {
    id: 'password',
    name: 'password',
    type: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button', { id: 'password-submit', class: 'button button-primary', type: 'submit', text: 'Sign in' });
  const sso = h('a', { id: 'sso', class: 'button', href: '/ui/oidc/login', text: 'Sign in with SSO', hidden: true });
  const form = h(
    'form',
    { class: 'card stack signin-person', 'aria-labelledby': 'sign-in-title', novalidate: true },
    h('h1', { id: 'sign-in-title', tabindex: '-1', text: 'Sign in to portd' }),
    h('div', { class: 'field' }, h('label', { for: 'email', text: 'E-mail address' }), email),
    h('div', { class: 'field' }, h('label', { for: 'password', text: 'Password' }), password),
    error,
    h('div', { class: 'actions-row' }, submit, sso),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!email.value.trim() || !password.value) {
      showError(error, new Error('Enter your e-mail address and your password.'));
      (email.value.trim() ? password : email).focus();
      return;
    }
    submit.disabled = true;
    showError(error, null);
    try {
      await signInWithPassword(email.value.trim(), password.value);
      password.value = '';
      onSignedIn();
    } catch (e) {
      showError(error, e.status === 401 ? new Error('Wrong e-mail address or password.') : e);
      submit.disabled = false;
      password.focus();
    }
  });
  return { form, email, sso };
}

function machineForm(onSignedIn) {
  const error = errorBox('sign-in-error');
  const clientId = h('input', {
    id: 'client-id',
    name: 'clientId',
    autocomplete: 'off',
    spellcheck: 'false',
    autocapitalize: 'none',
    required: true,
  });
  const clientSecret = h('input', {
    id: 'client-secret',
    name: 'clientSecret',
    type: 'password',
    autocomplete: 'off',
    required: true,
  });
  const submit = h('button', { class: 'button', type: 'submit', text: 'Sign in with credentials' });
  const form = h(
    'form',
    { id: 'signin-machine', class: 'card stack signin', 'aria-labelledby': 'machine-title', novalidate: true },
    h('h2', { id: 'machine-title', text: 'Organization credentials' }),
    h('p', {
      class: 'muted',
      text: 'For operators: a client id and secret of your organization (portd prints them on its first start and keeps them in credentials.json). The token stays in this browser tab only.',
    }),
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
  return form;
}

export function signInView(main, { onSignedIn, reason, search }) {
  document.title = 'Sign in · portd';
  const person = personForm(onSignedIn);
  const ssoError = search && search.get('sso_error');
  const notices = [];
  if (reason === 'expired') {
    notices.push(h('p', { class: 'notice', role: 'status', text: 'Your session ended. Please sign in again.' }));
  }
  if (ssoError) {
    notices.push(h('p', { id: 'sso-error', class: 'error', role: 'alert', text: SSO_ERRORS[ssoError] || SSO_ERRORS.failed }));
  }
  main.append(h('div', { class: 'narrow' }, ...notices, person.form, machineForm(onSignedIn)));
  let stopped = false;
  signInOptions().then((options) => {
    if (!stopped) person.sso.hidden = !options.sso;
  });
  person.email.focus();
  return () => {
    stopped = true;
  };
}
