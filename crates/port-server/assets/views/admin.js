// The organization's people and permissions: users (invite, role, teams, delete),
// teams (create, members, delete) and an action's permissions (who may execute and
// approve it). Admins and organization credentials change them; Members read.

import { api, enc, isAdmin } from '../api.js';
import { announce, errorBox, h, section, setChildren, showError } from '../dom.js';

const ROLES = ['Admin', 'Member'];

/** `a@x.io, b@x.io` → `['a@x.io', 'b@x.io']`. */
function list(text) {
  return text
    .split(/[,\n]/)
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function nameList(items, key = 'name') {
  return (Array.isArray(items) ? items : []).map((item) => (typeof item === 'string' ? item : item && item[key]));
}

function roleOf(user) {
  return nameList(user.roles)[0] || 'Member';
}

/** A button that runs `work`, showing its failure in `box`; disabled meanwhile. */
function actionButton(attrs, box, work) {
  const button = h('button', { type: 'button', class: 'button button-small', ...attrs });
  button.addEventListener('click', async () => {
    button.disabled = true;
    showError(box, null);
    try {
      await work();
    } catch (e) {
      if (e.name !== 'AbortError') showError(box, e);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function pageHead(title, intro) {
  return [
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1', text: title })),
    intro ? h('p', { class: 'muted', text: intro }) : null,
  ];
}

// --- Users -------------------------------------------------------------------------------

export function usersView(main) {
  document.title = 'Users · portd';
  const controller = new AbortController();
  const { signal } = controller;
  const admin = isAdmin();
  const error = errorBox('users-error');
  const body = h('div', { id: 'users-list' }, h('p', { class: 'muted', text: 'Loading…' }));

  const inviteError = errorBox('invite-error');
  const email = h('input', { id: 'invite-email', type: 'email', autocomplete: 'off', spellcheck: 'false' });
  const role = h('select', { id: 'invite-role' }, ROLES.map((r) => h('option', { value: r, text: r, selected: r === 'Member' })));
  const teams = h('input', { id: 'invite-teams', autocomplete: 'off', placeholder: 'Platform, Payments' });
  const invite = h('form', { id: 'invite-form', class: 'stack', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'invite-email', text: 'E-mail address' }), email),
    h('div', { class: 'field' }, h('label', { for: 'invite-role', text: 'Role' }), role),
    h('div', { class: 'field' }, h('label', { for: 'invite-teams', text: 'Teams (comma-separated, optional)' }), teams),
    inviteError,
    h('div', { class: 'actions-row' }, h('button', { id: 'invite-submit', type: 'submit', class: 'button button-primary', text: 'Add user' })),
  );
  invite.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(inviteError, null);
    try {
      await api('POST', '/users/invite', { invitee: { email: email.value.trim(), roles: [role.value], teams: list(teams.value) } }, { signal });
      announce(`${email.value.trim()} was added.`);
      email.value = '';
      teams.value = '';
      load();
    } catch (e) {
      if (e.name !== 'AbortError') showError(inviteError, e);
    }
  });

  main.append(
    ...pageHead('Users', admin
      ? 'People of your organization. They sign in with a password (set with portd users set-password) or by single sign-on.'
      : 'People of your organization. Only Admins change them.'),
    error,
    h('section', { class: 'card', 'aria-label': 'Users' }, body),
    admin ? section('invite', 'Add a user', invite) : null,
  );

  function row(user) {
    const rowError = errorBox(null);
    const cells = [
      h('td', { class: 'wrap' }, h('span', { class: 'user-email', text: user.email }),
        [user.firstName, user.lastName].filter(Boolean).length
          ? h('div', { class: 'muted small', text: [user.firstName, user.lastName].filter(Boolean).join(' ') })
          : null),
      h('td', { text: user.status || '' }),
    ];
    if (!admin) {
      cells.push(h('td', { text: roleOf(user) }), h('td', { text: nameList(user.teams).join(', ') || '—' }));
      return h('tr', { 'data-email': user.email }, cells);
    }
    const key = user.email.replace(/[^A-Za-z0-9]/g, '_');
    const roleSelect = h('select', { id: `role-${key}`, 'aria-label': `Role of ${user.email}` },
      ROLES.map((r) => h('option', { value: r, text: r, selected: r === roleOf(user) })));
    const teamsInput = h('input', { id: `teams-${key}`, 'aria-label': `Teams of ${user.email}`, value: nameList(user.teams).join(', ') });
    const save = actionButton({ class: 'button button-small', text: 'Save' }, rowError, async () => {
      await api('PATCH', `/users/${enc(user.email)}`, { roles: [roleSelect.value], teams: list(teamsInput.value) }, { signal });
      announce(`${user.email} was saved.`);
      load();
    });
    const remove = actionButton({ class: 'button button-small button-danger', text: 'Delete' }, rowError, async () => {
      if (!window.confirm(`Delete ${user.email}? Their sessions and personal credentials go too.`)) return;
      await api('DELETE', `/users/${enc(user.email)}`, undefined, { signal });
      announce(`${user.email} was deleted.`);
      load();
    });
    cells.push(
      h('td', {}, roleSelect),
      h('td', {}, teamsInput),
      h('td', {}, h('div', { class: 'actions-row' }, save, remove), rowError),
    );
    return h('tr', { 'data-email': user.email }, cells);
  }

  function load() {
    api('GET', '/users', undefined, { signal })
      .then((data) => {
        const users = data.users || [];
        if (users.length === 0) {
          setChildren(body, h('p', { class: 'empty', text: 'No users yet.' }));
          return;
        }
        setChildren(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'users-table' },
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col', text: 'User' }),
            h('th', { scope: 'col', text: 'Status' }),
            h('th', { scope: 'col', text: 'Role' }),
            h('th', { scope: 'col', text: 'Teams' }),
            admin ? h('th', { scope: 'col', text: '' }) : null)),
          h('tbody', {}, users.map(row)))));
      })
      .catch((e) => {
        if (e.name === 'AbortError') return;
        setChildren(body);
        showError(error, e);
      });
  }
  load();
  return () => controller.abort();
}

