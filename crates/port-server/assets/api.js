// The API client: the access token (in this browser tab's session storage only), JSON
// requests, and the run log stream read with fetch() so the token travels in the
// Authorization header, never in a URL.

import { sleep } from './dom.js';

const TOKEN_KEY = 'portd.session';
/** Forget a token this long before it expires, so no request races its expiry. */
const EXPIRY_MARGIN_MS = 60_000;

/** An API refusal: the HTTP status and Port's error envelope (`error`, `message`). */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `The server answered ${status}.`);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

const signedOutListeners = new Set();

/** Calls `listener` whenever the session ends (sign-out, or a refused token). */
export function onSignedOut(listener) {
  signedOutListeners.add(listener);
}

function endSession(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  for (const listener of signedOutListeners) listener(reason);
}

/** The current access token, or null when signed out or expired. */
export function accessToken() {
  let session;
  try {
    session = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || 'null');
  } catch {
    session = null;
  }
  if (!session || typeof session.accessToken !== 'string') return null;
  if (typeof session.expiresAt === 'number' && Date.now() >= session.expiresAt) {
    sessionStorage.removeItem(TOKEN_KEY);
    return null;
  }
  return session.accessToken;
}

export function isSignedIn() {
  return accessToken() !== null;
}

/** Trades a client id and secret for a token and keeps it for this tab's session. */
export async function signIn(clientId, clientSecret) {
  const response = await fetch('/v1/auth/access_token', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ clientId, clientSecret }),
    cache: 'no-store',
    credentials: 'omit',
  });
  const body = await response.json().catch(() => null);
  if (!response.ok || !body || typeof body.accessToken !== 'string') {
    throw new ApiError(response.status, body);
  }
  const lifetime = (Number(body.expiresIn) || 3 * 60 * 60) * 1000;
  sessionStorage.setItem(
    TOKEN_KEY,
    JSON.stringify({
      accessToken: body.accessToken,
      clientId,
      expiresAt: Date.now() + Math.max(lifetime - EXPIRY_MARGIN_MS, 1000),
    }),
  );
}

export function signOut() {
  endSession('signed-out');
}

function authorization() {
  const token = accessToken();
  if (token === null) {
    endSession('expired');
    throw new ApiError(401, { error: 'unauthorized', message: 'Please sign in again.' });
  }
  return `Bearer ${token}`;
}

/** Sends a request to `/v1{path}`; resolves with the JSON body, throws `ApiError`. */
export async function api(method, path, body, { signal } = {}) {
  const headers = { authorization: authorization(), accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
    credentials: 'omit',
  });
  const data = await response.json().catch(() => null);
  if (response.status === 401) endSession('expired');
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** `?key=value&…` from an object, skipping empty values; arrays repeat the key. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, item);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

export const enc = encodeURIComponent;

/**
 * Parses a server-sent events body into `{event, data, id}` objects (the
 * EventSource format: `field: value` lines, a blank line ends an event).
 */
async function* serverSentEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  // The unfinished line, in pieces: a `status` event is one line as long as the run
  // (megabytes), arriving in many chunks, and joining the pieces only once the line
  // ends keeps that linear.
  let pieces = [];
  let event = { event: 'message', data: [], id: undefined };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      let start = 0;
      let newline;
      while ((newline = value.indexOf('\n', start)) >= 0) {
        pieces.push(value.slice(start, newline));
        start = newline + 1;
        let line = pieces.join('');
        pieces = [];
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {
          if (event.data.length > 0 || event.id !== undefined) {
            yield { event: event.event, data: event.data.join('\n'), id: event.id };
          }
          event = { event: 'message', data: [], id: undefined };
          continue;
        }
        if (line.startsWith(':')) continue; // a keep-alive comment
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'data') event.data.push(text);
        else if (field === 'event') event.event = text;
        else if (field === 'id' && !text.includes('\0')) event.id = text;
      }
      if (start < value.length) pieces.push(value.slice(start));
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Follows a run's log stream (`GET /v1/actions/runs/{id}/logs/stream`) until the run
 * ends. Calls `onLog(line, seq)`, `onStatus(run)`, `onEnd(run)` and `onState(state)`
 * with `connecting`, `live`, `reconnecting` or `ended`, and `onError(error)`. A dropped
 * connection is resumed with `Last-Event-ID` (the last line's sequence number), so no
 * line is lost or repeated. Returns a function that stops following.
 */
export function followRunLog(runId, handlers) {
  const controller = new AbortController();
  let lastEventId = null;
  let failures = 0;
  const notify = (name, ...args) => {
    if (!controller.signal.aborted && handlers[name]) handlers[name](...args);
  };

  async function connectOnce() {
    const headers = { authorization: authorization(), accept: 'text/event-stream' };
    if (lastEventId !== null) headers['last-event-id'] = lastEventId;
    const response = await fetch(`/v1/actions/runs/${enc(runId)}/logs/stream`, {
      headers,
      signal: controller.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
    if (response.status === 401) endSession('expired');
    if (!response.ok) {
      throw new ApiError(response.status, await response.json().catch(() => null));
    }
    notify('onState', 'live');
    for await (const message of serverSentEvents(response.body)) {
      if (message.id !== undefined) lastEventId = message.id;
      failures = 0;
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        continue;
      }
      if (message.event === 'log') notify('onLog', data, Number(message.id));
      else if (message.event === 'status') notify('onStatus', data);
      else if (message.event === 'end') {
        notify('onEnd', data);
        return true;
      }
    }
    return false;
  }

  (async () => {
    notify('onState', 'connecting');
    while (!controller.signal.aborted) {
      try {
        if (await connectOnce()) {
          notify('onState', 'ended');
          return;
        }
      } catch (error) {
        if (controller.signal.aborted || error.name === 'AbortError') return;
        // A run that does not exist, or a session that ended, will not come back.
        if (error.status && error.status >= 400 && error.status < 500 && error.status !== 429) {
          notify('onError', error);
          return;
        }
      }
      failures += 1;
      notify('onState', 'reconnecting');
      try {
        await sleep(Math.min(500 * 2 ** (failures - 1), 10_000), controller.signal);
      } catch {
        return;
      }
    }
  })();

  return () => controller.abort();
}
