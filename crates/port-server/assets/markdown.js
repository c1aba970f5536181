// A tiny, safe markdown renderer for run summaries.
//
// Safety comes first and in this order: the whole source is HTML-escaped before any
// markdown is looked at, so the only tags in the output are the ones written below;
// links are made only for absolute http(s) URLs (anything else, `javascript:` included,
// stays plain text); and `markdownFragment` parses the result into an inert template
// and keeps only the elements and attributes this renderer makes.
//
// Supported: paragraphs (single newlines become line breaks), ATX headings, **bold**,
// *italic* (and the underscore forms), `inline code`, fenced code blocks, bulleted and
// numbered lists, block quotes (up to MAX_QUOTE_DEPTH deep), horizontal rules and
// [links](…) to http(s) URLs.
//
// Time is linear in the source: a summary is written by a run's backend, and a page that
// takes seconds to show 64 KiB of `[` is a page nobody can read. Inline markup is found
// by scanners that never look back: each one walks the text once, with tables of "the
// next closer from here" built in one pass from the end, so a construct that never
// closes costs one look instead of a scan of the rest of the text. They find exactly
// what the regular expressions they replaced found (leftmost opener, nearest closer).
// Line-level patterns are regular expressions without nested quantifiers, run a
// constant number of times per line.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const SAFE_URL = /^https?:\/\/[^\s<>"]+$/i;
const FENCE = /^\s{0,3}(`{3,}|~{3,})/;
const RULE = /^\s{0,3}([-*_])(?:\s*\1){2,}\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^\s{0,3}\d{1,9}[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}&gt;\s?(.*)$/;
const CONTINUATION = /^\s{2,}\S/;

/** Quotes nested deeper than this are shown as text: each level reads its lines again. */
export const MAX_QUOTE_DEPTH = 16;

// Characters looked at by the scanners, for the linearity test (`scannerSteps`).
let steps = 0;

/** How many characters the inline scanners have looked at since the page loaded. */
export function scannerSteps() {
  return steps;
}

const SPACE = /\s/;
const WORD = /[\p{L}\p{N}_]/u;
const LINE_BREAK = /[\n\r\u2028\u2029]/;

const isSpace = (c) => c !== undefined && SPACE.test(c);

/**
 * `at[i]`: the first position `q >= i` where `closes(q)` holds, or `text.length`. Built
 * in one pass from the end, so "where is the next closer" costs one read.
 */
function nextWhere(text, closes) {
  const n = text.length;
  const at = new Int32Array(n + 2).fill(n);
  for (let i = n - 1; i >= 0; i -= 1) {
    steps += 1;
    at[i] = closes(i) ? i : at[i + 1];
  }
  return at;
}

/** `**strong**` or `__strong__`: /dd(?=\S)([\s\S]*?\S)dd/g. */
function strong(text, d) {
  const n = text.length;
  const closer = nextWhere(
    text,
    (q) => text[q] === d && text[q + 1] === d && q > 0 && !isSpace(text[q - 1]),
  );
  let out = '';
  let copied = 0;
  for (let i = 0; i + 2 < n; i += 1) {
    steps += 1;
    if (text[i] !== d || text[i + 1] !== d || isSpace(text[i + 2])) continue;
    const q = closer[i + 3];
    // No closer after this opener means none after any later one either.
    if (q >= n) break;
    out += `${text.slice(copied, i)}<strong>${text.slice(i + 2, q)}</strong>`;
    copied = q + 2;
    i = q + 1;
  }
  return out + text.slice(copied);
}

// `*em*`: /\*(?=[^\s*])([^*]*?[^\s*])\*|\*([^\s*])\*/g (the expression's two
// branches are one: a one-character text is the first with nothing before its end).
function starEmphasis(text) {
  const n = text.length;
  const star = nextWhere(text, (q) => text[q] === '*');
  let out = '';
  let copied = 0;
  for (let i = 0; i + 1 < n; i += 1) {
    steps += 1;
    const first = text[i + 1];
    if (text[i] !== '*' || first === '*' || isSpace(first)) continue;
    const q = star[i + 1];
    if (q >= n || isSpace(text[q - 1])) continue;
    out += `${text.slice(copied, i)}<em>${text.slice(i + 1, q)}</em>`;
    copied = q + 1;
    i = q;
  }
  return out + text.slice(copied);
}

/** Whether the code point that ends just before `end`, starting at or after `from`, is not a letter, digit or `_`. */
function nonWordBefore(text, end, from) {
  let start = end - 1;
  const low = text.charCodeAt(start);
  const high = text.charCodeAt(start - 1);
  if (low >= 0xdc00 && low <= 0xdfff && high >= 0xd800 && high <= 0xdbff) start -= 1;
  return start >= from && !WORD.test(String.fromCodePoint(text.codePointAt(start)));
}

/**
 * `_em_` between non-word characters:
 * /(^|[^\p{L}\p{N}_])_(?=[^\s_])([^_]*?[^\s_]|[^\s_])_(?![\p{L}\p{N}_])/gu.
 */
function underscoreEmphasis(text) {
  const n = text.length;
  const underscore = nextWhere(text, (q) => text[q] === '_');
  let out = '';
  let copied = 0;
  for (let i = 0; i + 1 < n; i += 1) {
    steps += 1;
    const first = text[i + 1];
    if (text[i] !== '_' || first === '_' || isSpace(first)) continue;
    // The character before the opener belongs to this match, so not to the last one.
    if (i > 0 && !nonWordBefore(text, i, copied)) continue;
    const q = underscore[i + 1];
    if (q >= n || isSpace(text[q - 1])) continue;
    if (q + 1 < n && WORD.test(String.fromCodePoint(text.codePointAt(q + 1)))) continue;
    out += `${text.slice(copied, i)}<em>${text.slice(i + 1, q)}</em>`;
    copied = q + 1;
    i = q;
  }
  return out + text.slice(copied);
}

function emphasis(text) {
  return underscoreEmphasis(starEmphasis(strong(strong(text, '*'), '_')));
}

/**
 * Code spans: /(`+)(?!`)([\s\S]*?[^`])\1(?!`)/g. A run of n backticks opens a span that
 * the next run of exactly n closes; a run without one tries again without its first
 * backtick, as the expression did. One cursor per run length only moves forward.
 */
function codeSpans(text, keep) {
  const runs = [];
  for (let i = 0; i < text.length; ) {
    steps += 1;
    if (text[i] !== '`') {
      i += 1;
      continue;
    }
    const start = i;
    while (text[i] === '`') {
      steps += 1;
      i += 1;
    }
    runs.push({ start, length: i - start });
  }
  if (runs.length < 2) return text;
  const byLength = new Map();
  runs.forEach((run, index) => {
    const same = byLength.get(run.length);
    if (same) same.runs.push(index);
    else byLength.set(run.length, { next: 0, runs: [index] });
  });
  const closerAfter = (length, index) => {
    const same = byLength.get(length);
    if (!same) return -1;
    while (same.next < same.runs.length && same.runs[same.next] <= index) {
      steps += 1;
      same.next += 1;
    }
    return same.next < same.runs.length ? same.runs[same.next] : -1;
  };
  let out = '';
  let copied = 0;
  for (let r = 0; r < runs.length; r += 1) {
    const { start, length } = runs[r];
    for (let skip = 0; skip < length; skip += 1) {
      steps += 1;
      const c = closerAfter(length - skip, r);
      if (c < 0) continue;
      const closing = runs[c];
      const code = text.slice(start + length, closing.start).trim();
      out += text.slice(copied, start + skip) + keep(`<code>${code}</code>`);
      copied = closing.start + closing.length;
      r = c;
      break;
    }
  }
  return out + text.slice(copied);
}

