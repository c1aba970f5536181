// Automations: the organization's automations (actions whose `trigger.type` is
// `automation`), what each watches and when it runs; and one automation's page with its
// trigger and its runs, newest first, refreshed every few seconds.

import { api, enc, query } from '../api.js';
import {
  announce,
  errorBox,
  h,
  section,
  setChildren,
  showError,
  timeElement,
} from '../dom.js';
import { opensRun, renderRunRows, updateRunRow } from './run_rows.js';

const POLL_MS = 3000;
const RUNS_SHOWN = 25;

/** When an automation runs, in words: Port's event types, with what they watch. */
function describe(event) {
  const blueprint = event.blueprintIdentifier ? `a ${event.blueprintIdentifier} entity` : 'an entity';
  const run = event.actionIdentifier ? `a run of ${event.actionIdentifier}` : 'a run';
  switch (event.type) {
    case 'ENTITY_CREATED':
      return `When ${blueprint} is created`;
    case 'ENTITY_UPDATED':
      return `When ${blueprint} is updated`;
    case 'ENTITY_DELETED':
      return `When ${blueprint} is deleted`;
    case 'ANY_ENTITY_CHANGE':
      return `When ${blueprint} is created, updated or deleted`;
    case 'TIMER_PROPERTY_EXPIRED':
      return `When the ${event.propertyIdentifier || 'timer'} property of ${blueprint} expires`;
    case 'RUN_CREATED':
      return `When ${run} is created`;
    case 'RUN_UPDATED':
      return `When ${run} changes`;
    case 'ANY_RUN_CHANGE':
      return `When ${run} is created or changes`;
    default:
      return null;
  }
}

function isAutomation(action) {
  return Boolean(action && action.trigger && action.trigger.type === 'automation');
}

function nameOf(action) {
  return action.title || action.identifier;
}

/** `publish` absent means published, as the automations worker reads it. */
function isPublished(action) {
  return action.publish !== false;
}

function eventOf(action) {
  const event = action.trigger && typeof action.trigger.event === 'object' ? action.trigger.event : null;
  return event || {};
}

function eventTag(type) {
  return h('span', { class: 'tag tag-event', 'data-event': type || '', text: type || 'Unknown event' });
}

function publishedTag(action) {
  return isPublished(action)
    ? h('span', { class: 'tag tag-published', text: 'Published' })
    : h('span', { class: 'tag tag-unpublished', text: 'Unpublished' });
}

/** What the trigger watches: `[term, value]` pairs (blueprint, action, property). */
function watched(event) {
  const rows = [];
  if (event.blueprintIdentifier) rows.push(['Blueprint', h('code', { text: event.blueprintIdentifier })]);
  if (event.actionIdentifier) {
    rows.push([
      'Action',
      h('a', { href: `/actions/${enc(event.actionIdentifier)}` }, h('code', { text: event.actionIdentifier })),
    ]);
  }
  if (event.propertyIdentifier) rows.push(['Property', h('code', { text: event.propertyIdentifier })]);
  return rows;
}

/** The condition: its expressions as code, and how they combine. */
function conditionBlock(trigger) {
  const condition = trigger && typeof trigger.condition === 'object' ? trigger.condition : null;
  const expressions =
    condition && Array.isArray(condition.expressions)
      ? condition.expressions.filter((e) => typeof e === 'string')
      : [];
  if (expressions.length === 0) {
    return h('p', { class: 'condition-none muted small', text: 'No condition: every such event starts a run.' });
  }
  const any = String(condition.combinator || 'and').toLowerCase() === 'or';
  const intro =
    expressions.length === 1
      ? `When this ${condition.type || 'JQ'} expression holds:`
      : `When ${any ? 'any' : 'all'} of these ${condition.type || 'JQ'} expressions hold (${any ? 'or' : 'and'}):`;
  return h(
    'div',
    { class: 'condition' },
    h('p', { class: 'muted small', text: intro }),
    h(
      'ul',
      { class: 'condition-list' },
      expressions.map((expression) => h('li', {}, h('code', { class: 'wrap', text: expression }))),
    ),
  );
}

// --- The list -------------------------------------------------------------------------------

