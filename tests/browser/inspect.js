// In-page probes for labdriver.py. Each top-level function is evaluated by Playwright in the JupyterLab page.
// Cells are numbered from 1 over all cells (markdown included), as a reader counts them.

function lkNotebook() {
  return document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
}

function lkCells() {
  const nb = lkNotebook();
  return nb ? Array.from(nb.querySelectorAll(':scope .jp-Cell')) : [];
}

function lkCellOf(el) {
  const cell = el.closest('.jp-Cell');
  return lkCells().indexOf(cell) + 1;
}

function kernelReady() {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  if (!panel) return false;
  // "Select Kernel" dialog (notebook without kernelspec): accept the default kernel.
  const select = document.querySelector('.jp-Dialog .jp-mod-accept');
  if (select) select.click();
  const name = panel.querySelector('.jp-KernelName');
  const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const tip = ind ? ind.textContent : '';
  return !!name && !/No Kernel/.test(name.textContent) && /Idle/i.test(tip);
}

function lkCodeCells() {
  return lkCells().filter((c) => c.classList.contains('jp-CodeCell'));
}

function lkPrompt(cell) {
  const p = cell.querySelector('.jp-InputArea-prompt');
  return p ? p.textContent.trim() : '';
}

function runFinished() {
  const ind = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');
  if (!ind || ind.dataset.status !== 'idle') return false;
  const prompts = lkCodeCells().map(lkPrompt);
  if (prompts.some((p) => p.includes('*'))) return false;
  return prompts.some((p) => /\[\d+\]/.test(p));
}

const LK_BAD_WIDGET = /Error displaying widget|Loading widget\.\.\./;

function lkWidgetViews() {
  const nb = lkNotebook();
  // A widget view is an output rendered by the widget manager: an lm-Panel without data-mime-type, holding the
  // view (class jupyter-widgets), or only the text "Loading widget..." / "Error displaying widget: ...".
  if (!nb) return [];
  return Array.from(nb.querySelectorAll('.jp-OutputArea-output.lm-Panel:not([data-mime-type])'))
    .filter((o) => o.classList.contains('jupyter-widgets') || o.querySelector(':scope > .jupyter-widgets')
      || (o.childElementCount === 0 && LK_BAD_WIDGET.test(o.textContent)));
}

function lkMarks(gd) {
  return gd.querySelectorAll(
    '.scatterlayer .trace path.js-line, .scatterlayer .trace .point, .barlayer .point, .heatmaplayer image, '
    + '.imagelayer image, .contourlayer path, .pielayer path.surface, .boxlayer path, .violinlayer path',
  ).length;
}

// Rendering is asynchronous (widget views, plotly's renderer): settled when no widget is still loading and
// every SVG figure holding data has drawn it.
function pageSettled() {
  const nb = lkNotebook();
  if (!nb) return false;
  if (lkWidgetViews().some((v) => v.childElementCount === 0 && /Loading widget\.\.\./.test(v.textContent))) return false;
  return Array.from(nb.querySelectorAll('.js-plotly-plot')).every((gd) => {
    const traces = lkTraces(gd);
    const svgOnly = traces.every((t) => LK_SVG_TYPES.has(t.type));
    return !svgOnly || traces.every((t) => t.points === 0) || lkMarks(gd) > 0;
  });
}

// Number of data points in an array-like plotly attribute (arrays, nested arrays, typed arrays, b64 specs);
// null and non-finite entries are not points (a trace of NaNs draws nothing).
function lkCount(v) {
  return v != null && !(typeof v === 'number' && !Number.isFinite(v)) ? 1 : 0;
}