/**
 * A link's destination after `](`: /\s*((?:[^\s()]|\([^\s()]*\))*)\s*\)/ — one level
 * of balanced parentheses, as in `…/wiki/Foo_(bar)`. `{url, end}` or null.
 */
function destination(text, from) {
  const n = text.length;
  let i = from;
  while (isSpace(text[i])) {
    steps += 1;
    i += 1;
  }
  const start = i;
  while (i < n) {
    steps += 1;
    const c = text[i];
    if (c === ')' || isSpace(c)) break;
    if (c === '(') {
      let j = i + 1;
      while (j < n && text[j] !== '(' && text[j] !== ')' && !isSpace(text[j])) {
        steps += 1;
        j += 1;
      }
      if (text[j] !== ')') return null;
      i = j + 1;
      continue;
    }
    i += 1;
  }
  const url = text.slice(start, i);
  while (isSpace(text[i])) {
    steps += 1;
    i += 1;
  }
  return text[i] === ')' ? { url, end: i + 1 } : null;
}

/**
 * Links: /\[([^\]\n]+)\]\(destination\)/g. Every `[` before the same `]` shares that
 * `]`'s destination, read once.
 */
function links(text, keep) {
  const n = text.length;
  const close = nextWhere(text, (q) => text[q] === ']' || text[q] === '\n');
  const destinations = new Map();
  let out = '';
  let copied = 0;
  for (let i = 0; i < n; i += 1) {
    steps += 1;
    if (text[i] !== '[') continue;
    const end = close[i + 1];
    if (end === i + 1 || text[end] !== ']' || text[end + 1] !== '(') continue;
    if (!destinations.has(end)) destinations.set(end, destination(text, end + 2));
    const target = destinations.get(end);
    if (target === null) continue;
    const label = emphasis(text.slice(i + 1, end));
    const html = SAFE_URL.test(target.url)
      ? keep(`<a href="${target.url}" rel="noopener noreferrer nofollow">${label}</a>`)
      : label;
    out += text.slice(copied, i) + html;
    copied = target.end;
    i = target.end - 1;
  }
  return out + text.slice(copied);
}