export function automationsView(main) {
  document.title = 'Automations · portd';
  const controller = new AbortController();
  const body = h('div', { id: 'automations-list' }, h('p', { class: 'muted', text: 'Loading…' }));
  const error = errorBox('automations-error');
  main.append(
    h('div', { class: 'page-head' }, h('h1', { tabindex: '-1', text: 'Automations' })),
    h('p', {
      class: 'muted page-intro',
      text: 'Automations run by themselves when the catalog or a run changes; nobody executes them from a form.',
    }),
    error,
    h('section', { class: 'card', 'aria-label': 'Automations' }, body),
  );

  api('GET', `/actions${query({ trigger_type: 'automation' })}`, undefined, { signal: controller.signal })
    .then((data) => {
      const automations = (data.actions || [])
        .filter(isAutomation)
        .sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
      if (automations.length === 0) {
        setChildren(
          body,
          h('p', {
            class: 'empty',
            text: 'No automations yet. Create one with POST /v1/actions and a trigger of type "automation" (see the README).',
          }),
        );
        return;
      }
      setChildren(
        body,
        h(
          'ul',
          { class: 'action-list automation-list' },
          automations.map((automation) => automationItem(automation)),
        ),
      );
      announce(`${automations.length} automation${automations.length === 1 ? '' : 's'} shown.`);
    })
    .catch((e) => {
      if (e.name === 'AbortError') return;
      setChildren(body);
      showError(error, e);
    });

  return () => controller.abort();
}

function automationItem(automation) {
  const event = eventOf(automation);
  const href = `/automations/${enc(automation.identifier)}`;
  const name = nameOf(automation);
  const scope = watched(event);
  return h(
    'li',
    { class: 'action-item automation-item', 'data-automation': automation.identifier },
    h(
      'div',
      { class: 'action-item-head' },
      h('a', { href, class: 'action-link automation-link', text: name }),
      eventTag(event.type),
      publishedTag(automation),
    ),
    h(
      'p',
      { class: 'muted small automation-watches' },
      h('code', { text: automation.identifier }),
      scope.map(([term, value]) => [` · ${term.toLowerCase()} `, value]),
    ),
    describe(event) ? h('p', { class: 'automation-when', text: `${describe(event)}.` }) : null,
    automation.description ? h('p', { class: 'action-description', text: automation.description }) : null,
    conditionBlock(automation.trigger),
    h(
      'p',
      { class: 'small' },
      h(
        'a',
        { href, class: 'automation-runs-link' },
        'Runs',
        h('span', { class: 'visually-hidden', text: ` of ${name}` }),
        h('span', { 'aria-hidden': 'true', text: ' →' }),
      ),
    ),
  );
}

// --- One automation and its runs --------------------------------------------------------------