// --- Teams -------------------------------------------------------------------------------

export function teamsView(main) {
  document.title = 'Teams · portd';
  const controller = new AbortController();
  const { signal } = controller;
  const admin = isAdmin();
  const error = errorBox('teams-error');
  const body = h('div', { id: 'teams-list' }, h('p', { class: 'muted', text: 'Loading…' }));

  const createError = errorBox('team-error');
  const name = h('input', { id: 'team-name', autocomplete: 'off' });
  const description = h('input', { id: 'team-description', autocomplete: 'off' });
  const members = h('textarea', { id: 'team-members', rows: '2', placeholder: 'ada@example.com, grace@example.com' });
  const create = h('form', { id: 'team-form', class: 'stack', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'team-name', text: 'Name' }), name),
    h('div', { class: 'field' }, h('label', { for: 'team-description', text: 'Description (optional)' }), description),
    h('div', { class: 'field' }, h('label', { for: 'team-members', text: 'Members (e-mail addresses, comma-separated)' }), members),
    createError,
    h('div', { class: 'actions-row' }, h('button', { id: 'team-submit', type: 'submit', class: 'button button-primary', text: 'Create team' })),
  );
  create.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(createError, null);
    const team = { name: name.value.trim(), users: list(members.value) };
    if (description.value.trim()) team.description = description.value.trim();
    try {
      await api('POST', '/teams', team, { signal });
      announce(`Team ${team.name} was created.`);
      name.value = '';
      description.value = '';
      members.value = '';
      load();
    } catch (e) {
      if (e.name !== 'AbortError') showError(createError, e);
    }
  });

  main.append(
    ...pageHead('Teams', 'Teams name groups of users in action permissions.'),
    error,
    h('section', { class: 'card', 'aria-label': 'Teams' }, body),
    admin ? section('new-team', 'Create a team', create) : null,
  );

  function row(team) {
    const users = nameList(team.users, 'email');
    const cells = [
      h('td', {}, h('strong', { text: team.name }), team.description ? h('div', { class: 'muted small', text: team.description }) : null),
    ];
    if (!admin) {
      cells.push(h('td', { class: 'wrap', text: users.join(', ') || '—' }));
      return h('tr', { 'data-team': team.name }, cells);
    }
    const rowError = errorBox(null);
    const key = team.name.replace(/[^A-Za-z0-9]/g, '_');
    const input = h('textarea', { id: `members-${key}`, rows: '2', 'aria-label': `Members of ${team.name}` });
    input.value = users.join(', ');
    const save = actionButton({ text: 'Save' }, rowError, async () => {
      await api('PATCH', `/teams/${enc(team.name)}`, { users: list(input.value) }, { signal });
      announce(`Team ${team.name} was saved.`);
      load();
    });
    const remove = actionButton({ class: 'button button-small button-danger', text: 'Delete' }, rowError, async () => {
      if (!window.confirm(`Delete team ${team.name}? Its members stay users.`)) return;
      await api('DELETE', `/teams/${enc(team.name)}`, undefined, { signal });
      announce(`Team ${team.name} was deleted.`);
      load();
    });
    cells.push(h('td', {}, input), h('td', {}, h('div', { class: 'actions-row' }, save, remove), rowError));
    return h('tr', { 'data-team': team.name }, cells);
  }

  function load() {
    api('GET', '/teams', undefined, { signal })
      .then((data) => {
        const teams = data.teams || [];
        if (teams.length === 0) {
          setChildren(body, h('p', { class: 'empty', text: 'No teams yet.' }));
          return;
        }
        setChildren(body, h('div', { class: 'table-wrap' }, h('table', { class: 'table', id: 'teams-table' },
          h('thead', {}, h('tr', {},
            h('th', { scope: 'col', text: 'Team' }),
            h('th', { scope: 'col', text: 'Members' }),
            admin ? h('th', { scope: 'col', text: '' }) : null)),
          h('tbody', {}, teams.map(row)))));
      })
      .catch((e) => {
        if (e.name === 'AbortError') return;
        setChildren(body);
        showError(error, e);
      });
  }
  load();
  return () => controller.abort();
}

