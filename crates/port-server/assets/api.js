// The API client. Two ways of being signed in:
//
// - a person, by e-mail and password or single sign-on: the server keeps the session
//   in an HttpOnly cookie that scripts never see; the page holds only the session's
//   CSRF token (in memory), which every request that changes something carries in
//   `X-CSRF-Token`;
// - a machine, by client id and secret: the access token lives in this tab's session
//   storage and travels in the Authorization header, never in a URL.
//
// JSON requests and the run log stream (read with fetch(), so either kind of
// credential goes with it) go through the same helpers.

import { sleep } from './dom.js';

const TOKEN_KEY = 'portd.session';
/** Forget a token this long before it expires, so no request races its expiry. */
const EXPIRY_MARGIN_MS = 60_000;

/** The signed-in person (`{user, csrfToken}`), or null. */
let person = null;

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

/** Calls `listener` whenever the session ends (sign-out, or a refused credential). */
export function onSignedOut(listener) {
  signedOutListeners.add(listener);
}

function endSession(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  person = null;
  for (const listener of signedOutListeners) listener(reason);
}

/** The current access token, or null when signed out, expired, or signed in as a person. */
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
  return person !== null || accessToken() !== null;
}

/**
 * Who is signed in: `{kind: 'person', user}` (Port's user shape: `email`, `roles`,
 * `teams`), `{kind: 'machine'}`, or null.
 */
export function whoAmI() {
  if (person) return { kind: 'person', user: person.user };
  if (accessToken() !== null) return { kind: 'machine' };
  return null;
}

/** The signed-in person's role name (`Admin` or `Member`), or null for a machine. */
export function personRole() {
  const roles = person && Array.isArray(person.user.roles) ? person.user.roles : [];
  return roles.length > 0 && roles[0] && roles[0].name ? roles[0].name : null;
}

/** Whether the signed-in caller may manage the organization: Admins and machines. */
export function isAdmin() {
  const who = whoAmI();
  return who !== null && (who.kind === 'machine' || personRole() === 'Admin');
}

async function sessionRequest(method, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && person) headers['x-csrf-token'] = person.csrfToken;
  const response = await fetch('/ui/session', {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'same-origin',
  });
  const data = await response.json().catch(() => null);
  return { response, data };
}

function keepPerson(data) {
  if (!data || typeof data.csrfToken !== 'string' || !data.user) return false;
  person = { user: data.user, csrfToken: data.csrfToken };
  return true;
}

/** Signs a person in with their e-mail address and password (a session cookie). */
export async function signInWithPassword(email, password) {
  const { response, data } = await sessionRequest('POST', { email, password });
  if (!response.ok || !keepPerson(data)) throw new ApiError(response.status, data);
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * Picks up a person's session the browser already has (after a reload, or single
 * sign-on): true when there is one.
 */
export async function restoreSession() {
  if (accessToken() !== null) return true;
  try {
    const { response, data } = await sessionRequest('GET');
    return response.ok && keepPerson(data);
  } catch {
    return false;
  }
}

/** Which ways of signing in the server offers: `{password, sso}`. */
export async function signInOptions() {
  try {
    const response = await fetch('/ui/sign-in-options', {
      headers: { accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
    });
    const data = await response.json();
    return { password: data.password !== false, sso: data.sso === true };
  } catch {
    return { password: true, sso: false };
  }
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
  person = null;
  sessionStorage.setItem(
    TOKEN_KEY,
    JSON.stringify({
      accessToken: body.accessToken,
      clientId,
      expiresAt: Date.now() + Math.max(lifetime - EXPIRY_MARGIN_MS, 1000),
    }),
  );
}

export async function signOut() {
  if (person) {
    // The server forgets the session and clears the cookie; the page forgets it even
    // if the server cannot be reached.
    await sessionRequest('DELETE').catch(() => null);
  }
  endSession('signed-out');
}

/**
 * The credentials of one request: the Authorization header for a machine, the cookie
 * (and the CSRF token when `method` may change something) for a person.
 */
function credentialsFor(method, headers) {
  if (person) {
    if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = person.csrfToken;
    return 'same-origin';
  }
  const token = accessToken();
  if (token === null) {
    endSession('expired');
    throw new ApiError(401, { error: 'unauthorized', message: 'Please sign in again.' });
  }
  headers.authorization = `Bearer ${token}`;
  return 'omit';
}

/** Sends a request to `/v1{path}`; resolves with the JSON body, throws `ApiError`. */
export async function api(method, path, body, { signal } = {}) {
  const headers = { accept: 'application/json' };
  const credentials = credentialsFor(method, headers);
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
    cache: 'no-store',
    credentials,
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
    const headers = { accept: 'text/event-stream' };
    const credentials = credentialsFor('GET', headers);
    if (lastEventId !== null) headers['last-event-id'] = lastEventId;
    const response = await fetch(`/v1/actions/runs/${enc(runId)}/logs/stream`, {
      headers,
      signal: controller.signal,
      cache: 'no-store',
      credentials,
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