function lkLen(a) {
  if (a == null) return 0;
  if (ArrayBuffer.isView(a)) return Array.prototype.reduce.call(a, (s, v) => s + lkCount(v), 0);
  if (Array.isArray(a)) {
    return a.reduce((s, v) => s + (Array.isArray(v) || ArrayBuffer.isView(v) ? lkLen(v) : lkCount(v)), 0);
  }
  if (typeof a === 'object' && a.bdata) {
    if (a.shape) return String(a.shape).split(',').reduce((s, d) => s * parseInt(d, 10), 1);
    const size = { int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, float32: 4, float64: 8 }[a.dtype] || 8;
    return Math.floor((a.bdata.length * 3) / 4 / size);
  }
  return 0;
}

const LK_DATA_KEYS = ['x', 'y', 'z', 'values', 'r', 'lat', 'source'];
const LK_SVG_TYPES = new Set(['scatter', 'bar', 'heatmap', 'image', 'contour', 'histogram', 'pie', 'box', 'violin']);

function lkTracePoints(t) {
  if (t.source) return 1;
  if (t.z != null) return lkLen(t.z);
  const present = LK_DATA_KEYS.filter((k) => k !== 'source' && t[k] != null);
  return present.length ? Math.min(...present.map((k) => lkLen(t[k]))) : 0;
}

function lkTraces(gd) {
  const traces = (gd._fullData && gd._fullData.length ? gd._fullData : gd.data) || [];
  return traces.map((t) => ({
    type: t.type || 'scatter',
    visible: t.visible !== false,
    points: lkTracePoints(t),
  }));
}

// A short fingerprint of a figure's data: per trace its type, point count and a checksum of its values.
function lkFlatten(a, out) {
  if (a == null) return out;
  if (ArrayBuffer.isView(a) || Array.isArray(a)) {
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (Array.isArray(v) || ArrayBuffer.isView(v)) lkFlatten(v, out);
      else out.push(typeof v === 'number' ? v : String(v).length);
    }
  } else if (typeof a === 'object' && a.bdata) {
    out.push(a.bdata.length, a.bdata.charCodeAt(a.bdata.length >> 1) || 0, a.bdata.slice(-16));
  }
  return out;
}

function lkFingerprint(gd) {
  const traces = (gd._fullData && gd._fullData.length ? gd._fullData : gd.data) || [];
  return traces.map((t) => {
    let sum = 0;
    let n = 0;
    for (const k of ['x', 'y', 'z']) {
      const vals = lkFlatten(t[k], []);
      n += vals.length;
      vals.forEach((v, i) => {
        const num = typeof v === 'number' ? v : String(v).split('').reduce((s, c) => s + c.charCodeAt(0), 0);
        if (Number.isFinite(num)) sum += num * ((i % 7) + 1);
      });
    }
    return `${t.type || 'scatter'}:${n}:${sum.toPrecision(12)}`;
  }).join('|');
}

function lkPoints(gd) {
  return lkTraces(gd).reduce((s, t) => s + t.points, 0);
}

function inspectNotebook() {
  const nb = lkNotebook();
  const figures = Array.from(nb.querySelectorAll('.js-plotly-plot')).map((gd, i) => {
    const traces = lkTraces(gd);
    const marks = lkMarks(gd);
    return {
      index: i + 1,
      cell: lkCellOf(gd),
      traces,
      points: traces.reduce((s, t) => s + t.points, 0),
      marks,
      svgTypesOnly: traces.every((t) => LK_SVG_TYPES.has(t.type)),
      width: gd.offsetWidth,
      height: gd.offsetHeight,
    };
  });
  const views = lkWidgetViews();
  const broken = views
    .filter((v) => v.childElementCount === 0)
    .map((v) => ({ cell: lkCellOf(v), text: v.textContent.trim().slice(0, 120) || '(nothing rendered)' }));
  const controls = nb.querySelectorAll('.widget-slider, .widget-button, .widget-dropdown, .widget-toggle-buttons, '
    + '.widget-checkbox, .widget-text, .widget-inline-hbox.widget-select').length;
  const unexecuted = [];
  lkCells().forEach((c, i) => {
    if (!c.classList.contains('jp-CodeCell')) return;
    const src = c.querySelector('.jp-InputArea-editor');
    if (src && src.textContent.trim() === '') return;
    if (!/\[\d+\]/.test(lkPrompt(c))) unexecuted.push(i + 1);
  });
  return { figures, snapshots: lkSnapshots().length, widgets: { views: views.length, controls, broken }, unexecuted };
}