/** Inline markup of already-escaped text. */
function inline(text) {
  const stash = [];
  const keep = (html) => {
    stash.push(html);
    return `\u0000${stash.length - 1}\u0000`;
  };
  // Code spans first: nothing inside them is markup.
  let out = codeSpans(text, keep);
  out = links(out, keep);
  out = emphasis(out).replace(/\n/g, '<br>');
  // Stashed pieces may hold earlier ones (code inside a link's text).
  for (let pass = 0; pass < 3 && out.includes('\u0000'); pass += 1) {
    out = out.replace(/\u0000(\d+)\u0000/g, (_, index) => stash[Number(index)] ?? '');
  }
  return out;
}

/**
 * An ATX heading: /^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/ without the lazy group, which
 * made a long line of spaces quadratic. `{level, text}` or null.
 */
function heading(line) {
  let i = 0;
  while (i < line.length && isSpace(line[i])) i += 1;
  if (i > 3 || line[i] !== '#') return null;
  const hashes = i;
  while (line[i] === '#') i += 1;
  const level = i - hashes;
  if (level > 6 || !isSpace(line[i])) return null;
  const rest = line.slice(i).trim();
  // A closing run of `#` counts only after white space.
  let end = rest.length;
  while (end > 0 && rest[end - 1] === '#') end -= 1;
  const text = end < rest.length && end > 0 && isSpace(rest[end - 1]) ? rest.slice(0, end).trimEnd() : rest;
  if (LINE_BREAK.test(text)) return null;
  return { level, text };
}

function renderBlocks(lines, depth) {
  const out = [];
  let paragraph = [];
  const flush = () => {
    if (paragraph.length > 0) out.push(`<p>${inline(paragraph.join('\n'))}</p>`);
    paragraph = [];
  };
  const quoted = (line) => depth < MAX_QUOTE_DEPTH && QUOTE.test(line);
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(FENCE);
    if (fence) {
      flush();
      const code = [];
      i += 1;
      while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) {
        code.push(lines[i]);
        i += 1;
      }
      i += 1; // the closing fence (or the end)
      out.push(`<pre><code>${code.join('\n')}</code></pre>`);
      continue;
    }
    if (line.trim() === '') {
      flush();
      i += 1;
      continue;
    }
    const head = heading(line);
    if (head) {
      flush();
      // The page's own headings are h1 and h2; the summary's start below them.
      const level = Math.min(head.level + 2, 6);
      out.push(`<h${level}>${inline(head.text)}</h${level}>`);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      flush();
      out.push('<hr>');
      i += 1;
      continue;
    }
    if (quoted(line)) {
      flush();
      const inner = [];
      while (i < lines.length && quoted(lines[i])) {
        inner.push(lines[i].match(QUOTE)[1]);
        i += 1;
      }
      out.push(`<blockquote>${renderBlocks(inner, depth + 1)}</blockquote>`);
      continue;
    }
    if (BULLET.test(line) || NUMBERED.test(line)) {
      flush();
      const pattern = BULLET.test(line) ? BULLET : NUMBERED;
      const items = [];
      while (i < lines.length && pattern.test(lines[i])) {
        let item = lines[i].match(pattern)[1];
        i += 1;
        // Indented lines continue the item.
        while (
          i < lines.length &&
          CONTINUATION.test(lines[i]) &&
          !BULLET.test(lines[i]) &&
          !NUMBERED.test(lines[i])
        ) {
          item += `\n${lines[i].trim()}`;
          i += 1;
        }
        items.push(`<li>${inline(item)}</li>`);
      }
      const tag = pattern === BULLET ? 'ul' : 'ol';
      out.push(`<${tag}>${items.join('')}</${tag}>`);
      continue;
    }
    paragraph.push(line.trim());
    i += 1;
  }
  flush();
  return out.join('\n');
}

/** Markdown to an HTML string in which every tag is one of the renderer's own. */
export function renderMarkdown(source) {
  const text = String(source ?? '')
    .replace(/\u0000/g, '')
    .replace(/\r\n?/g, '\n');
  return renderBlocks(escapeHtml(text).split('\n'), 0);
}

const ALLOWED = new Set([
  'P', 'BR', 'H3', 'H4', 'H5', 'H6', 'STRONG', 'EM', 'CODE', 'PRE', 'UL', 'OL', 'LI',
  'BLOCKQUOTE', 'HR', 'A',
]);

/**
 * The rendered markdown as a document fragment, checked once more: any element the
 * renderer does not make is replaced by its text, and links keep only a safe `href`.
 */
export function markdownFragment(source) {
  const template = document.createElement('template');
  template.innerHTML = renderMarkdown(source);
  const walker = document.createTreeWalker(template.content, NodeFilter.SHOW_ELEMENT);
  const elements = [];
  while (walker.nextNode()) elements.push(walker.currentNode);
  for (const element of elements) {
    if (!ALLOWED.has(element.tagName)) {
      element.replaceWith(document.createTextNode(element.textContent));
      continue;
    }
    for (const attribute of [...element.attributes]) {
      const keep =
        element.tagName === 'A' &&
        ((attribute.name === 'href' && SAFE_URL.test(attribute.value)) || attribute.name === 'rel');
      if (!keep) element.removeAttribute(attribute.name);
    }
  }
  return template.content;
}