export function automationView(main, { params, navigate }) {
  const identifier = params[0];
  document.title = `${identifier} · portd`;
  const controller = new AbortController();
  const { signal } = controller;
  let timer = null;
  let firstLoad = true;

  const title = h('h1', { tabindex: '-1', text: identifier });
  const intro = h('div', { class: 'action-intro' });
  const loadError = errorBox('automation-error');

  const trigger = h('dl', { id: 'automation-trigger', class: 'details' });
  const triggerSection = section('automation-trigger-section', 'Trigger', trigger);

  const tbody = h('tbody', { id: 'automation-runs-body' });
  const tableWrap = h(
    'div',
    { class: 'table-wrap', hidden: true },
    h(
      'table',
      { class: 'table runs-table', id: 'automation-runs-table' },
      h('caption', { class: 'visually-hidden', text: `Runs of ${identifier}, newest first` }),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Status', 'Run', 'Created', 'Duration'].map((t) =>
            h('th', { scope: 'col', class: `col-${t.toLowerCase()}`, text: t }),
          ),
        ),
      ),
      tbody,
    ),
  );
  const empty = h('p', { id: 'automation-runs-empty', class: 'empty', hidden: true });
  const updated = h('p', { id: 'automation-runs-updated', class: 'muted small' });
  const more = h(
    'p',
    { class: 'small', id: 'automation-runs-more', hidden: true },
    h(
      'a',
      { href: `/${query({ action: identifier })}` },
      'All runs of this automation in the runs list',
      h('span', { 'aria-hidden': 'true', text: ' →' }),
    ),
  );
  const runsError = errorBox('automation-runs-error');
  const runsSection = section('automation-runs', 'Runs', updated, runsError, tableWrap, empty, more);

  main.append(
    h(
      'nav',
      { class: 'breadcrumb', 'aria-label': 'Breadcrumb' },
      h('a', { href: '/automations', text: 'Automations' }),
      h('span', { 'aria-hidden': 'true', text: ' / ' }),
      h('span', { 'aria-current': 'page', text: identifier }),
    ),
    title,
    intro,
    loadError,
    h(
      'div',
      { class: 'run-grid' },
      h('div', { class: 'run-main' }, runsSection),
      h('div', { class: 'run-side' }, triggerSection),
    ),
  );

  api('GET', `/actions/${enc(identifier)}`, undefined, { signal })
    .then((data) => {
      const automation = data.action;
      if (!isAutomation(automation)) {
        // A self-service action has its own page, with its form.
        navigate(`/actions/${enc(identifier)}`, { replace: true });
        return;
      }
      title.textContent = nameOf(automation);
      document.title = `${title.textContent} · portd`;
      const event = eventOf(automation);
      setChildren(
        intro,
        h(
          'p',
          { class: 'muted' },
          h('code', { text: automation.identifier }),
          ' ',
          eventTag(event.type),
          ' ',
          publishedTag(automation),
        ),
        automation.description ? h('p', { text: automation.description }) : null,
        isPublished(automation)
          ? null
          : h('p', { class: 'notice', text: 'This automation is not published: no event starts it.' }),
      );
      const rows = [
        ['Event', h('code', { text: event.type || '—' })],
        ...(describe(event) ? [['When', describe(event)]] : []),
        ...watched(event),
        ['Published', isPublished(automation) ? 'Yes' : 'No'],
        ['Condition', conditionBlock(automation.trigger)],
      ];
      setChildren(trigger, ...rows.map(([term, value]) => [h('dt', { text: term }), h('dd', {}, value)]));
    })
    .catch((e) => {
      if (e.name === 'AbortError') return;
      if (e.status === 404) {
        title.textContent = 'Automation not found';
        document.title = 'Automation not found · portd';
      }
      showError(loadError, e);
    });

  // --- Runs -----------------------------------------------------------------------------------
  const rows = new Map();

  function makeRow(run) {
    const tr = h(
      'tr',
      { 'data-run': run.id, class: 'clickable' },
      h('td', { class: 'col-status' }),
      h(
        'td',
        { class: 'col-run' },
        h('a', { href: `/runs/${enc(run.id)}`, class: 'run-link mono wrap' }, run.id),
        run.entity
          ? h('span', { class: 'muted small block', text: run.entity.title || run.entity.identifier })
          : null,
      ),
      h('td', { class: 'col-created' }, timeElement(run.createdAt)),
      h('td', { class: 'col-duration' }),
    );
    return opensRun(tr, run, navigate);
  }

  function updateRow(entry, run) {
    updateRunRow(entry, run, 3, 'muted small block run-status-label');
  }

  function renderRuns(runs) {
    renderRunRows(tbody, rows, runs, makeRow, updateRow);
    empty.textContent = 'No runs yet. A run starts when an event this automation watches happens.';
    empty.hidden = runs.length > 0;
    tableWrap.hidden = runs.length === 0;
  }

  let loading = false;
  async function load() {
    clearTimeout(timer);
    // One poll at a time: the one in flight schedules the next.
    if (loading) return;
    if (document.hidden) {
      timer = setTimeout(load, POLL_MS);
      return;
    }
    loading = true;
    try {
      const data = await api(
        'GET',
        `/actions/runs${query({ version: 'v2', action: identifier, limit: RUNS_SHOWN })}`,
        undefined,
        { signal },
      );
      const runs = data.runs || [];
      renderRuns(runs);
      more.hidden = !data.next;
      showError(runsError, null);
      setChildren(
        updated,
        'Updated ',
        timeElement(new Date().toISOString(), { timeOnly: true }),
        ` · refreshes every ${POLL_MS / 1000} seconds`,
      );
      if (firstLoad) announce(`${runs.length} run${runs.length === 1 ? '' : 's'} shown.`);
      firstLoad = false;
    } catch (e) {
      if (e.name !== 'AbortError') showError(runsError, e);
    } finally {
      loading = false;
    }
    if (!signal.aborted) timer = setTimeout(load, POLL_MS);
  }

  const onVisible = () => {
    if (!document.hidden) load();
  };
  document.addEventListener('visibilitychange', onVisible);
  load();

  return () => {
    controller.abort();
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
}