// --- An action's permissions -----------------------------------------------------------------

/** The fields of one grant (`execute` or `approve`), and how to read them back. */
function grantFields(kind, grant, admin) {
  const id = (name) => `${kind}-${name}`;
  const users = h('textarea', { id: id('users'), rows: '2', disabled: !admin });
  users.value = (grant.users || []).join(', ');
  const roles = ROLES.map((role) =>
    h('input', { type: 'checkbox', id: id(`role-${role}`), checked: (grant.roles || []).includes(role), disabled: !admin }));
  const teams = h('input', { id: id('teams'), autocomplete: 'off', value: (grant.teams || []).join(', '), disabled: !admin });
  const policy = h('textarea', { id: id('policy'), rows: '4', class: 'mono', spellcheck: 'false', disabled: !admin, placeholder: 'null' });
  policy.value = grant.policy ? JSON.stringify(grant.policy, null, 2) : '';
  const owned = kind === 'execute'
    ? h('input', { type: 'checkbox', id: id('owned'), checked: grant.ownedByTeam === true, disabled: !admin })
    : null;
  const element = h('div', { class: 'stack' },
    h('div', { class: 'field' }, h('label', { for: id('users'), text: 'Users (e-mail addresses, comma-separated)' }), users),
    h('fieldset', { class: 'roles' }, h('legend', { text: 'Roles' }),
      ROLES.map((role, index) => h('span', { class: 'field-check' }, roles[index], h('label', { for: id(`role-${role}`), text: role })))),
    h('div', { class: 'field' }, h('label', { for: id('teams'), text: 'Teams (comma-separated)' }), teams),
    owned
      ? h('div', { class: 'field field-check' }, owned,
        h('label', { for: id('owned'), text: 'Members of the entity’s teams may execute it (ownedByTeam)' }))
      : null,
    h('div', { class: 'field' },
      h('label', { for: id('policy'), text: 'Policy (JSON: queries and jq conditions; empty for none)' }), policy),
  );
  const read = () => {
    const out = {
      users: list(users.value),
      roles: ROLES.filter((_, index) => roles[index].checked),
      teams: list(teams.value),
    };
    const text = policy.value.trim();
    try {
      out.policy = text === '' ? null : JSON.parse(text);
    } catch {
      throw new Error(`${kind}.policy: not valid JSON.`);
    }
    if (owned) out.ownedByTeam = owned.checked;
    return out;
  };
  return { element, read };
}

export function permissionsView(main, { params }) {
  const identifier = params[0];
  document.title = `Permissions of ${identifier} · portd`;
  const controller = new AbortController();
  const { signal } = controller;
  const admin = isAdmin();
  const error = errorBox('permissions-error');
  const holder = h('div', {}, h('p', { class: 'muted', text: 'Loading…' }));
  main.append(
    h('nav', { class: 'breadcrumb', 'aria-label': 'Breadcrumb' },
      h('a', { href: '/actions', text: 'Actions' }),
      h('span', { 'aria-hidden': 'true', text: ' / ' }),
      h('a', { href: `/actions/${enc(identifier)}`, text: identifier }),
      h('span', { 'aria-hidden': 'true', text: ' / ' }),
      h('span', { 'aria-current': 'page', text: 'Permissions' })),
    ...pageHead(`Permissions of ${identifier}`, 'Who may execute this action and who may approve its runs. A person is admitted when a grant names them (user, role or team) or its policy admits them.'),
    error,
    holder,
  );

  api('GET', `/actions/${enc(identifier)}/permissions`, undefined, { signal })
    .then((data) => {
      const permissions = data.permissions || {};
      const execute = grantFields('execute', permissions.execute || {}, admin);
      const approve = grantFields('approve', permissions.approve || {}, admin);
      const saveError = errorBox('permissions-save-error');
      const save = h('button', { id: 'permissions-save', type: 'submit', class: 'button button-primary', text: 'Save permissions' });
      const form = h('form', { id: 'permissions-form', novalidate: true },
        section('execute-grant', 'Execute', execute.element),
        section('approve-grant', 'Approve', approve.element),
        saveError,
        admin ? h('div', { class: 'actions-row' }, save) : h('p', { class: 'muted', text: 'Only Admins change permissions.' }));
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        showError(saveError, null);
        let body;
        try {
          body = { execute: execute.read(), approve: approve.read() };
        } catch (e) {
          showError(saveError, e);
          return;
        }
        save.disabled = true;
        try {
          await api('PATCH', `/actions/${enc(identifier)}/permissions`, body, { signal });
          announce('The permissions were saved.');
          save.textContent = 'Saved';
          setTimeout(() => {
            save.textContent = 'Save permissions';
          }, 1500);
        } catch (e) {
          if (e.name !== 'AbortError') showError(saveError, e);
        } finally {
          save.disabled = false;
        }
      });
      setChildren(holder, form);
    })
    .catch((e) => {
      if (e.name === 'AbortError') return;
      setChildren(holder);
      showError(error, e);
    });
  return () => controller.abort();
}
