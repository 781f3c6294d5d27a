// tinylm inspector, "Training" tab: loss curves from metrics.jsonl as the run writes it, and the newest
// checkpoint (server-sent events from /api/live/events). A new checkpoint refreshes the other tabs.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SERIES = [["train_loss", "#2b6cb0"], ["val_loss", "#e0a100"]];
  let metrics = [];
  let version = null;

  function drawChart() {
    const svg = $("live-chart"), W = 640, H = 280, pad = 40;
    const points = metrics.filter((m) => typeof m.step === "number");
    const values = points.flatMap((m) => SERIES.map(([key]) => m[key]).filter((v) => typeof v === "number"));
    if (!values.length) { svg.innerHTML = ""; return; }
    const steps = points.map((m) => m.step);
    const [x0, x1] = [Math.min(...steps), Math.max(...steps)], [y0, y1] = [Math.min(...values), Math.max(...values)];
    const sx = (x) => pad + (W - 2 * pad) * (x - x0) / ((x1 - x0) || 1);
    const sy = (y) => H - pad - (H - 2 * pad) * (y - y0) / ((y1 - y0) || 1);
    let html = `<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" class="axis"/>` +
      `<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" class="axis"/>` +
      `<text x="${pad}" y="${H - 12}">step ${x0}</text><text x="${W - pad - 60}" y="${H - 12}">step ${x1}</text>` +
      `<text x="2" y="${pad}">${y1.toFixed(3)}</text><text x="2" y="${H - pad}">${y0.toFixed(3)}</text>`;
    SERIES.forEach(([key, colour], i) => {
      const pts = points.filter((m) => typeof m[key] === "number").map((m) => `${sx(m.step).toFixed(1)},${sy(m[key]).toFixed(1)}`);
      html += `<polyline class="series" data-key="${key}" data-points="${pts.length}" fill="none" stroke="${colour}" ` +
        `stroke-width="2" points="${pts.join(" ")}"/><text x="${W - pad - 80}" y="${pad + 16 * i}" style="fill:${colour}">${key}</text>`;
    });
    svg.innerHTML = html;
  }

  function drawTable() {
    const last = metrics[metrics.length - 1];
    const table = $("live-table");
    table.innerHTML = "";
    if (!last) return;
    for (const [key, value] of Object.entries(last)) {
      if (typeof value !== "number" && value !== null) continue;
      const tr = document.createElement("tr");
      tr.innerHTML = "<th></th><td></td>";
      tr.children[0].textContent = key;
      tr.children[1].textContent = value === null ? "n/a" : key === "time" ? new Date(value * 1000).toISOString()
        : Number.isInteger(value) ? String(value) : value.toPrecision(5);
      table.appendChild(tr);
    }
    const samples = [last.sample, ...(Array.isArray(last.samples) ? last.samples : [])].filter((s) => typeof s === "string");
    $("live-eval-samples").textContent = samples.length ? `samples of the eval at step ${last.step}:\n` + samples.join("\n---\n") : "";
  }

  function status() {
    const last = metrics[metrics.length - 1];
    $("live-status").textContent = `${metrics.length} evaluations` + (last ? `, latest at step ${last.step}` : "");
  }

  function onCheckpoint(data) {
    $("live-ckpt").textContent = `step ${data.step} (model version ${data.version})` +
      (data.error ? ` \u2014 the newest ckpt.pt did not load, still showing this one: ${data.error}` : "");
    $("live-ckpt").dataset.step = String(data.step);
    $("live-sample").textContent = data.sample;
    if (version !== null && data.version !== version && inspector.active !== "live") inspector.refresh();
    version = data.version;
  }

  const source = new EventSource("/api/live/events");
  source.addEventListener("reset", () => { metrics = []; drawChart(); drawTable(); status(); });
  source.addEventListener("metric", (e) => { metrics.push(JSON.parse(e.data)); drawChart(); drawTable(); status(); });
  source.addEventListener("checkpoint", (e) => onCheckpoint(JSON.parse(e.data)));
  source.onerror = () => { $("live-status").textContent = "disconnected; retrying\u2026"; };
})();
