// The runs list: newest first, filtered by action, entity, status and source, paged
// with the API's `next` cursor, and refreshed every few seconds.

import { api, enc, query } from '../api.js';
import {
  SOURCES,
  STATUSES,
  announce,
  errorBox,
  h,
  setChildren,
  showError,
  timeElement,
} from '../dom.js';
import { opensRun, renderRunRows, updateRunRow } from './run_rows.js';

const POLL_MS = 3000;
const PAGE_SIZE = 25;

function field(id, label, control) {
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), control);
}

export function runsView(main, { navigate, search }) {
  document.title = 'Runs · portd';
  const filters = {
    action: search.get('action') || '',
    entity: search.get('entity') || '',
    status: search.get('status') || '',
    source: search.get('source') || '',
  };
  const before = search.get('before') || '';
  // `?limit=` changes the page size (and stays in the links this page makes).
  const requested = Number.parseInt(search.get('limit') || '', 10);
  const limit = requested >= 1 && requested <= 1000 ? requested : PAGE_SIZE;
  const keep = limit === PAGE_SIZE ? {} : { limit };
  // The cursors of the pages before this one, newest first page last: "Newer" goes back.
  const pages = history.state && Array.isArray(history.state.pages) ? history.state.pages : [];
  const controller = new AbortController();
  let timer = null;
  let firstLoad = true;

  // --- Filters ----------------------------------------------------------------------------
  const actionOptions = h('datalist', { id: 'filter-action-options' });
  const action = h('input', {
    id: 'filter-action',
    name: 'action',
    list: 'filter-action-options',
    value: filters.action,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'Any action',
  });
  const entity = h('input', {
    id: 'filter-entity',
    name: 'entity',
    value: filters.entity,
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'Any entity',
  });
  const status = h(
    'select',
    { id: 'filter-status', name: 'status' },
    h('option', { value: '', text: 'Any status' }),
    Object.entries(STATUSES).map(([value, s]) =>
      h('option', { value, text: s.label, selected: value === filters.status }),
    ),
  );
  const source = h(
    'select',
    { id: 'filter-source', name: 'source' },
    h('option', { value: '', text: 'Any source' }),
    SOURCES.map((value) => h('option', { value, text: value, selected: value === filters.source })),
  );
  const form = h(
    'form',
    { class: 'filters card', role: 'search', 'aria-label': 'Filter runs' },
    field('filter-action', 'Action', action),
    actionOptions,
    field('filter-entity', 'Entity', entity),
    field('filter-status', 'Status', status),
    field('filter-source', 'Source', source),
    h(
      'div',
      { class: 'filter-buttons' },
      h('button', { type: 'submit', class: 'button button-primary', text: 'Filter' }),
      h('button', {
        type: 'button',
        class: 'button',
        text: 'Clear',
        onclick: () => navigate(`/${query(keep)}`),
      }),
    ),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    navigate(
      `/${query({
        action: action.value.trim(),
        entity: entity.value.trim(),
        status: status.value,
        source: source.value,
        ...keep,
      })}`,
    );
  });

  // --- Table ------------------------------------------------------------------------------
  const tbody = h('tbody', { id: 'runs-body' });
  const tableWrap = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'table runs-table', id: 'runs-table' },
      h('caption', { class: 'visually-hidden', text: 'Runs, newest first' }),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Status', 'Action', 'Entity', 'Source', 'Created', 'Duration'].map((t) =>
            h('th', { scope: 'col', class: `col-${t.toLowerCase()}`, text: t }),
          ),
        ),
      ),
      tbody,
    ),
  );
  const empty = h('p', { id: 'runs-empty', class: 'empty', hidden: true });
  const updated = h('p', { id: 'runs-updated', class: 'muted small' });
  const error = errorBox('runs-error');
  const newer = h('button', {
    id: 'runs-newer',
    type: 'button',
    class: 'button',
    text: '← Newer',
    disabled: !before,
  });
  const older = h('button', {
    id: 'runs-older',
    type: 'button',
    class: 'button',
    text: 'Older →',
    disabled: true,
  });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of runs' }, newer, older);
  let next = null;

  newer.addEventListener('click', () => {
    const previous = pages.length > 0 ? pages[pages.length - 1] : '';
    navigate(`/${query({ ...filters, ...keep, before: previous })}`, {
      state: { pages: pages.slice(0, -1) },
    });
  });
  older.addEventListener('click', () => {
    if (!next) return;
    navigate(`/${query({ ...filters, ...keep, before: next })}`, {
      state: { pages: [...pages, before] },
    });
  });

  const rows = new Map();

  function makeRow(run) {
    const name = (run.action && (run.action.title || run.action.identifier)) || run.id;
    const entityText = run.entity ? run.entity.title || run.entity.identifier : '';
    const tr = h(
      'tr',
      { 'data-run': run.id, class: 'clickable' },
      h('td', { class: 'col-status' }),
      h(
        'td',
        { class: 'col-action' },
        h('a', { href: `/runs/${enc(run.id)}`, class: 'run-link', text: name }),
        h('span', { class: 'mono muted small block', text: run.id }),
      ),
      h(
        'td',
        { class: 'col-entity' },
        entityText || h('span', { class: 'muted', text: '—' }),
        run.blueprint ? h('span', { class: 'muted small block', text: run.blueprint.identifier }) : null,
      ),
      h('td', { class: 'col-source', text: run.source || '' }),
      h('td', { class: 'col-created' }, timeElement(run.createdAt)),
      h('td', { class: 'col-duration' }),
    );
    return opensRun(tr, run, navigate);
  }

  function updateRow(entry, run) {
    updateRunRow(entry, run, 5, 'muted small block');
  }

  function renderRuns(runs) {
    renderRunRows(tbody, rows, runs, makeRow, updateRow);
    const filtered = Object.values(filters).some(Boolean);
    empty.textContent = filtered
      ? 'No runs match these filters.'
      : 'No runs yet. Execute an action to start one.';
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
        `/actions/runs${query({ version: 'v2', ...filters, limit, before })}`,
        undefined,
        { signal: controller.signal },
      );
      const runs = data.runs || [];
      renderRuns(runs);
      next = data.next || null;
      older.disabled = !next;
      showError(error, null);
      setChildren(
        updated,
        'Updated ',
        timeElement(new Date().toISOString(), { timeOnly: true }),
        ` · refreshes every ${POLL_MS / 1000} seconds`,
      );
      if (firstLoad) announce(`${runs.length} run${runs.length === 1 ? '' : 's'} shown.`);
      firstLoad = false;
    } catch (e) {
      if (e.name !== 'AbortError') showError(error, e);
    } finally {
      loading = false;
    }
    if (!controller.signal.aborted) timer = setTimeout(load, POLL_MS);
  }

  const onVisible = () => {
    if (!document.hidden) load();
  };
  document.addEventListener('visibilitychange', onVisible);

  main.append(
    h(
      'div',
      { class: 'page-head' },
      h('h1', { tabindex: '-1', text: 'Runs' }),
      h('a', { class: 'button button-primary', href: '/actions', text: 'Run an action' }),
    ),
    form,
    error,
    h('section', { class: 'card', 'aria-label': 'Runs' }, updated, tableWrap, empty, pager),
  );
  load();

  // The action filter suggests the organization's action identifiers.
  api('GET', '/actions', undefined, { signal: controller.signal })
    .then((data) => {
      const ids = (data.actions || []).map((a) => a.identifier).sort();
      setChildren(actionOptions, ...ids.map((id) => h('option', { value: id })));
    })
    .catch(() => {});

  return () => {
    controller.abort();
    clearTimeout(timer);
    document.removeEventListener('visibilitychange', onVisible);
  };
}