// A static plotly figure read back from the saved notebook: JupyterLab's plotly renderer shows the PNG snapshot it
// stored when it first drew the figure ("image/png" beside the figure's JSON) and builds the interactive graph only
// when the mouse enters it. A reader sees the figure: a snapshot with a loaded image counts as drawn.
function lkSnapshots() {
  const nb = lkNotebook();
  if (!nb) return [];
  return Array.from(nb.querySelectorAll('.jp-RenderedPlotly')).filter((r) => {
    if (r.querySelector('.js-plotly-plot')) return false;
    const img = r.querySelector('img.plot-img');
    return !!img && /^data:image\/png;base64,./.test(img.getAttribute('src') || '') && img.style.display !== 'none'
      && img.complete && img.naturalWidth > 0 && img.offsetWidth > 0 && img.offsetHeight > 0;
  });
}

// --- live check --------------------------------------------------------------------------------------------

const LK_RUN_LABEL = /^\s*(run|train|start|scan)\b/i;

function findLiveTarget(arg) {
  const cells = lkCells();
  const scope = arg && arg.cell != null && cells[arg.cell] ? cells[arg.cell] : lkNotebook();
  let control = Array.from(scope.querySelectorAll('button.widget-button, button.jupyter-button'))
    .find((b) => LK_RUN_LABEL.test(b.textContent) && !b.disabled);
  let kind = 'button';
  if (!control) {
    control = scope.querySelector('.widget-slider .noUi-handle, .noUi-handle');
    kind = 'slider';
  }
  if (!control) return null;
  const token = String(Date.now());
  control.setAttribute('data-lk-live-control', token);
  const plots = Array.from(lkNotebook().querySelectorAll('.js-plotly-plot'));
  const cell = lkCellOf(control);
  const after = (p) => control.compareDocumentPosition(p) & Node.DOCUMENT_POSITION_FOLLOWING;
  let fig = plots.find((p) => lkCellOf(p) === cell && after(p))
    || plots.find((p) => after(p))
    || plots.filter((p) => lkCellOf(p) === cell).pop();
  let label = control.textContent.trim();
  let canIncrease = true;
  if (kind === 'slider') {
    const box = control.closest('.widget-slider');
    const desc = box && box.querySelector('.widget-label');
    label = desc ? desc.textContent.trim() : 'slider';
    const now = parseFloat(control.getAttribute('aria-valuenow'));
    const max = parseFloat(control.getAttribute('aria-valuemax'));
    canIncrease = !(now >= max);
  }
  if (!fig) return { kind, label, cell, token, figure: null, canIncrease };
  const figCell = lkCellOf(fig);
  const ordinal = plots.filter((p) => lkCellOf(p) === figCell).indexOf(fig);
  return { kind, label, cell, token, figure: plots.indexOf(fig) + 1, figCell, ordinal, canIncrease };
}

// The figure is found afresh at every sample: an Output-widget redraw replaces the plot element.
function lkLiveFigure(target) {
  const plots = Array.from(lkNotebook().querySelectorAll('.js-plotly-plot')).filter((p) => lkCellOf(p) === target.figCell);
  return plots[target.ordinal] || null;
}

