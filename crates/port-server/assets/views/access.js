// What the signed-in person may do, as far as the page can tell from an action's
// permissions (`GET /v1/actions/{id}/permissions`): used only to decide what to offer.
// The server decides for real on every request; a policy (catalog queries and jq
// conditions) is evaluated there only, so an action with one is offered ("maybe").

import { api, enc, whoAmI } from '../api.js';

/** `yes`, `no` or `maybe`. */
export const YES = 'yes';
export const NO = 'no';
export const MAYBE = 'maybe';

function names(list) {
  return Array.isArray(list) ? list.map((item) => (typeof item === 'string' ? item : item && item.name)) : [];
}

/** The person as a grant sees them: address, role, teams. */
function principal(user) {
  return {
    email: String(user.email || '').toLowerCase(),
    role: names(user.roles)[0] || 'Member',
    teams: names(user.teams),
  };
}

/** Whether a grant names the person (by address, role or team), ignoring its policy. */
function grantNames(grant, who) {
  if (!grant) return false;
  const users = (grant.users || []).map((u) => String(u).toLowerCase());
  return (
    users.includes(who.email) ||
    (grant.roles || []).includes(who.role) ||
    (grant.teams || []).some((team) => who.teams.includes(team))
  );
}

/** Whether the signed-in caller may execute an action with these permissions. */
export function mayExecute(permissions, action) {
  const who = whoAmI();
  if (!who) return NO;
  if (who.kind === 'machine') return YES;
  const person = principal(who.user);
  const execute = permissions && permissions.execute;
  if (grantNames(execute, person)) return YES;
  if (execute && execute.policy) return MAYBE;
  const trigger = (action && action.trigger) || {};
  const onEntity = trigger.operation === 'DAY-2' || trigger.operation === 'DELETE';
  // Members of the entity's teams may run it: which entity is chosen in the form.
  if (execute && execute.ownedByTeam && onEntity && person.teams.length > 0) return MAYBE;
  return NO;
}

/**
 * Whether the signed-in caller may approve or decline `run`: machines may; a person
 * who requested the run only when the approve grant names them in `users`; for a run
 * that needs ALL of a designated list, those still pending; otherwise whom the approve
 * grant names (or may admit by its policy).
 */
export function mayDecide(permissions, run, approvers) {
  const who = whoAmI();
  if (!who) return NO;
  if (who.kind === 'machine') return YES;
  const person = principal(who.user);
  const approve = (permissions && permissions.approve) || {};
  const namedUsers = (approve.users || []).map((u) => String(u).toLowerCase());
  if (String(run.createdBy || '').toLowerCase() === person.email && !namedUsers.includes(person.email)) {
    return NO;
  }
  const listed = (approvers || []).map((a) => ({ user: String(a.userId || '').toLowerCase(), state: a.state }));
  const designated = run.requiredApproval && run.requiredApproval.type === 'ALL' && listed.length > 0;
  if (designated) {
    return listed.some((a) => a.user === person.email && a.state === 'PENDING') ? YES : NO;
  }
  if (listed.some((a) => a.user === person.email && a.state !== 'PENDING')) return NO;
  if (grantNames(approve, person)) return YES;
  return approve.policy ? MAYBE : NO;
}

/** The permissions of an action, or null when they cannot be read. */
export async function permissionsOf(identifier, signal) {
  try {
    const data = await api('GET', `/actions/${enc(identifier)}/permissions`, undefined, { signal });
    return data.permissions || null;
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    return null;
  }
}

/**
 * Keeps the actions the caller may execute (or might: a policy decides), reading
 * their permissions a few at a time. Machines keep them all without asking.
 */
export async function executableActions(actions, signal) {
  const who = whoAmI();
  if (!who || who.kind === 'machine') return actions;
  const verdicts = new Array(actions.length).fill(NO);
  let next = 0;
  const worker = async () => {
    while (next < actions.length) {
      const index = next;
      next += 1;
      const permissions = await permissionsOf(actions[index].identifier, signal);
      // Unreadable permissions: offer the action and let the server answer.
      verdicts[index] = permissions === null ? MAYBE : mayExecute(permissions, actions[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(6, actions.length) }, worker));
  return actions.filter((_, index) => verdicts[index] !== NO);
}
