// Hostlist expressions, as crates/model/src/hostlist.rs reads and writes them:
// items split at top-level commas; each item may hold bracket groups of numbers and inclusive
// ranges (n[0-15,20], rack[1-2]n[1-3]: the cartesian product, first group outermost); a range
// is written with at least as many digits as its lower bound (gpu[000-127], [8-10], [098-100]).

export const MAX_EXPAND = 1000000;

export class HostlistError extends Error {}

function bound(text, pos) {
  if (!/^[0-9]+$/.test(text)) {
    throw new HostlistError(`expected a decimal number at byte ${pos}, found "${text}"`);
  }
  const v = Number(text);
  if (!Number.isSafeInteger(v)) {
    throw new HostlistError(`number "${text}" at byte ${pos} is too large`);
  }
  return v;
}

function group(content, pos, state) {
  const ranges = [];
  let count = 0;
  let at = pos;
  for (const elem of content.split(',')) {
    const dash = elem.indexOf('-');
    const loText = dash < 0 ? elem : elem.slice(0, dash);
    const lo = bound(loText, at);
    const hi = dash < 0 ? lo : bound(elem.slice(dash + 1), at + dash + 1);
    if (lo > hi) {
      throw new HostlistError(
        `reversed range "${elem}" at byte ${at}: lower bound is greater than upper bound`);
    }
    count += hi - lo + 1;
    if (count > MAX_EXPAND) state.tooMany();
    ranges.push({ lo, hi, width: loText.length });
    at += elem.length + 1;
  }
  return { ranges, count };
}

function parseItem(s, start, end) {
  const raw = s.slice(start, end);
  const text = raw.trim();
  if (!text) throw new HostlistError(`empty item at byte ${start} of hostlist`);
  const base = start + (raw.length - raw.trimStart().length);
  const tooMany = () => {
    throw new HostlistError(`hostlist expands to more than ${MAX_EXPAND} names (at byte ${base})`);
  };
  const pieces = [];
  let count = 1;
  let i = 0;
  for (;;) {
    const open = text.indexOf('[', i);
    if (open < 0) break;
    const close = text.indexOf(']', open);
    if (open > i) pieces.push(text.slice(i, open));
    const content = text.slice(open + 1, close);
    if (!content) throw new HostlistError(`empty brackets at byte ${base + open} in "${text}"`);
    const g = group(content, base + open + 1, { tooMany });
    count *= g.count;
    if (count > MAX_EXPAND) tooMany();
    pieces.push(g.ranges);
    i = close + 1;
  }
  if (i < text.length) pieces.push(text.slice(i));
  return { pieces, count };
}

function splitItems(s) {
  const items = [];
  let start = 0;
  let open = -1;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '[') {
      if (open >= 0) throw new HostlistError(`nested '[' at byte ${i}`);
      open = i;
    } else if (c === ']') {
      if (open < 0) throw new HostlistError(`unmatched ']' at byte ${i}`);
      open = -1;
    } else if (c === ',' && open < 0) {
      items.push(parseItem(s, start, i));
      start = i + 1;
    }
  }
  if (open >= 0) throw new HostlistError(`unclosed '[' at byte ${open}`);
  items.push(parseItem(s, start, s.length));
  return items;
}

const pad = (v, width) => String(v).padStart(width, '0');

// Expand `s` into names, in the order written, each once. Throws HostlistError.
export function expand(s) {
  if (!s.trim()) return [];
  const items = splitItems(s);
  let total = 0;
  for (const it of items) {
    total += it.count;
    if (total > MAX_EXPAND) {
      throw new HostlistError(`hostlist expands to more than ${MAX_EXPAND} names`);
    }
  }
  const out = [];
  for (const it of items) {
    // Odometer over the groups, last group fastest.
    const groups = it.pieces.filter((p) => typeof p !== 'string');
    const state = groups.map((g) => [0, g[0].lo]);
    for (;;) {
      let name = '';
      let gi = 0;
      for (const p of it.pieces) {
        if (typeof p === 'string') {
          name += p;
        } else {
          const [ri, v] = state[gi++];
          name += pad(v, p[ri].width);
        }
      }
      out.push(name);
      // Advance the odometer; done when every group has wrapped.
      let g = groups.length;
      let advanced = false;
      while (g > 0 && !advanced) {
        g--;
        const st = state[g];
        if (st[1] < groups[g][st[0]].hi) {
          st[1]++;
          advanced = true;
        } else if (st[0] + 1 < groups[g].length) {
          st[0]++;
          st[1] = groups[g][st[0]].lo;
          advanced = true;
        } else {
          st[0] = 0;
          st[1] = groups[g][0].lo;
        }
      }
      if (!advanced) break;
    }
  }
  return [...new Set(out)];
}

// Compress names into a hostlist: grouped by the text around their last run of digits,
// numbers sorted and merged into ranges, padding kept (n[1-3,7], gpu[007-008], n5).
export function compress(names) {
  const plain = new Set();
  const groups = new Map();
  for (const name of names) {
    if (!name) continue;
    const m = /^(.*?)([0-9]+)([^0-9]*)$/.exec(name);
    const v = m ? Number(m[2]) : NaN;
    if (!m || !Number.isSafeInteger(v)) {
      plain.add(name);
      continue;
    }
    const key = m[1] + '\u0000' + m[3];
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { prefix: m[1], suffix: m[3], nums: [] }));
    const padded = m[2].length > 1 && m[2][0] === '0' ? m[2].length : 0;
    g.nums.push([padded, v]);
  }
  const parts = [];
  for (const g of groups.values()) {
    g.nums.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const nums = g.nums.filter((n, i) => i === 0 || n[0] !== g.nums[i - 1][0] || n[1] !== g.nums[i - 1][1]);
    if (nums.length === 1) {
      parts.push([g.prefix, g.suffix, g.prefix + pad(nums[0][1], nums[0][0]) + g.suffix]);
      continue;
    }
    let runs = [];
    for (const [p, v] of nums) {
      const r = runs[runs.length - 1];
      if (r && r.pad === p && r.hi + 1 === v) r.hi = v;
      else runs.push({ pad: p, lo: v, hi: v });
    }
    // A padded run ending just below its width's first number (099) continues into a
    // natural run starting there (100).
    const natural = runs.filter((r) => r.pad === 0);
    const padded = runs.filter((r) => r.pad !== 0);
    const absorbed = new Set();
    for (const r of padded) {
      const first = 10 ** (r.pad - 1);
      if (r.hi !== first - 1) continue;
      const k = natural.findIndex((n) => n.lo === first);
      if (k >= 0 && !absorbed.has(k)) {
        absorbed.add(k);
        r.hi = natural[k].hi;
      }
    }
    runs = natural.filter((_, k) => !absorbed.has(k)).concat(padded);
    runs.sort((a, b) => a.lo - b.lo || a.pad - b.pad);
    const text = runs
      .map((r) => (r.lo === r.hi ? pad(r.lo, r.pad) : `${pad(r.lo, r.pad)}-${pad(r.hi, r.pad)}`))
      .join(',');
    parts.push([g.prefix, g.suffix, `${g.prefix}[${text}]${g.suffix}`]);
  }
  for (const name of plain) parts.push([name, '', name]);
  const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
  parts.sort((a, b) => cmp(a[0], b[0]) || cmp(a[1], b[1]) || cmp(a[2], b[2]));
  return parts.map((p) => p[2]).join(',');
}