function startSampler(target) {
  const gd = lkLiveFigure(target);
  const initial = gd ? lkFingerprint(gd) : null;
  const s = {
    target, initial, last: initial, initialPoints: gd ? lkPoints(gd) : 0, finalPoints: 0,
    changes: 0, samples: 0, t0: performance.now(), lastChange: performance.now(), distinct: new Set(),
    missing: 0, timeline: [], states: [], issues: new Set(),
  };
  s.timer = setInterval(() => {
    const g = lkLiveFigure(target);
    s.samples += 1;
    if (!g) {
      s.missing += 1;
      return;
    }
    const f = lkFingerprint(g);
    s.finalPoints = lkPoints(g);
    if (f !== s.last) {
      s.changes += 1;
      s.last = f;
      s.lastChange = performance.now();
      s.distinct.add(f);
      if (s.timeline.length < 40) s.timeline.push([Math.round(s.lastChange - s.t0), lkPoints(g)]);
      if (s.states.length < 400) s.states.push([f, lkPoints(g)]);
      // what a reader sees while it runs: a partial figure must be readable too (judged a moment after the
      // change, once plotly has laid it out)
      if (s.issues.size < 20) {
        setTimeout(() => {
          const now = lkLiveFigure(target);
          if (now) lkAxisProblems(now).concat(lkTextProblems(now)).forEach((p) => s.issues.add(p));
        }, 30);
      }
    }
  }, 50);
  window.__lkLive = s;
  return true;
}

function samplerState() {
  const s = window.__lkLive;
  return { changes: s.changes, samples: s.samples, sinceChange: performance.now() - s.lastChange };
}

function stopSampler() {
  const s = window.__lkLive;
  clearInterval(s.timer);
  // Partial states: drawn data seen during the run that is neither the state before it nor the final one.
  const partial = new Set(s.states.filter(([f, n]) => n > 0 && f !== s.initial && f !== s.last).map(([f]) => f));
  const control = document.querySelector(`[data-lk-live-control='${s.target.token}']`);
  const area = control && control.closest('.jp-OutputArea-output');
  return {
    partial: partial.size, controlText: area ? area.innerText.replace(/\s+/g, ' ').trim().slice(-300) : '',
    changes: s.changes, distinct: s.distinct.size, samples: s.samples, elapsed: performance.now() - s.t0,
    sinceChange: performance.now() - s.lastChange, initial: s.initial, final: s.last,
    initialPoints: s.initialPoints, finalPoints: s.finalPoints, missing: s.missing, timeline: s.timeline,
    issues: [...s.issues],
  };
}

// Scroll the notebook to its top and return the page height that shows every cell (top bar to last cell).
function notebookHeight() {
  const nb = lkNotebook();
  if (!nb) return 900;
  const scroller = nb.closest('.jp-WindowedPanel-outer') || nb.querySelector('.jp-WindowedPanel-outer') || nb;
  scroller.scrollTop = 0;
  nb.scrollTop = 0;
  const cells = lkCells();
  const bottom = cells.length ? cells[cells.length - 1].getBoundingClientRect().bottom : 900;
  const statusBar = document.querySelector('#jp-main-statusbar');
  return bottom + 40 + (statusBar ? statusBar.offsetHeight : 0);
}

// --- liveness during Run All: figures sampled (every 100 ms) only while their own cell shows [*] ---------------

function startRunAllSampler() {
  const s = { per: {} };
  s.timer = setInterval(() => {
    const cells = lkCells();
    cells.forEach((c, i) => {
      if (!c.classList.contains('jp-CodeCell') || !lkPrompt(c).includes('*')) return;
      c.querySelectorAll('.js-plotly-plot').forEach((g, k) => {
        const n = lkPoints(g);
        if (n === 0) return;
        const key = `${i + 1}:${k + 1}`;
        const e = s.per[key] || (s.per[key] = { cell: i + 1, states: new Set() });
        if (e.states.size < 1000) e.states.add(lkFingerprint(g));
      });
    });
  }, 100);
  window.__lkRunAll = s;
  return true;
}

function stopRunAllSampler() {
  const s = window.__lkRunAll;
  if (!s) return [];
  clearInterval(s.timer);
  return Object.entries(s.per).map(([key, e]) => ({ figure: key, cell: e.cell, states: e.states.size }));
}

// --- what a reader sees in a figure: axis ranges against the data, overlapping or clipped text ----------------

