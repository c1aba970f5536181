// Rows of run tables (the runs list, an automation's runs): a row per run, made once,
// updated in place as the run changes, opened with a click anywhere but a link.

import { enc } from '../api.js';
import { formatDuration, h, runDuration, setChildren, statusBadge } from '../dom.js';

/** Opens the run's page on a click on `tr` that is not on a link or a text selection. */
export function opensRun(tr, run, navigate) {
  tr.addEventListener('click', (event) => {
    if (event.target.closest('a') || String(window.getSelection() || '')) return;
    navigate(`/runs/${enc(run.id)}`);
  });
  return { tr, key: null };
}

/**
 * Shows the run's status (badge and label, in the first cell) when it changed, and its
 * duration in cell `durationCell`. `labelClass` is the label's class.
 */
export function updateRunRow(entry, run, durationCell, labelClass) {
  const key = `${run.status}|${run.statusLabel || ''}|${run.endedAt || ''}`;
  if (entry.key !== key) {
    entry.key = key;
    entry.tr.dataset.status = run.status;
    setChildren(
      entry.tr.cells[0],
      statusBadge(run.status),
      run.statusLabel ? h('span', { class: labelClass, text: run.statusLabel }) : null,
    );
  }
  entry.tr.cells[durationCell].textContent = formatDuration(runDuration(run));
}

/**
 * Puts `runs` in `tbody`, in order: `rows` (run id → entry) keeps each run's row, made
 * by `makeRow` and refreshed by `updateRow`; rows of runs no longer shown go.
 */
export function renderRunRows(tbody, rows, runs, makeRow, updateRow) {
  const seen = new Set();
  runs.forEach((run, index) => {
    seen.add(run.id);
    let entry = rows.get(run.id);
    if (!entry) {
      entry = makeRow(run);
      rows.set(run.id, entry);
    }
    updateRow(entry, run);
    // Only rows that are new or out of place move, so a focused link keeps focus.
    if (tbody.children[index] !== entry.tr) tbody.insertBefore(entry.tr, tbody.children[index] || null);
  });
  for (const [id, entry] of rows) {
    if (!seen.has(id)) {
      entry.tr.remove();
      rows.delete(id);
    }
  }
}
