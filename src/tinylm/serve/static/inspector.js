// tinylm inspector: tabs over the playground page (attention, logit lens, sampling knobs, embeddings).
// Plain JS, nothing loaded from outside; the numbers come from /api/inspect/* (tinylm.inspect.probe).
// The "Training" tab lives in live.js. Both files are served by `tinylm serve` from the package.
"use strict";

const inspector = (() => {
  const $ = (id) => document.getElementById(id);
  const shown = (ch) => (ch === "\n" ? "\u21b5" : ch === " " ? "\u2423" : ch);
  const VIEWS = [["generate", "Generate"], ["attention", "Attention"], ["lens", "Logit lens"],
    ["knobs", "Sampling knobs"], ["embeddings", "Embeddings"], ["live", "Training"]];
  const TEXT_VIEWS = ["attention", "lens", "knobs"];
  let active = "generate";
  const state = { attn: null, lensPos: null, knobPos: null, ticket: 0 };

  function el(tag, attrs = {}, text = "") {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
    if (text) node.textContent = text;
    return node;
  }

  // Only the newest request's answer is drawn: hovering fast fires many, and they may return out of order.
  class Stale extends Error {}

  async function api(path, body) {
    const ticket = state.ticket;
    const init = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const response = await fetch(path, init);
    const data = await response.json();
    if (ticket !== state.ticket) throw new Stale();
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  function fail(err) { $("inspect-error").textContent = err.message || String(err); }

  function buildTabs() {
    const heading = document.querySelector("h1");
    const generate = el("section", { id: "panel-generate", class: "panel" });
    for (const node of [...document.body.children]) {
      if (node !== heading && node.tagName !== "SCRIPT") generate.appendChild(node);
    }
    const nav = el("nav", { id: "tabs" });
    for (const [name, label] of VIEWS) {
      const button = el("button", { id: "tab-" + name, class: "tab", type: "button" }, label);
      button.addEventListener("click", () => select(name));
      nav.appendChild(button);
    }
    const bar = el("div", { id: "inspect-bar" });
    bar.innerHTML = '<textarea id="inspect-text" rows="2" placeholder="text to look inside"></textarea>' +
      '<button id="inspect-run" type="button">inspect</button><div id="inspect-error"></div>';
    heading.after(nav, bar, generate);
    for (const id of ["attention", "lens", "knobs", "embeddings", "live"]) {
      const panel = el("section", { id: "panel-" + id, class: "panel" });
      panel.innerHTML = PANELS[id];
      document.body.insertBefore(panel, document.querySelector("script"));
    }
    $("inspect-run").addEventListener("click", () => refresh());
  }

  const PANELS = {
    attention: '<div class="row"><label>layer <select id="attn-layer"></select></label>' +
      '<label>head <select id="attn-head"></select></label><span class="hint">hover a character: ' +
      "what it attends to (its row); darker = more weight</span></div>" +
      '<div id="attn-window"></div><div id="attn-text" class="tokens"></div><canvas id="attn-canvas"></canvas><div id="attn-readout"></div>',
    lens: '<p class="hint">Click a character: the top guesses for the character after it, read out after ' +
      "each layer (final LayerNorm + head applied to the residual stream).</p>" +
      '<div id="lens-text" class="tokens"></div><table id="lens-table"></table>',
    knobs: '<div class="row"><label>temperature <input id="knob-temperature" type="number" value="0.8" ' +
      'step="0.1" min="0"></label><label>top-k <input id="knob-top-k" type="number" min="1" step="1"></label>' +
      '<label>top-p <input id="knob-top-p" type="number" min="0.01" max="1" step="0.05"></label></div>' +
      '<p class="hint">Hover a character: the distribution the model drew it from, before and after each knob.</p>' +
      '<div id="knob-text" class="tokens"></div><div id="knob-summary"></div><table id="knob-table"></table>',
    embeddings: '<p class="hint">Each character\'s embedding on the two directions of largest variance (PCA). ' +
      'Hover a point.</p><svg id="emb-svg" width="640" height="420"></svg><div id="emb-readout"></div>',
    live: '<div id="live-status">connecting\u2026</div><svg id="live-chart" width="640" height="280"></svg>' +
      '<table id="live-table"></table><h2>Newest checkpoint</h2><div id="live-ckpt"></div>' +
      '<pre id="live-sample"></pre><div id="live-eval-samples"></div>',
  };

  function select(name) {
    active = name;
    for (const [view] of VIEWS) {
      $("panel-" + view).hidden = view !== name;
      $("tab-" + view).classList.toggle("active", view === name);
    }
    $("inspect-bar").hidden = !TEXT_VIEWS.includes(name);
    if (TEXT_VIEWS.includes(name) && !$("inspect-text").value) {
      // the playground's text, else the start of the newest checkpoint's sample (live.js keeps it)
      const sample = ($("live-sample").textContent || "").slice(0, 48);
      $("inspect-text").value = (typeof generated === "string" && generated) || $("prompt").value || sample;
    }
    refresh();
  }

  function tokenSpans(container, text, onPick, event = "mouseenter") {
    container.innerHTML = "";
    [...text].forEach((ch, pos) => {
      const span = el("span", { class: "tok", "data-pos": pos }, shown(ch));
      span.addEventListener(event, () => onPick(pos, span));
      container.appendChild(span);
    });
    return container.querySelectorAll(".tok");
  }

  async function refresh() {
    state.ticket += 1;
    $("inspect-error").textContent = "";
    const text = $("inspect-text").value;
    try {
      if (active === "attention") await showAttention(text);
      else if (active === "lens") await showLens(text, state.lensPos);
      else if (active === "knobs") await showKnobs(text, state.knobPos);
      else if (active === "embeddings") await showEmbeddings();
    } catch (err) { if (!(err instanceof Stale)) fail(err); }
  }

  // Attention: all layers and heads for the text's last block_size characters; the picker only redraws.
  async function showAttention(text) {
    state.attn = await api("/api/inspect/attention", { text });
    const [layers, heads] = [state.attn.weights.length, state.attn.weights[0].length];
    for (const [id, count] of [["attn-layer", layers], ["attn-head", heads]]) {
      const picker = $(id);
      const keep = Math.min(Number(picker.value) || 0, count - 1);
      picker.innerHTML = [...Array(count).keys()].map((i) => `<option value="${i}">${i}</option>`).join("");
      picker.value = String(keep);
      picker.onchange = () => { drawAttention(); highlightQuery(null); };
    }
    tokenSpans($("attn-text"), state.attn.tokens.join(""), (pos) => highlightQuery(pos));
    $("attn-window").textContent = state.attn.offset ? `the model sees the last ${state.attn.tokens.length} ` +
      `characters (block_size); the first ${state.attn.offset} are outside its window` : "";
    drawAttention();
  }

  function headMatrix() {
    return state.attn.weights[Number($("attn-layer").value)][Number($("attn-head").value)];  // (T, T)
  }

  function cellSize(T) { return Math.max(6, Math.min(28, Math.floor(448 / T))); }

  function drawAttention(query = null) {
    const m = headMatrix(), T = m.length, cell = cellSize(T), pad = 18;
    const canvas = $("attn-canvas"), ctx = canvas.getContext("2d");
    canvas.width = canvas.height = pad + T * cell;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = `${Math.min(12, cell)}px monospace`;
    ctx.fillStyle = "#333";
    ctx.textBaseline = "middle";
    state.attn.tokens.forEach((ch, i) => {
      ctx.fillText(shown(ch), pad + i * cell + 1, pad / 2);  // keys along the top
      ctx.fillText(shown(ch), 2, pad + i * cell + cell / 2);  // queries down the side
    });
    for (let q = 0; q < T; q++) {
      for (let k = 0; k < T; k++) {
        const shade = Math.round(255 * (1 - m[q][k]));
        ctx.fillStyle = `rgb(${shade},${shade},255)`;
        ctx.fillRect(pad + k * cell, pad + q * cell, cell, cell);
      }
    }
    if (query !== null) {
      ctx.strokeStyle = "#e0a100";
      ctx.lineWidth = 2;
      ctx.strokeRect(pad + 1, pad + query * cell + 1, T * cell - 2, cell - 2);
    }
    canvas.onmousemove = (e) => {
      const rect = canvas.getBoundingClientRect();
      const k = Math.floor((e.clientX - rect.left - pad) / cell), q = Math.floor((e.clientY - rect.top - pad) / cell);
      if (q >= 0 && q < T && k >= 0 && k < T) {
        highlightQuery(q);
        $("attn-readout").textContent += `; cell (${q}, ${k}) = ${m[q][k].toFixed(4)}`;
      }
    };
  }

  function highlightQuery(query) {
    drawAttention(query);
    const spans = $("attn-text").querySelectorAll(".tok");
    if (query === null) {
      spans.forEach((s) => { s.style.background = ""; s.classList.remove("query"); delete s.dataset.w; });
      $("attn-readout").textContent = "";
      return;
    }
    const row = headMatrix()[query];
    spans.forEach((s, k) => {
      s.dataset.w = String(row[k]);
      s.style.background = `rgba(43,108,176,${row[k].toFixed(3)})`;
      s.classList.toggle("query", k === query);
    });
    const best = row.map((w, k) => [w, k]).sort((a, b) => b[0] - a[0]).slice(0, 3);
    $("attn-readout").textContent = `'${shown(state.attn.tokens[query])}' (position ${query}) attends most to ` +
      best.map(([w, k]) => `'${shown(state.attn.tokens[k])}'@${k} ${(100 * w).toFixed(1)}%`).join(", ");
  }

  function bar(p, cls = "") {
    return `<span class="pbar ${cls}"><span style="width:${(100 * p).toFixed(1)}%"></span></span>`;
  }

  // Logit lens: the guesses for the character after position pos, after each layer.
  async function showLens(text, pos) {
    pos = pos === null || pos >= text.length ? text.length - 1 : pos;
    const data = await api("/api/inspect/logit-lens", { text: text.slice(0, pos + 1), k: 5 });
    const spans = tokenSpans($("lens-text"), text, (p) => { state.lensPos = p; refresh(); }, "click");
    spans[pos].classList.add("query");
    $("lens-table").innerHTML = "";
    for (const layer of data.layers) {
      const tr = el("tr", { class: "lens-row" });
      tr.appendChild(el("th", {}, layer.name));
      for (const { char, p } of layer.top) {
        const td = el("td", { "data-p": String(p) });
        td.innerHTML = `<b>${escape(shown(char))}</b> ${(100 * p).toFixed(1)}% ${bar(p)}`;
        tr.appendChild(td);
      }
      $("lens-table").appendChild(tr);
    }
  }

  function escape(s) { return s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`); }

  function optional(id) { const raw = $(id).value.trim(); return raw === "" ? null : Number(raw); }

  // Sampling knobs: the distribution for the character at pos (the text before it is the context).
  async function showKnobs(text, pos) {
    pos = pos === null || pos > text.length ? text.length : pos;
    const body = { text: text.slice(0, pos), temperature: Number($("knob-temperature").value),
      top_k: optional("knob-top-k"), top_p: optional("knob-top-p"), k: 15 };
    const data = await api("/api/inspect/sampling", body);
    const spans = tokenSpans($("knob-text"), text, (p) => { if (p !== state.knobPos) { state.knobPos = p; refresh(); } });
    if (pos < spans.length) spans[pos].classList.add("query");
    const actual = pos < text.length ? text[pos] : null;
    $("knob-summary").textContent = `${data.kept} characters keep a chance after top-k / top-p` +
      (actual === null ? " (next character after the text)" : ` (the character here is '${shown(actual)}')`);
    $("knob-table").innerHTML = "<tr><th></th><th>model</th><th>after temperature</th><th>after top-k / top-p</th></tr>";
    for (const row of data.rows) {
      const tr = el("tr", { class: "knob-row" + (row.char === actual ? " picked" : "") });
      tr.innerHTML = `<th>${escape(shown(row.char))}</th>` + ["model", "temperature", "sampled"].map((name) =>
        `<td data-p="${row[name]}">${bar(row[name], row[name] === 0 ? "dropped" : "")} ${(100 * row[name]).toFixed(1)}%</td>`).join("");
      $("knob-table").appendChild(tr);
    }
  }

  async function showEmbeddings() {
    const { points } = await api("/api/inspect/embeddings");
    const svg = $("emb-svg"), W = 640, H = 420, pad = 24;
    const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
    const sx = (x) => pad + (W - 2 * pad) * (x - Math.min(...xs)) / ((Math.max(...xs) - Math.min(...xs)) || 1);
    const sy = (y) => H - pad - (H - 2 * pad) * (y - Math.min(...ys)) / ((Math.max(...ys) - Math.min(...ys)) || 1);
    svg.innerHTML = "";
    for (const p of points) {
      const g = document.createElementNS("http://www.w3.org/2000/svg", "g");
      g.setAttribute("class", "point");
      g.setAttribute("transform", `translate(${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)})`);
      g.innerHTML = `<circle r="4"></circle><text x="6" y="4">${escape(shown(p.char))}</text>`;
      g.addEventListener("mouseenter", () => {
        $("emb-readout").textContent = `'${shown(p.char)}' at (${p.x.toFixed(3)}, ${p.y.toFixed(3)})`;
        g.classList.add("hover");
      });
      g.addEventListener("mouseleave", () => g.classList.remove("hover"));
      svg.appendChild(g);
    }
  }

  function init() {
    buildTabs();
    for (const id of ["knob-temperature", "knob-top-k", "knob-top-p"]) $(id).addEventListener("change", () => refresh());
    select("generate");
  }

  return { init, refresh, select, el, get active() { return active; } };
})();

inspector.init();
