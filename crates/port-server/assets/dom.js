// Small DOM and formatting helpers shared by the views. Text always goes in as text
// nodes: nothing here parses HTML.

/**
 * Creates an element. `attrs`: `class`, `text`, `on<event>` (functions), booleans
 * (`hidden: true`), anything else as an attribute; `null`/`undefined`/`false` values are
 * skipped. Children: nodes, strings (as text) and arrays of them; null is skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'text') element.textContent = value;
    else if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.append(child);
    else parent.append(document.createTextNode(String(child)));
  }
}

/**
 * Replaces `parent`'s children (same rules as `h`: null and false are skipped, where
 * the DOM's own `replaceChildren` would show them as text).
 */
export function setChildren(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
  return parent;
}

/** Announces a short message to screen readers (the page's polite live region). */
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.textContent = '';
  // A new text node after a tick is announced even when the text repeats.
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/** How each run status is shown: a label and a colour class (never colour alone). */
export const STATUSES = {
  IN_PROGRESS: { label: 'In progress', tone: 'progress' },
  WAITING_FOR_APPROVAL: { label: 'Waiting for approval', tone: 'waiting' },
  SUCCESS: { label: 'Success', tone: 'success' },
  FAILURE: { label: 'Failure', tone: 'failure' },
  DECLINED: { label: 'Declined', tone: 'declined' },
};

export const SOURCES = ['UI', 'API', 'AUTOMATION'];

export function isActive(status) {
  return status === 'IN_PROGRESS' || status === 'WAITING_FOR_APPROVAL';
}

/** A status badge: a coloured pill with a symbol and the status's name. */
export function statusBadge(status) {
  const known = STATUSES[status] || { label: status || 'Unknown', tone: 'unknown' };
  return h(
    'span',
    { class: `badge badge-${known.tone}`, 'data-status': status },
    h('span', { class: 'badge-dot', 'aria-hidden': 'true' }),
    known.label,
  );
}

export function statusLabel(status) {
  return (STATUSES[status] || { label: status || 'Unknown' }).label;
}

function parseTime(value) {
  if (!value) return null;
  const time = new Date(value);
  return Number.isNaN(time.getTime()) ? null : time;
}

/** A `<time>` element with the local date and time, or a dash. */
export function timeElement(value, { timeOnly = false } = {}) {
  const time = parseTime(value);
  if (!time) return h('span', { class: 'muted', text: '—' });
  const text = timeOnly
    ? time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : time.toLocaleString([], {
        year: 'numeric',
        month: 'short',
        day: 'numeric',
        hour: '2-digit',
        minute: '2-digit',
        second: '2-digit',
      });
  return h('time', { datetime: time.toISOString(), title: time.toISOString(), text });
}

/** `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** How long a run has taken: until it ended, or until now while it runs. */
export function runDuration(run, now = Date.now()) {
  const created = parseTime(run.createdAt);
  if (!created) return null;
  const ended = parseTime(run.endedAt);
  return (ended ? ended.getTime() : now) - created.getTime();
}

/** A value for display: strings as they are, anything else as JSON. */
export function displayValue(value) {
  if (typeof value === 'string') return value;
  if (value === undefined) return '';
  return JSON.stringify(value, null, 2);
}

/** Whether a URL may become a link: absolute http(s) only. */
export function isWebUrl(value) {
  if (typeof value !== 'string' || !/^https?:\/\//i.test(value)) return false;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

/** A paragraph for errors (`role="alert"` is announced when it gets text). */
export function errorBox(id) {
  return h('p', { id, class: 'error', role: 'alert', hidden: true });
}

export function showError(box, error) {
  if (!error) {
    box.hidden = true;
    box.textContent = '';
    return;
  }
  const code = error.body && error.body.error ? ` (${error.body.error})` : '';
  box.textContent = `${error.message || String(error)}${code}`;
  box.hidden = false;
}

/** A titled section with an id'd heading (for `aria-labelledby`). */
export function section(id, title, ...children) {
  const headingId = `${id}-title`;
  return h(
    'section',
    { id, class: 'card', 'aria-labelledby': headingId },
    h('h2', { id: headingId, text: title }),
    ...children,
  );
}

/** Resolves after `ms`, or rejects with an AbortError when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(new DOMException('aborted', 'AbortError'));
      return;
    }
    const timer = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          reject(new DOMException('aborted', 'AbortError'));
        },
        { once: true },
      );
    }
  });
}