function lkNumbers(a, out) {
  if (a == null) return out;
  if (ArrayBuffer.isView(a) || Array.isArray(a)) {
    for (let i = 0; i < a.length; i++) {
      const v = a[i];
      if (Array.isArray(v) || ArrayBuffer.isView(v)) lkNumbers(v, out);
      else if (typeof v === 'number' && Number.isFinite(v)) out.push(v);
    }
  }
  return out;
}

// Data coordinates of trace i along letter ('x' or 'y'): heatmap cell edges from plotly's calcdata, else the
// trace's values (indices when absent); bars and fills to zero include 0.
function lkAxisValues(gd, t, letter) {
  const cd = (gd.calcdata || []).find((c) => c && c[0] && c[0].trace === t);
  if (['heatmap', 'contour', 'image'].includes(t.type) && cd && cd[0][letter]) return lkNumbers(cd[0][letter], []);
  let vals = lkNumbers(t[letter], []);
  if (t[letter] == null) {
    const other = lkNumbers(t[letter === 'x' ? 'y' : 'x'], []);
    const start = t[letter + '0'] || 0;
    const step = t['d' + letter] || 1;
    vals = other.map((_, i) => start + i * step);
  }
  const valueAxis = t.orientation === 'h' ? 'x' : 'y';  // bars start at 0 along their value axis only
  if ((t.type === 'bar' && letter === valueAxis) || (t.fill && String(t.fill).includes('zero' + letter))) vals.push(0);
  if (cd && t['error_' + letter] && t['error_' + letter].visible) {  // error bars are data the reader must see
    cd.forEach((pt) => [pt[letter + 'h'], pt[letter + 's']].forEach((v) => {
      if (typeof v === 'number' && Number.isFinite(v)) vals.push(v);
    }));
  }
  return vals;
}

// Plotly fills an empty title with an editing placeholder ("Click to enter Plot title"): no title at all.
function lkText(t) {
  const text = String(t || '').replace(/<[^>]+>/g, '');
  return /^Click to enter .* title$/.test(text) ? '' : text;
}

function lkFmt(v, log) {
  return log ? `10^${Number(v.toFixed(2))}` : Number(v.toPrecision(4)).toString();
}

// Each visible linear/log axis: its displayed range must cover the data drawn on it, and not run beyond it by
// more than a factor of 10 in total (log axis; for data spanning more than 5 decades, 20% of its span: plotly's
// own padding of 5% per side) or 50% of the data's span (linear axis).
function lkAxisProblems(gd) {
  const fl = gd._fullLayout;
  if (!fl) return [];
  const out = [];
  const traces = (gd._fullData || []).filter((t) => t.visible === true);
  Object.keys(fl).filter((k) => /^[xy]axis\d*$/.test(k)).forEach((key) => {
    const ax = fl[key];
    if (!ax || ax.visible === false || !['linear', 'log'].includes(ax.type) || !ax.range) return;
    const letter = key[0];
    const log = ax.type === 'log';
    const mine = traces.filter((t) => (t[letter + 'axis'] || letter) === ax._id);
    let vals = [];
    let bars = false;
    mine.forEach((t) => {
      vals = vals.concat(lkAxisValues(gd, t, letter));
      bars = bars || t.type === 'bar' || t.type === 'histogram';
    });
    if (log) vals = vals.filter((v) => v > 0).map((v) => Math.log10(v));
    if (!vals.length) return;
    const dlo = Math.min(...vals);
    const dhi = Math.max(...vals);
    const rlo = Math.min(ax.range[0], ax.range[1]);
    const rhi = Math.max(ax.range[0], ax.range[1]);
    const axTitle = lkText(ax.title && ax.title.text);
    const name = `${ax._id}-axis${axTitle ? ` '${axTitle}'` : ''}`;
    const shown = `[${lkFmt(rlo, log)}, ${lkFmt(rhi, log)}]`;
    const data = `[${lkFmt(dlo, log)}, ${lkFmt(dhi, log)}]`;
    const tol = 1e-6 * Math.max(rhi - rlo, 1e-300);
    if (dlo < rlo - tol || dhi > rhi + tol) {
      out.push(`${name} shows ${shown} but its data spans ${data}: data outside the axis`);
    }
    const dspan = dhi - dlo;
    const rspan = rhi - rlo;
    if (dspan > 0 && !bars) {
      if (log && rspan - dspan > Math.max(1, 0.2 * dspan)) {
        out.push(`${name} (log) shows ${shown} for data in ${data}: ${(rspan - dspan).toFixed(1)} decades of empty `
          + 'axis (more than a factor of 10)');
      } else if (!log && rspan > 1.5 * dspan) {
        out.push(`${name} shows ${shown} for data in ${data}: the range is ${(rspan / dspan).toFixed(1)}x the data's `
          + 'span (more than 50% empty)');
      }
    }
  });
  return out;
}

