// Actions: the list of self-service actions, and one action's form, generated from its
// `userInputs`, that executes it and opens the new run's page.

import { api, enc, isAdmin } from '../api.js';
import { errorBox, h, setChildren, showError } from '../dom.js';
import { NO, executableActions, mayExecute, permissionsOf } from './access.js';

function operationTag(operation) {
  return h('span', { class: `tag tag-op-${String(operation).toLowerCase()}`, text: operation });
}

export function actionsView(main) {
  document.title = 'Actions · portd';
  const controller = new AbortController();
  const body = h('div', { id: 'actions-list' }, h('p', { class: 'muted', text: 'Loading…' }));
  const error = errorBox('actions-error');
  main.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1', text: 'Actions' })),
    error,
    h('section', { class: 'card', 'aria-label': 'Self-service actions' }, body),
  );

  api('GET', '/actions', undefined, { signal: controller.signal })
    .then(async (data) => {
      const all = (data.actions || [])
        .filter((a) => a.trigger && a.trigger.type === 'self-service')
        .sort((a, b) => (a.title || a.identifier).localeCompare(b.title || b.identifier));
      // Only what the signed-in person may run is offered.
      const actions = await executableActions(all, controller.signal);
      if (actions.length === 0) {
        setChildren(
          body,
          h('p', {
            class: 'empty',
            text:
              all.length === 0
                ? 'No self-service actions yet. Create one with POST /v1/actions (see the README).'
                : 'There is no action you may run. Ask an admin for permission.',
          }),
        );
        return;
      }
      setChildren(
        body,
        h(
          'ul',
          { class: 'action-list' },
          actions.map((action) =>
            h(
              'li',
              { class: 'action-item' },
              h(
                'div',
                { class: 'action-item-head' },
                h('a', {
                  href: `/actions/${enc(action.identifier)}`,
                  class: 'action-link',
                  text: action.title || action.identifier,
                }),
                operationTag(action.trigger.operation),
              ),
              h(
                'p',
                { class: 'muted small' },
                h('code', { text: action.identifier }),
                action.trigger.blueprintIdentifier
                  ? ` · blueprint ${action.trigger.blueprintIdentifier}`
                  : null,
              ),
              action.description ? h('p', { class: 'action-description', text: action.description }) : null,
            ),
          ),
        ),
      );
    })
    .catch((e) => {
      if (e.name === 'AbortError') return;
      setChildren(body);
      showError(error, e);
    });

  return () => controller.abort();
}

/** The input's type as the form sees it. */
function kindOf(schema) {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  if (type === 'string' && schema.format === 'entity') return 'entity';
  if (Array.isArray(schema.enum) && schema.enum.length > 0 && (type === 'string' || type === 'number' || type === 'integer' || type === undefined)) {
    return 'enum';
  }
  if (type === 'number' || type === 'integer') return type;
  if (type === 'boolean') return 'boolean';
  if (type === 'array' || type === 'object') return 'json';
  if (type === 'string' && schema.format === 'multi-line') return 'multiline';
  return 'string';
}

