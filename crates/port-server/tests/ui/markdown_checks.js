// Checks of assets/markdown.js, run in a page of the app by `summary.rs` (the body of a
// WebDriver asynchronous script: the last argument is the callback). Answers
// `{ failures: [...], figures: {...} }`.
//
// Linearity is checked by counting, not timing: the renderer counts every character its
// inline scanners look at (`scannerSteps`), and each pathological input must cost at
// most STEPS_PER_CHAR looks per character, with twice the input costing at most
// MAX_GROWTH times as many. Quadratic work doubles twice (×4) when the input doubles.

const done = arguments[arguments.length - 1];

const SIZE = 64 * 1024;
const STEPS_PER_CHAR = 40;
const MAX_GROWTH = 2.2;

// Rendered exactly as by the renderer this one replaced (checked against it on 1.1 M
// random inputs when it was written).
const CASES = [
  ['## Deployed', '<h4>Deployed</h4>'],
  [
    '**checkout** `v1.4.2` is live in *production*.',
    '<p><strong>checkout</strong> <code>v1.4.2</code> is live in <em>production</em>.</p>',
  ],
  [
    '__bold__, _italic_ and snake_case_names stay as they are',
    '<p><strong>bold</strong>, <em>italic</em> and snake_case_names stay as they are</p>',
  ],
  [
    '- one\n- two\n  continued\n\n1. first\n2) second',
    '<ul><li>one</li><li>two<br>continued</li></ul>\n<ol><li>first</li><li>second</li></ol>',
  ],
  [
    '> quoted **text**\n> more\n\nafter',
    '<blockquote><p>quoted <strong>text</strong><br>more</p></blockquote>\n<p>after</p>',
  ],
  ['above\n\n---\n\nbelow', '<p>above</p>\n<hr>\n<p>below</p>'],
  [
    '```\n<b>code</b> **not bold**\n```',
    '<pre><code>&lt;b&gt;code&lt;/b&gt; **not bold**</code></pre>',
  ],
  [
    '[notes](https://example.com/wiki/A_(b)) [bad](javascript:alert(1)) [rel](/relative)',
    '<p><a href="https://example.com/wiki/A_(b)" rel="noopener noreferrer nofollow">notes</a> bad rel</p>',
  ],
  [
    '<img src=x onerror=alert(1)> & "quotes"',
    '<p>&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;</p>',
  ],
  ['line one\nline two', '<p>line one<br>line two</p>'],
  ['`` a ` b `` and ```unclosed', '<p><code>a ` b</code> and ```unclosed</p>'],
  [
    '[`code` in a **link**](https://example.com)',
    '<p><a href="https://example.com" rel="noopener noreferrer nofollow"><code>code</code> in a <strong>link</strong></a></p>',
  ],
  ['# Title #\n#not a heading\n####### seven', '<h3>Title</h3>\n<p>#not a heading<br>####### seven</p>'],
  [
    '**a *b* c** and *unclosed and **unclosed',
    '<p><strong>a <em>b</em> c</strong> and *unclosed and **unclosed</p>',
  ],
  [
    '[a]( https://spaced.example.com )',
    '<p><a href="https://spaced.example.com" rel="noopener noreferrer nofollow">a</a></p>',
  ],
];

const fill = (unit) => (n) => unit.repeat(Math.ceil(n / unit.length)).slice(0, n);

// Inputs that made the old renderer's expressions scan the rest of the text again at
// every opener. None is a line the block parser takes whole (a rule or a fence).
const PATHOLOGICAL = {
  brackets: fill('['),
  starRun: (n) => `a${'*'.repeat(n - 1)}`,
  underscoreRun: (n) => `a${'_'.repeat(n - 1)}`,
  unclosedStrong: fill('**a '),
  nestedEmphasis: fill('**_*'),
  emphasisWords: fill('*a _b __c '),
  backtickStairs: (n) => {
    let text = '';
    for (let k = 1; text.length < n; k += 1) text += `${'`'.repeat(k)}a`;
    return text.slice(0, n);
  },
  backtickRuns: fill('` `` ``` '),
  longLabel: (n) => `x${'['.repeat(n - 2)}]`,
  unclosedLinks: fill('[a]('),
  linkGroups: (n) => `[a](${'(b)'.repeat(n)}`.slice(0, n),
  longDestination: (n) => `[a](${'x'.repeat(n - 4)}`,
  spacedHeading: (n) => `# a${' '.repeat(n - 4)}b`,
  deepQuote: fill('> '),
  lines: fill('a *b\n'),
  listItems: fill('- [a](b\n'),
};

(async () => {
  const m = await import('/assets/markdown.js');
  const failures = [];
  const figures = {};

  for (const [source, expected] of CASES) {
    const got = m.renderMarkdown(source);
    if (got !== expected) failures.push(`${JSON.stringify(source)} rendered ${JSON.stringify(got)}, not ${JSON.stringify(expected)}`);
  }

  // The DOM check after rendering: no handler attributes, only http(s) links, whatever
  // the escaping let through.
  const fragment = m.markdownFragment(
    '[x](https://a/"onmouseover=alert(1)) <script>alert(1)</script> [y](https://b/ok)',
  );
  const holder = document.createElement('div');
  holder.append(fragment);
  for (const element of holder.querySelectorAll('*')) {
    for (const attribute of element.attributes) {
      if (attribute.name.startsWith('on')) failures.push(`an ${attribute.name} attribute survived`);
    }
  }
  const hrefs = [...holder.querySelectorAll('a[href]')].map((a) => a.getAttribute('href'));
  if (JSON.stringify(hrefs) !== JSON.stringify(['https://b/ok'])) failures.push(`links kept: ${JSON.stringify(hrefs)}`);
  if (holder.querySelector('script')) failures.push('a script element was made');

  // Quotes deeper than the bound are text, not a stack overflow.
  const deep = m.renderMarkdown(`${'> '.repeat(SIZE / 2 - 1)}x`);
  const depth = deep.split('<blockquote>').length - 1;
  if (depth !== m.MAX_QUOTE_DEPTH) failures.push(`${depth} nested quotes, not ${m.MAX_QUOTE_DEPTH}`);

  for (const [name, make] of Object.entries(PATHOLOGICAL)) {
    const cost = (n) => {
      const text = make(n);
      if (text.length !== n) failures.push(`${name}: made ${text.length} characters, not ${n}`);
      const before = m.scannerSteps();
      m.renderMarkdown(text);
      return m.scannerSteps() - before;
    };
    const once = cost(SIZE);
    const twice = cost(2 * SIZE);
    figures[name] = { stepsPerChar: Number((once / SIZE).toFixed(2)), growth: Number((twice / Math.max(once, 1)).toFixed(3)) };
    if (once > STEPS_PER_CHAR * SIZE) failures.push(`${name}: ${once} steps for ${SIZE} characters`);
    if (twice > MAX_GROWTH * once + 64) failures.push(`${name}: ${once} steps for ${SIZE} characters but ${twice} for twice as many`);
  }
  return { failures, figures };
})().then(done, (error) => done({ failures: [String((error && error.stack) || error)], figures: {} }));
