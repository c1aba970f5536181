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
// numbered lists, block quotes, horizontal rules and [links](…) to http(s) URLs.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const SAFE_URL = /^https?:\/\/[^\s<>"]+$/i;
const FENCE = /^\s{0,3}(`{3,}|~{3,})/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^\s{0,3}([-*_])(?:\s*\1){2,}\s*$/;
const BULLET = /^\s{0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^\s{0,3}\d{1,9}[.)]\s+(.*)$/;
const QUOTE = /^\s{0,3}&gt;\s?(.*)$/;

function emphasis(text) {
  return text
    .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>')
    .replace(/__(?=\S)([\s\S]*?\S)__/g, '<strong>$1</strong>')
    .replace(/\*(?=[^\s*])([^*]*?[^\s*])\*|\*([^\s*])\*/g, (_, a, b) => `<em>${a ?? b}</em>`)
    .replace(/(^|[^\p{L}\p{N}_])_(?=[^\s_])([^_]*?[^\s_]|[^\s_])_(?![\p{L}\p{N}_])/gu, '$1<em>$2</em>');
}

/** Inline markup of already-escaped text. */
function inline(text) {
  const stash = [];
  const keep = (html) => {
    stash.push(html);
    return `\u0000${stash.length - 1}\u0000`;
  };
  // Code spans first: nothing inside them is markup.
  let out = text.replace(/(`+)(?!`)([\s\S]*?[^`])\1(?!`)/g, (_, ticks, code) =>
    keep(`<code>${code.trim()}</code>`),
  );
  // The URL may hold one level of balanced parentheses: `…/wiki/Foo_(bar)`.
  out = out.replace(/\[([^\]\n]+)\]\(\s*((?:[^\s()]|\([^\s()]*\))*)\s*\)/g, (_, label, url) => {
    const text = emphasis(label);
    if (!SAFE_URL.test(url)) return text;
    return keep(`<a href="${url}" rel="noopener noreferrer nofollow">${text}</a>`);
  });
  out = emphasis(out).replace(/\n/g, '<br>');
  // Stashed pieces may hold earlier ones (code inside a link's text).
  for (let pass = 0; pass < 3 && out.includes('\u0000'); pass += 1) {
    out = out.replace(/\u0000(\d+)\u0000/g, (_, index) => stash[Number(index)] ?? '');
  }
  return out;
}

function renderBlocks(lines) {
  const out = [];
  let paragraph = [];
  const flush = () => {
    if (paragraph.length > 0) out.push(`<p>${inline(paragraph.join('\n'))}</p>`);
    paragraph = [];
  };
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
    const heading = line.match(HEADING);
    if (heading) {
      flush();
      // The page's own headings are h1 and h2; the summary's start below them.
      const level = Math.min(heading[1].length + 2, 6);
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      flush();
      out.push('<hr>');
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        quoted.push(lines[i].match(QUOTE)[1]);
        i += 1;
      }
      out.push(`<blockquote>${renderBlocks(quoted)}</blockquote>`);
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
          /^\s{2,}\S/.test(lines[i]) &&
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
  return renderBlocks(escapeHtml(text).split('\n'));
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