/** One generated field: its element, and how to read its value (`undefined` = omit). */
function inputField(key, schema, required, id = `input-${key.replace(/[^A-Za-z0-9_-]/g, '_')}`) {
  const helpId = `${id}-help`;
  const kind = kindOf(schema);
  const title = schema.title || key;
  const help = [];
  if (schema.description) help.push(schema.description);
  if (kind === 'entity' && !schema.description) {
    help.push(
      schema.blueprint
        ? `The identifier of a ${schema.blueprint} entity.`
        : 'The identifier of an entity.',
    );
  }
  if (kind === 'json') help.push(`JSON ${schema.type === 'array' ? 'array' : 'object'}.`);
  const describedBy = help.length > 0 ? helpId : null;
  const common = {
    id,
    name: key,
    'aria-describedby': describedBy,
    'aria-required': required ? 'true' : null,
  };
  const hasDefault = schema.default !== undefined && schema.default !== null;

  let control;
  let read;
  switch (kind) {
    case 'enum': {
      control = h(
        'select',
        common,
        required && !hasDefault ? h('option', { value: '', text: 'Choose…' }) : null,
        required ? null : h('option', { value: '', text: '(none)' }),
        schema.enum.map((value, index) =>
          h('option', {
            value: String(index),
            text: String(value),
            selected: hasDefault && value === schema.default,
          }),
        ),
      );
      read = () => (control.value === '' ? undefined : schema.enum[Number(control.value)]);
      break;
    }
    case 'number':
    case 'integer': {
      control = h('input', {
        ...common,
        type: 'number',
        inputmode: kind === 'integer' ? 'numeric' : 'decimal',
        step: kind === 'integer' ? '1' : 'any',
        min: schema.minimum,
        max: schema.maximum,
        value: hasDefault ? String(schema.default) : null,
      });
      read = () => {
        const raw = control.value.trim();
        if (raw === '') {
          if (control.validity && control.validity.badInput) {
            throw new Error(`${title}: enter a number.`);
          }
          return undefined;
        }
        const value = Number(raw);
        if (!Number.isFinite(value)) throw new Error(`${title}: enter a number.`);
        return value;
      };
      break;
    }
    case 'boolean': {
      control = h('input', { ...common, type: 'checkbox', checked: schema.default === true });
      read = () => control.checked;
      break;
    }
    case 'json': {
      control = h('textarea', {
        ...common,
        rows: '4',
        spellcheck: 'false',
        class: 'mono',
        placeholder: schema.type === 'array' ? '[]' : '{}',
      });
      if (hasDefault) control.value = JSON.stringify(schema.default, null, 2);
      read = () => {
        const raw = control.value.trim();
        if (raw === '') return undefined;
        try {
          return JSON.parse(raw);
        } catch {
          throw new Error(`${title}: not valid JSON.`);
        }
      };
      break;
    }
    case 'multiline': {
      control = h('textarea', { ...common, rows: '4' });
      if (hasDefault) control.value = String(schema.default);
      read = () => (control.value === '' ? undefined : control.value);
      break;
    }
    default: {
      control = h('input', {
        ...common,
        type: schema.format === 'email' ? 'email' : schema.format === 'url' ? 'url' : 'text',
        autocomplete: 'off',
        spellcheck: kind === 'entity' ? 'false' : null,
        value: hasDefault && typeof schema.default === 'string' ? schema.default : null,
      });
      read = () => (control.value === '' ? undefined : control.value);
    }
  }

  const label = h(
    'label',
    { for: id },
    title,
    required ? h('span', { class: 'required', 'aria-hidden': 'true', text: ' *' }) : null,
    required ? h('span', { class: 'visually-hidden', text: ' (required)' }) : null,
  );
  const helpText = describedBy ? h('p', { id: helpId, class: 'help', text: help.join(' ') }) : null;
  const wrapper =
    kind === 'boolean'
      ? h('div', { class: 'field field-check' }, control, label, helpText)
      : h('div', { class: 'field' }, label, control, helpText);
  return { element: wrapper, read, control };
}

/** The form's property keys: `order` first (when given), then the rest as defined. */
function orderedKeys(userInputs) {
  const properties = userInputs.properties || {};
  const keys = Object.keys(properties);
  const order = Array.isArray(userInputs.order) ? userInputs.order.filter((k) => keys.includes(k)) : [];
  return [...order, ...keys.filter((k) => !order.includes(k))];
}

export function actionFormView(main, { params, navigate }) {
  const identifier = params[0];
  document.title = `${identifier} · portd`;
  const controller = new AbortController();
  const title = h('h1', { tabindex: '-1', text: identifier });
  const intro = h('div', { class: 'action-intro' });
  const loadError = errorBox('action-load-error');
  const holder = h('div', {});
  main.append(
    h(
      'nav',
      { class: 'breadcrumb', 'aria-label': 'Breadcrumb' },
      h('a', { href: '/actions', text: 'Actions' }),
      h('span', { 'aria-hidden': 'true', text: ' / ' }),
      h('span', { 'aria-current': 'page', text: identifier }),
    ),
    title,
    intro,
    loadError,
    holder,
  );

  api('GET', `/actions/${enc(identifier)}`, undefined, { signal: controller.signal })
    .then(async (data) => {
      const action = data.action;
      title.textContent = action.title || action.identifier;
      document.title = `${title.textContent} · portd`;
      const trigger = action.trigger || {};
      setChildren(
        intro,
        h(
          'p',
          { class: 'muted' },
          h('code', { text: action.identifier }),
          ' ',
          trigger.operation ? h('span', { class: 'tag', text: trigger.operation }) : null,
          trigger.blueprintIdentifier ? ` · blueprint ${trigger.blueprintIdentifier}` : null,
        ),
        action.description ? h('p', { text: action.description }) : null,
      );
      if (trigger.type === 'automation') {
        // Nobody executes an automation: its page shows what starts it and its runs.
        navigate(`/automations/${enc(action.identifier)}`, { replace: true });
        return;
      }
      if (trigger.type !== 'self-service') {
        showError(loadError, new Error('This action cannot be executed from a form.'));
        return;
      }
      if (isAdmin()) {
        intro.append(
          h('p', {}, h('a', { id: 'permissions-link', href: `/actions/${enc(action.identifier)}/permissions`, text: 'Permissions' })),
        );
      }
      const permissions = await permissionsOf(action.identifier, controller.signal);
      if (permissions !== null && mayExecute(permissions, action) === NO) {
        setChildren(
          holder,
          h('p', { id: 'not-permitted', class: 'notice', text: 'You may not run this action. Ask an admin for permission.' }),
        );
        return;
      }
      setChildren(holder, buildForm(action, trigger, controller.signal, navigate));
    })
    .catch((e) => {
      if (e.name === 'AbortError') return;
      if (e.status === 404) title.textContent = 'Action not found';
      showError(loadError, e);
    });

  return () => controller.abort();
}

