// A table that renders only the rows in view (virtual scrolling): a scroller of the full
// height, and a pool of row elements (enough for the viewport plus a margin) whose text is
// rewritten as it scrolls. Sorting and filtering work on an array of row numbers.

const ROW_HEIGHT = 26;
const OVERSCAN = 8;

export class VirtualTable {
  // columns: [{key, label, cls, text(row) -> string, sort(row) -> number|string, link(row)}]
  constructor(root, columns, onOpen) {
    this.columns = columns;
    this.onOpen = onOpen;
    this.rows = [];
    this.view = [];
    this.sortKey = null;
    this.sortDir = 1;
    this.pool = [];
    this.first = -1;

    this.head = document.createElement('div');
    this.head.className = 'vt-row vt-head';
    this.head.setAttribute('role', 'row');
    for (const c of columns) {
      const h = document.createElement('button');
      h.type = 'button';
      h.className = `vt-cell ${c.cls || ''}`;
      h.dataset.key = c.key;
      h.setAttribute('role', 'columnheader');
      h.textContent = c.label;
      h.addEventListener('click', () => this.sortBy(c.key));
      this.head.append(h);
    }
    this.scroller = document.createElement('div');
    this.scroller.className = 'vt-scroller';
    this.scroller.tabIndex = 0;
    this.spacer = document.createElement('div');
    this.spacer.className = 'vt-spacer';
    this.body = document.createElement('div');
    this.body.className = 'vt-body';
    this.body.setAttribute('role', 'rowgroup');
    this.spacer.append(this.body);
    this.scroller.append(this.spacer);
    this.table = document.createElement('div');
    this.table.className = 'vt';
    this.table.setAttribute('role', 'table');
    this.table.append(this.head, this.scroller);
    root.append(this.table);
    this.scroller.addEventListener('scroll', () => this.paint());
    new ResizeObserver(() => this.paint(true)).observe(this.scroller);
    this.body.addEventListener('click', (e) => {
      const a = e.target.closest('a[data-name]');
      if (a && !e.ctrlKey && !e.metaKey) {
        e.preventDefault();
        this.onOpen(a.dataset.name);
      }
    });
  }

  // Replace the rows (keeps the sort); `keep` is the filter predicate.
  setRows(rows) {
    this.rows = rows;
    for (const c of this.columns) {
      if (c.sort) for (const r of rows) r['_s_' + c.key] = c.sort(r);
    }
  }

  // Show the rows for which keep(row) holds, sorted; returns how many.
  apply(keep) {
    const view = [];
    const rows = this.rows;
    for (let i = 0; i < rows.length; i++) if (keep(rows[i])) view.push(i);
    this.view = view;
    this.resort();
    return view.length;
  }

  sortBy(key) {
    if (this.sortKey === key) this.sortDir = -this.sortDir;
    else {
      this.sortKey = key;
      this.sortDir = 1;
    }
    this.resort();
  }

  resort() {
    const key = this.sortKey;
    if (key) {
      const k = '_s_' + key;
      const rows = this.rows;
      const dir = this.sortDir;
      this.view.sort((a, b) => {
        const x = rows[a][k];
        const y = rows[b][k];
        if (x === y) return a - b;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * dir;
      });
    }
    for (const h of this.head.children) {
      h.setAttribute(
        'aria-sort',
        h.dataset.key !== key ? 'none' : this.sortDir > 0 ? 'ascending' : 'descending');
    }
    this.spacer.style.height = `${this.view.length * ROW_HEIGHT}px`;
    this.paint(true);
  }

  // The row elements in view, refilled from the current position.
  paint(force = false) {
    const height = this.scroller.clientHeight || 600;
    const want = Math.ceil(height / ROW_HEIGHT) + 2 * OVERSCAN;
    while (this.pool.length < want) this.pool.push(this.makeRow());
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW_HEIGHT) - OVERSCAN);
    if (!force && first === this.first) return;
    this.first = first;
    this.body.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    for (let k = 0; k < this.pool.length; k++) {
      const el = this.pool[k];
      const vi = first + k;
      if (k >= want || vi >= this.view.length) {
        if (el.parentNode) el.remove();
        continue;
      }
      if (!el.parentNode) this.body.append(el);
      this.fill(el, this.rows[this.view[vi]]);
    }
  }

  makeRow() {
    const el = document.createElement('div');
    el.className = 'vt-row';
    el.setAttribute('role', 'row');
    for (const c of this.columns) {
      const cell = document.createElement('div');
      cell.className = `vt-cell ${c.cls || ''}`;
      cell.setAttribute('role', 'cell');
      if (c.link) {
        const a = document.createElement('a');
        cell.append(a);
      }
      el.append(cell);
    }
    return el;
  }

  fill(el, row) {
    const cells = el.children;
    el.dataset.state = row.state;
    for (let j = 0; j < this.columns.length; j++) {
      const c = this.columns[j];
      const t = c.text(row);
      if (c.link) {
        const a = cells[j].firstChild;
        if (a.textContent !== t) {
          a.textContent = t;
          a.href = c.link(row);
          a.dataset.name = row.name;
        }
      } else if (cells[j].textContent !== t) {
        cells[j].textContent = t;
      }
    }
  }

  // How many row elements are in the page (for the test of virtual scrolling).
  rendered() {
    return this.body.children.length;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.paint();
  }
}