function lkBoxes(gd) {
  const boxes = [];
  const add = (el, kind, label) => {
    const text = lkText((el.textContent || '').trim());
    if (!text) return;
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) return;
    boxes.push({ kind, label: label || text.slice(0, 40), r });
  };
  gd.querySelectorAll('.infolayer > g[class^="g-"][class$="title"] text').forEach((el) => {
    const cls = el.parentNode.getAttribute('class') || '';
    add(el, cls === 'g-gtitle' ? 'figure title' : 'axis title');
  });
  gd.querySelectorAll('.annotation .annotation-text-g').forEach((el) => add(el, 'annotation'));
  gd.querySelectorAll('.xaxislayer-above text, .yaxislayer-above text').forEach((el) => add(el, 'tick label'));
  return boxes;
}

// Text that collides: annotations, axis titles and tick labels overlapping each other (tick labels among
// themselves are plotly's job), or drawn past the figure's edge (clipped).
function lkTextProblems(gd) {
  const svg = gd.querySelector('.main-svg');
  if (!svg) return [];
  const frame = svg.getBoundingClientRect();
  const boxes = lkBoxes(gd);
  const out = [];
  const pad = 1;
  boxes.forEach((b) => {
    const r = b.r;
    if (r.left < frame.left - pad || r.right > frame.right + pad || r.top < frame.top - pad
      || r.bottom > frame.bottom + pad) out.push(`${b.kind} '${b.label}' is clipped at the figure's edge`);
  });
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const a = boxes[i];
      const b = boxes[j];
      if (a.kind === 'tick label' && b.kind === 'tick label') continue;
      const w = Math.min(a.r.right, b.r.right) - Math.max(a.r.left, b.r.left);
      const h = Math.min(a.r.bottom, b.r.bottom) - Math.max(a.r.top, b.r.top);
      if (w > 2 && h > 2) out.push(`${a.kind} '${a.label}' overlaps ${b.kind} '${b.label}'`);
    }
  }
  return [...new Set(out)].slice(0, 12);
}

function lkTitle(gd) {
  const fl = gd._fullLayout;
  return lkText(fl && fl.title && fl.title.text);
}

// Everything a reader should look at in each figure (after Run All, and on the live figure when a run ends).
function figureChecks() {
  const nb = lkNotebook();
  return Array.from(nb.querySelectorAll('.js-plotly-plot')).map((gd, i) => ({
    index: i + 1, cell: lkCellOf(gd), title: lkTitle(gd), axes: lkAxisProblems(gd), text: lkTextProblems(gd),
  }));
}

// stderr (warnings, tracebacks printed by libraries) anywhere in the page, Output widgets included.
function stderrOutputs() {
  const nb = lkNotebook();
  if (!nb) return [];
  return Array.from(nb.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]'))
    .map((el) => ({ cell: lkCellOf(el), text: el.innerText.trim().slice(0, 300) }))
    .filter((e) => e.text);
}