function buildForm(action, trigger, signal, navigate) {
  const userInputs = trigger.userInputs || {};
  const properties = userInputs.properties || {};
  const required = new Set(Array.isArray(userInputs.required) ? userInputs.required : []);
  const fields = [];

  // DAY-2 and DELETE actions of a blueprint run on one of its entities.
  let entityField = null;
  const needsEntity =
    trigger.blueprintIdentifier && (trigger.operation === 'DAY-2' || trigger.operation === 'DELETE');
  if (needsEntity) {
    entityField = inputField(
      'entity',
      {
        type: 'string',
        format: 'entity',
        title: 'Entity',
        blueprint: trigger.blueprintIdentifier,
        description: `The identifier of the ${trigger.blueprintIdentifier} entity to run this action on.`,
      },
      true,
      'run-entity',
    );
    const options = h('datalist', { id: 'entity-options' });
    entityField.control.setAttribute('list', 'entity-options');
    entityField.element.append(options);
    api('GET', `/blueprints/${enc(trigger.blueprintIdentifier)}/entities`, undefined, { signal })
      .then((data) => {
        const entities = (data.entities || []).slice(0, 500);
        setChildren(
          options,
          ...entities.map((e) =>
            h('option', { value: e.identifier, text: e.title && e.title !== e.identifier ? e.title : null }),
          ),
        );
      })
      .catch(() => {});
  }

  for (const key of orderedKeys(userInputs)) {
    const schema = properties[key];
    if (!schema || typeof schema !== 'object' || schema.visible === false) continue;
    fields.push({ key, ...inputField(key, schema, required.has(key)) });
  }

  const error = errorBox('form-error');
  const submit = h('button', {
    id: 'execute',
    type: 'submit',
    class: 'button button-primary',
    text: action.trigger && action.trigger.actionCardButtonText ? action.trigger.actionCardButtonText : 'Execute',
  });
  const anyRequired = needsEntity || fields.some((f) => required.has(f.key));
  const form = h(
    'form',
    { id: 'action-form', class: 'card stack action-form', novalidate: true, 'aria-label': `Run ${action.title || action.identifier}` },
    anyRequired
      ? h('p', { class: 'muted small' }, 'Fields marked ', h('span', { class: 'required', text: '*' }), ' are required.')
      : null,
    entityField ? entityField.element : null,
    fields.map((f) => f.element),
    fields.length === 0 && !entityField ? h('p', { class: 'muted', text: 'This action takes no inputs.' }) : null,
    error,
    h('div', { class: 'actions-row' }, submit),
  );

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    showError(error, null);
    const body = { properties: {} };
    try {
      for (const f of fields) {
        const value = f.read();
        if (value !== undefined) body.properties[f.key] = value;
      }
      if (entityField) {
        const entity = entityField.read();
        if (entity !== undefined) body.entity = entity.trim();
      }
    } catch (e) {
      showError(error, e);
      return;
    }
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      const data = await api('POST', `/actions/${enc(action.identifier)}/runs`, body, { signal });
      navigate(`/runs/${enc(data.run.id)}`);
    } catch (e) {
      if (e.name === 'AbortError') return;
      showError(error, e);
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });
  return form;
}
