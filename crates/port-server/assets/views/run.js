// The run page: status, timings, inputs, links, summary, the live log, affected
// entities, delivery attempts, and approve/decline while the run waits.

import { api, enc, followRunLog, query } from '../api.js';
import {
  announce,
  displayValue,
  errorBox,
  formatDuration,
  h,
  isActive,
  isWebUrl,
  runDuration,
  section,
  setChildren,
  showError,
  statusBadge,
  statusLabel,
  timeElement,
} from '../dom.js';
import { markdownFragment } from '../markdown.js';
import { NO, mayDecide, permissionsOf } from './access.js';

/** How often entities and deliveries are read again while the run is active. */
const SIDE_POLL_MS = 4000;

const STREAM_STATES = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  ended: 'Complete',
};

function detailRow(term, ...value) {
  return [h('dt', { text: term }), h('dd', {}, ...value)];
}

function reference(ref) {
  if (!ref) return h('span', { class: 'muted', text: '—' });
  const label = ref.title && ref.title !== ref.identifier ? `${ref.title} ` : '';
  return h(
    'span',
    {},
    label,
    h('code', { text: ref.identifier }),
    ref.deleted ? h('span', { class: 'muted', text: ' (deleted)' }) : null,
  );
}

export function runView(main, { params }) {
  const runId = params[0];
  document.title = `Run ${runId} · portd`;
  const controller = new AbortController();
  const { signal } = controller;
  let run = null;
  let stopStream = null;
  let sideTimer = null;
  let ticker = null;
  let lastSeq = 0;
  let ended = false;
  const shown = { status: null, label: null, summary: null, links: null };

  // --- Head ---------------------------------------------------------------------------
  const title = h('h1', { id: 'run-title', tabindex: '-1', text: 'Run' });
  const statusBox = h('div', {
    id: 'run-status',
    class: 'run-status',
    role: 'status',
    'aria-live': 'polite',
    'aria-atomic': 'true',
    tabindex: '-1',
  });
  const head = h(
    'header',
    { class: 'run-head' },
    h('div', { class: 'run-head-text' }, title, h('p', { class: 'mono muted small', text: runId })),
    statusBox,
  );
  const loadError = errorBox('run-error');

  // --- Approval -------------------------------------------------------------------------
  const reason = h('textarea', { id: 'approval-reason', rows: '2', maxlength: '1000' });
  const approve = h('button', {
    id: 'approve',
    type: 'button',
    class: 'button button-primary',
    text: 'Approve',
  });
  const decline = h('button', {
    id: 'decline',
    type: 'button',
    class: 'button button-danger',
    text: 'Decline',
  });
  const approvalError = errorBox('approval-error');
  const approvalSection = section(
    'run-approval',
    'Approval',
    h('p', { text: 'This run waits for approval: it is delivered once approved.' }),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'approval-reason', text: 'Reason (optional)' }),
      reason,
    ),
    approvalError,
    h('div', { class: 'actions-row' }, approve, decline),
  );
  approvalSection.hidden = true;
  approvalSection.classList.add('card-attention');

  async function decide(decision) {
    approve.disabled = true;
    decline.disabled = true;
    showError(approvalError, null);
    try {
      const body = { status: decision };
      if (reason.value.trim()) body.description = reason.value.trim();
      const data = await api('PATCH', `/actions/runs/${enc(runId)}/approval?version=v2`, body, {
        signal,
      });
      renderRun(data.run);
      announce(decision === 'APPROVE' ? 'The run was approved.' : 'The run was declined.');
      statusBox.focus();
    } catch (error) {
      if (error.name !== 'AbortError') showError(approvalError, error);
    } finally {
      approve.disabled = false;
      decline.disabled = false;
    }
  }
  approve.addEventListener('click', () => decide('APPROVE'));
  decline.addEventListener('click', () => decide('DECLINE'));

  // Approve and decline are offered only to whom may decide: read the action's
  // permissions and the run's approvers (designated ones still pending) each time the
  // waiting run changes.
  let approvalCheckedFor = null;
  async function checkApprover(waitingRun) {
    approvalSection.dataset.checked = 'false';
    try {
      const [permissions, approvers] = await Promise.all([
        permissionsOf(waitingRun.action && waitingRun.action.identifier, signal),
        api('GET', `/actions/runs/${enc(runId)}/approvers${query({ include_pending_approvers: 'true' })}`, undefined, { signal })
          .then((data) => data.approvers || [])
          .catch((e) => {
            if (e.name === 'AbortError') throw e;
            return [];
          }),
      ]);
      if (run === null || run.status !== 'WAITING_FOR_APPROVAL') return;
      // Unreadable permissions: offer the buttons and let the server answer.
      approvalSection.hidden = permissions !== null && mayDecide(permissions, waitingRun, approvers) === NO;
    } catch (e) {
      if (e.name !== 'AbortError') approvalSection.hidden = false;
    }
    approvalSection.dataset.checked = 'true';
  }

  // --- Summary, links, details, inputs -------------------------------------------------
  const summary = h('div', { id: 'run-summary', class: 'markdown' });
  const summarySection = section('run-summary-section', 'Summary', summary);
  summarySection.hidden = true;

  const links = h('ul', { id: 'run-links', class: 'links' });
  const linksSection = section('run-links-section', 'Links', links);
  linksSection.hidden = true;

  const details = h('dl', { id: 'run-details-list', class: 'details' });
  const detailsSection = section('run-details', 'Details', details);
  const endedCell = h('span', { id: 'run-ended' });
  const durationCell = h('span', { id: 'run-duration' });
  const externalCell = h('span', { id: 'run-external' });

  const inputs = h('dl', { id: 'run-inputs', class: 'details' });
  const inputsSection = section('run-inputs-section', 'Inputs', inputs);

  // --- Log ------------------------------------------------------------------------------
  const streamState = h('span', {
    id: 'log-state',
    class: 'stream-state',
    'data-state': 'connecting',
    text: STREAM_STATES.connecting,
  });
  const logLines = h('ol', { id: 'log-lines', class: 'log-lines' });
  const logEmpty = h('p', { class: 'muted log-empty', text: 'No log lines yet.' });
  const logBox = h(
    'div',
    {
      id: 'run-log',
      class: 'log',
      role: 'log',
      'aria-live': 'polite',
      'aria-relevant': 'additions',
      'aria-labelledby': 'run-log-title',
      tabindex: '0',
    },
    logEmpty,
    logLines,
  );
  const jump = h('button', {
    id: 'log-jump',
    type: 'button',
    class: 'button button-small jump',
    text: 'Jump to the latest line',
    hidden: true,
  });
  const logSection = h(
    'section',
    { id: 'run-log-section', class: 'card', 'aria-labelledby': 'run-log-title' },
    h(
      'div',
      { class: 'section-head' },
      h('h2', { id: 'run-log-title', text: 'Log' }),
      streamState,
    ),
    logBox,
    jump,
  );

  // Follows the end of the log unless the reader scrolled up; scrolling back to the
  // bottom (or the button) follows again.
  let follow = true;
  let pinnedTop = 0;
  const toBottom = () => {
    logBox.scrollTop = logBox.scrollHeight;
    pinnedTop = logBox.scrollTop;
  };
  logBox.addEventListener('scroll', () => {
    const atBottom = logBox.scrollHeight - logBox.clientHeight - logBox.scrollTop <= 8;
    if (atBottom) follow = true;
    else if (logBox.scrollTop < pinnedTop - 2) follow = false;
    if (follow) pinnedTop = logBox.scrollTop;
    jump.hidden = follow;
  });
  jump.addEventListener('click', () => {
    follow = true;
    toBottom();
    jump.hidden = true;
    logBox.focus();
  });

  function appendLog(line, seq) {
    if (Number.isFinite(seq)) {
      if (seq <= lastSeq) return; // already shown (a resumed stream never repeats, but be sure)
      lastSeq = seq;
    }
    logEmpty.hidden = true;
    logLines.append(
      h(
        'li',
        { 'data-seq': Number.isFinite(seq) ? seq : null },
        timeElement(line.createdAt, { timeOnly: true }),
        h('span', { class: 'log-message', text: line.message ?? '' }),
      ),
    );
    if (follow) toBottom();
    else jump.hidden = false;
  }

  // --- Entities and deliveries ----------------------------------------------------------
  const entities = h('div', { id: 'run-entities' }, h('p', { class: 'muted', text: 'Loading…' }));
  const entitiesSection = section('run-entities-section', 'Affected entities', entities);
  const deliveries = h('div', { id: 'run-deliveries' }, h('p', { class: 'muted', text: 'Loading…' }));
  const deliveriesSection = section('run-deliveries-section', 'Delivery attempts', deliveries);

  function table(caption, headers, rows) {
    return h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table' },
        h('caption', { class: 'visually-hidden', text: caption }),
        h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col', text: t })))),
        h('tbody', {}, rows),
      ),
    );
  }

  function renderEntities(result) {
    if (result.status === 'rejected') {
      setChildren(entities, h('p', { class: 'error', text: result.reason.message }));
      return;
    }
    const audits = result.value.audits || [];
    if (audits.length === 0) {
      setChildren(
        entities,
        h('p', { class: 'muted', text: 'No entity was created, changed or deleted by this run.' }),
      );
      return;
    }
    setChildren(
      entities,
      table(
        'Entities this run changed',
        ['Entity', 'Blueprint', 'Change', 'When'],
        audits.map((audit) => {
          const entityTitle = audit.diff && typeof audit.diff.title === 'string' ? audit.diff.title : null;
          return h(
            'tr',
            {},
            h(
              'td',
              {},
              entityTitle ? `${entityTitle} ` : null,
              h('code', { text: audit.identifier }),
            ),
            h('td', {}, h('code', { text: (audit.context && audit.context.blueprint) || '' })),
            h('td', {}, h('span', { class: `tag tag-${String(audit.action).toLowerCase()}`, text: audit.action })),
            h('td', {}, timeElement(audit.trigger && audit.trigger.at)),
          );
        }),
      ),
    );
  }

  function statusCodeCell(attempt) {
    if (attempt.statusCode === null || attempt.statusCode === undefined) {
      return h('span', { class: 'muted', text: attempt.endedAt ? 'none' : 'sending…' });
    }
    const good = attempt.statusCode >= 200 && attempt.statusCode < 300;
    return h('span', {
      class: `code-pill ${good ? 'code-good' : 'code-bad'}`,
      text: String(attempt.statusCode),
    });
  }

  function renderDeliveries(result) {
    if (result.status === 'rejected') {
      setChildren(deliveries, h('p', { class: 'error', text: result.reason.message }));
      return;
    }
    const list = result.value.deliveries || [];
    if (list.length === 0) {
      setChildren(
        deliveries,
        h('p', {
          class: 'muted',
          text:
            run && run.status === 'WAITING_FOR_APPROVAL'
              ? 'Nothing is sent before the run is approved.'
              : 'No delivery yet.',
        }),
      );
      return;
    }
    setChildren(
      deliveries,
      ...list.map((delivery) =>
        h(
          'div',
          { class: 'delivery' },
          h(
            'p',
            { class: 'delivery-head' },
            h('span', { class: 'tag', text: delivery.mode }),
            ' ',
            h('span', { class: `tag tag-${String(delivery.state).toLowerCase()}`, text: delivery.state }),
            ' ',
            h('span', {
              class: 'muted small',
              text: `${delivery.attemptCount} attempt${delivery.attemptCount === 1 ? '' : 's'}`,
            }),
            delivery.nextAttemptAt && delivery.state === 'PENDING'
              ? h('span', { class: 'muted small' }, ' · next at ', timeElement(delivery.nextAttemptAt, { timeOnly: true }))
              : null,
          ),
          delivery.attempts && delivery.attempts.length > 0
            ? table(
                'Attempts of this delivery',
                ['#', 'Started', 'Status', 'Latency', 'Error'],
                delivery.attempts.map((attempt) =>
                  h(
                    'tr',
                    {},
                    h('td', { text: String(attempt.number) }),
                    h('td', {}, timeElement(attempt.startedAt, { timeOnly: true })),
                    h('td', { class: 'delivery-status' }, statusCodeCell(attempt)),
                    h('td', {
                      class: 'delivery-latency',
                      text:
                        attempt.durationMs === null || attempt.durationMs === undefined
                          ? '—'
                          : `${attempt.durationMs} ms`,
                    }),
                    h('td', { class: 'wrap', text: attempt.error || '' }),
                  ),
                ),
              )
            : null,
        ),
      ),
    );
  }

  // One read at a time; a call while one is in flight asks for another right after.
  let sideBusy = false;
  let sideAgain = false;
  async function refreshSide() {
    clearTimeout(sideTimer);
    if (sideBusy) {
      sideAgain = true;
      return;
    }
    sideBusy = true;
    const [audit, delivered] = await Promise.allSettled([
      api('GET', `/audit-log${query({ run_id: runId })}`, undefined, { signal }),
      api('GET', `/actions/runs/${enc(runId)}/deliveries`, undefined, { signal }),
    ]);
    sideBusy = false;
    if (signal.aborted) return;
    renderEntities(audit);
    renderDeliveries(delivered);
    if (sideAgain) {
      sideAgain = false;
      refreshSide();
    } else if (!ended) {
      sideTimer = setTimeout(refreshSide, SIDE_POLL_MS);
    }
  }

  // --- The run ----------------------------------------------------------------------------
  function renderDetails() {
    const action = run.action || {};
    // An automation's runs link to the automation's page (it has no form).
    const actionPage = run.source === 'AUTOMATION' ? '/automations/' : '/actions/';
    const actionLink = action.deleted
      ? reference(action)
      : h('a', { href: `${actionPage}${enc(action.identifier)}` }, action.title || action.identifier);
    setChildren(
      details,
      ...detailRow('Action', actionLink),
      ...(run.blueprint ? detailRow('Blueprint', reference(run.blueprint)) : []),
      ...(run.entity ? detailRow('Entity', reference(run.entity)) : []),
      ...detailRow('Source', run.source || '—'),
      ...detailRow('Created', timeElement(run.createdAt)),
      ...detailRow('Ended', endedCell),
      ...detailRow('Duration', durationCell),
      ...detailRow('Created by', h('span', { class: 'mono wrap', text: run.createdBy || '—' })),
      ...detailRow('External run id', externalCell),
    );
    const properties = Object.entries(run.properties || {});
    setChildren(
      inputs,
      ...(properties.length === 0
        ? [h('p', { class: 'muted', text: 'This run has no inputs.' })]
        : properties.flatMap(([key, value]) =>
            detailRow(
              key,
              value !== null && typeof value === 'object'
                ? h('pre', { class: 'value', text: displayValue(value) })
                : typeof value === 'string'
                  ? value
                  : h('code', { text: displayValue(value) }),
            ),
          )),
    );
  }

  function tick() {
    if (run) durationCell.textContent = formatDuration(runDuration(run));
  }

  /** Whether `next` is an older picture of the run than the one shown: an answer (the
   * approval's, say) can arrive after the stream already showed what came next, even
   * the run's end, and must not take the page back. */
  function isStale(next) {
    if (run === null) return false;
    if (!isActive(run.status) && isActive(next.status)) return true;
    return typeof next.updatedAt === 'string' && typeof run.updatedAt === 'string'
      && Date.parse(next.updatedAt) < Date.parse(run.updatedAt);
  }

  function renderRun(next) {
    if (!next || (run && next.id !== run.id) || isStale(next)) return;
    const first = run === null;
    run = next;
    const name = (run.action && (run.action.title || run.action.identifier)) || 'Run';
    title.textContent = name;
    document.title = `${name} · ${statusLabel(run.status)} · portd`;
    head.dataset.status = run.status;
    if (first) renderDetails();

    if (shown.status !== run.status || shown.label !== (run.statusLabel || null)) {
      // A new status may come with new deliveries (an approval) or entities.
      if (shown.status !== null && shown.status !== run.status) refreshSide();
      shown.status = run.status;
      shown.label = run.statusLabel || null;
      setChildren(
        statusBox,
        statusBadge(run.status),
        run.statusLabel
          ? h('span', { id: 'run-status-label', class: 'status-label', text: run.statusLabel })
          : null,
      );
    }
    setChildren(endedCell, timeElement(run.endedAt));
    externalCell.textContent = run.externalRunId || '—';
    tick();

    const waiting = run.status === 'WAITING_FOR_APPROVAL';
    if (!waiting) {
      approvalSection.hidden = true;
    } else if (approvalCheckedFor !== run.updatedAt) {
      approvalCheckedFor = run.updatedAt;
      checkApprover(run);
    }

    const summaryText = typeof run.summary === 'string' ? run.summary : '';
    if (shown.summary !== summaryText) {
      shown.summary = summaryText;
      setChildren(summary, markdownFragment(summaryText));
      summarySection.hidden = summaryText.trim() === '';
    }

    const linkList = Array.isArray(run.link) ? run.link.filter((l) => typeof l === 'string') : [];
    const linkKey = JSON.stringify(linkList);
    if (shown.links !== linkKey) {
      shown.links = linkKey;
      setChildren(
        links,
        ...linkList.map((url) =>
          h(
            'li',
            {},
            isWebUrl(url)
              ? h('a', { href: url, rel: 'noopener noreferrer', text: url })
              : h('span', { text: url }),
          ),
        ),
      );
      linksSection.hidden = linkList.length === 0;
    }

    if (!isActive(run.status)) {
      clearInterval(ticker);
      ticker = null;
    } else if (ticker === null) {
      ticker = setInterval(tick, 1000);
    }
  }

  // --- Layout -------------------------------------------------------------------------------
  main.append(
    h(
      'nav',
      { class: 'breadcrumb', 'aria-label': 'Breadcrumb' },
      h('a', { href: '/', text: 'Runs' }),
      h('span', { 'aria-hidden': 'true', text: ' / ' }),
      h('span', { 'aria-current': 'page', class: 'mono', text: runId }),
    ),
    head,
    loadError,
    h(
      'div',
      { class: 'run-grid' },
      h(
        'div',
        { class: 'run-main' },
        approvalSection,
        summarySection,
        logSection,
        entitiesSection,
        deliveriesSection,
      ),
      h('div', { class: 'run-side' }, detailsSection, linksSection, inputsSection),
    ),
  );

  (async () => {
    try {
      const data = await api('GET', `/actions/runs/${enc(runId)}?version=v2`, undefined, { signal });
      renderRun(data.run);
    } catch (error) {
      if (error.name === 'AbortError') return;
      showError(loadError, error);
      if (error.status === 404) {
        title.textContent = 'Run not found';
        document.title = 'Run not found · portd';
        streamState.textContent = '';
        return;
      }
    }
    stopStream = followRunLog(runId, {
      onLog: appendLog,
      onStatus: renderRun,
      onEnd: (final) => {
        renderRun(final);
        ended = true;
        refreshSide();
      },
      onState: (state) => {
        streamState.dataset.state = state;
        streamState.textContent = STREAM_STATES[state] || state;
      },
      onError: (error) => showError(loadError, error),
    });
    refreshSide();
  })();

  return () => {
    controller.abort();
    if (stopStream) stopStream();
    clearTimeout(sideTimer);
    clearInterval(ticker);
  };
}
