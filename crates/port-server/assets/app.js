// The app: a router over the page's paths, the header, and sign-in/sign-out.
//
//   /              runs, newest first, live
//   /runs/{id}     one run: status, log stream, entities, deliveries, approval
//   /actions       self-service actions
//   /actions/{id}  an action's form
//   /automations       automations: what each watches, its condition
//   /automations/{id}  an automation's trigger and its runs
//   /users, /teams     the organization's people and teams (managed by Admins)
//   /actions/{id}/permissions  who may run and approve an action (Admins)

import { isAdmin, isSignedIn, onSignedOut, restoreSession, signOut, whoAmI } from './api.js';
import { h } from './dom.js';
import { permissionsView, teamsView, usersView } from './views/admin.js';
import { actionFormView, actionsView } from './views/actions.js';
import { automationView, automationsView } from './views/automations.js';
import { runView } from './views/run.js';
import { runsView } from './views/runs.js';
import { signInView } from './views/signin.js';

const ROUTES = [
  { pattern: /^\/$/, view: runsView, nav: 'runs' },
  { pattern: /^\/runs\/([^/]+)\/?$/, view: runView, nav: 'runs' },
  { pattern: /^\/actions\/?$/, view: actionsView, nav: 'actions' },
  { pattern: /^\/actions\/([^/]+)\/?$/, view: actionFormView, nav: 'actions' },
  { pattern: /^\/actions\/([^/]+)\/permissions\/?$/, view: permissionsView, nav: 'actions' },
  { pattern: /^\/users\/?$/, view: usersView, nav: 'users' },
  { pattern: /^\/teams\/?$/, view: teamsView, nav: 'teams' },
  { pattern: /^\/automations\/?$/, view: automationsView, nav: 'automations' },
  { pattern: /^\/automations\/([^/]+)\/?$/, view: automationView, nav: 'automations' },
];

let cleanup = null;
let firstRender = true;
let signedOutReason = null;

/** Goes to `url` (a path and query on this origin) without reloading the page. */
export function navigate(url, { replace = false, state = null } = {}) {
  if (replace) history.replaceState(state, '', url);
  else history.pushState(state, '', url);
  render();
}

function setNav(signedIn, current) {
  document.getElementById('nav').hidden = !signedIn;
  document.getElementById('sign-out').hidden = !signedIn;
  const who = signedIn ? whoAmI() : null;
  const identity = document.getElementById('identity');
  identity.hidden = who === null;
  identity.textContent =
    who === null ? '' : who.kind === 'person' ? who.user.email : 'Organization credentials';
  for (const link of document.querySelectorAll('#nav [data-admin]')) {
    link.hidden = !signedIn || !isAdmin();
  }
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.nav === current) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  const main = document.getElementById('main');
  main.replaceChildren();
  const moveFocus = !firstRender;
  firstRender = false;

  if (!isSignedIn()) {
    setNav(false, null);
    cleanup = signInView(main, {
      reason: signedOutReason,
      search: new URLSearchParams(location.search),
      onSignedIn: () => {
        signedOutReason = null;
        // A failed single sign-on's reason has been read; do not show it again.
        if (new URLSearchParams(location.search).has('sso_error')) {
          history.replaceState(null, '', location.pathname);
        }
        render();
      },
    });
    return;
  }

  const path = location.pathname;
  const route = ROUTES.find((r) => r.pattern.test(path));
  setNav(true, route ? route.nav : null);
  if (!route) {
    document.title = 'Not found · portd';
    main.append(
      h('h1', { tabindex: '-1', text: 'Page not found' }),
      h('p', {}, 'There is nothing at this address. ', h('a', { href: '/', text: 'See the runs' }), '.'),
    );
  } else {
    const params = path.match(route.pattern).slice(1).map(decodeURIComponent);
    cleanup = route.view(main, { params, navigate, search: new URLSearchParams(location.search) });
  }
  if (moveFocus) {
    // After a navigation, focus the new view's heading so keyboard and screen reader
    // users start at the top of the new content.
    const heading = main.querySelector('h1');
    if (heading) {
      if (!heading.hasAttribute('tabindex')) heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
}

// Same-origin links to the app's pages are handled here, without reloading.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const link = event.target.closest('a[href]');
  if (!link || link.target || link.hasAttribute('download')) return;
  const url = new URL(link.href, location.href);
  if (url.origin !== location.origin) return;
  if (!ROUTES.some((r) => r.pattern.test(url.pathname))) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener('popstate', render);

// A page left for another document (a reload, an address typed) stops its view. The
// browser may keep the page for its back button, and with it the run page's log stream:
// a few reloads used up the six connections a browser opens to one host (and the
// organization's streams on the server), and the next page never loaded. A page brought
// back from that cache starts its view again, where the reader left it.
window.addEventListener('pagehide', () => {
  if (cleanup) cleanup();
  cleanup = null;
});
window.addEventListener('pageshow', (event) => {
  if (!event.persisted) return;
  firstRender = true;
  render();
});

document.getElementById('sign-out').addEventListener('click', () => {
  signOut();
});

onSignedOut((reason) => {
  signedOutReason = reason === 'expired' ? 'expired' : null;
  render();
});

// A person's session lives in a cookie the page cannot read: ask the server whether
// there is one (after a reload, or coming back from single sign-on) before drawing.
restoreSession().finally(render);
