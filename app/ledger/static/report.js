// The cost report: everything on it is drawn from GET /v1/stats (three calls: over time,
// by model, by mode). The API key comes from the page's #key=... fragment (never sent to
// the server in a URL), the session's storage, or the form.
"use strict";

const LAYERS = ["cache", "coalescing", "routing", "batching", "prompt_cache"];
const COLORS = {
  actual: "#2f5bea", naive: "#98a2b3", cache: "#12b76a", coalescing: "#7a5af8",
  routing: "#f79009", batching: "#2e90fa", prompt_cache: "#ee46bc",
  p50: "#2f5bea", p95: "#f79009", p99: "#f04438", exact: "#12b76a", semantic: "#7a5af8",
};
const charts = {};
window.thriftyReport = { charts, loaded: false, error: null };

function apiKey() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromHash = fragment.get("key");
  if (fromHash) {
    sessionStorage.setItem("thrifty-key", fromHash);
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return fromHash;
  }
  return document.getElementById("key").value || sessionStorage.getItem("thrifty-key") || "";
}

async function stats(key, params) {
  const query = new URLSearchParams(params);
  const response = await fetch("/v1/stats?" + query.toString(), {
    headers: { Authorization: "Bearer " + key },
  });
  const body = await response.json();
  if (!response.ok) {
    throw new Error((body.error && body.error.message) || "HTTP " + response.status);
  }
  return body;
}

const money = (value) => Number(value);
function usd(value) {
  const n = Number(value);
  if (n === 0) return "$0";
  return n >= 1 ? "$" + n.toFixed(2) : "$" + n.toPrecision(3);
}
const pct = (value) => (value === null || value === undefined ? "–" : (100 * value).toFixed(1) + " %");
const secs = (value) => (value === null || value === undefined ? "–" : Number(value).toFixed(value < 10 ? 2 : 1) + " s");

function tiles(total) {
  const saved = money(total.saved_usd);
  const naive = money(total.naive_cost_usd);
  const items = [
    ["Cost", usd(total.cost_usd), "naive " + usd(total.naive_cost_usd)],
    ["Saved", usd(total.saved_usd), naive > 0 ? pct(saved / naive) + " of naive" : ""],
    ["Cost per request", total.cpr_usd === null ? "–" : usd(total.cpr_usd),
      total.naive_cpr_usd === null ? "" : "naive " + usd(total.naive_cpr_usd)],
    ["Jobs", String(total.jobs.total),
      `${total.jobs.completed} completed · ${total.jobs.failed} failed · ${total.jobs.cancelled} cancelled`],
    ["LPR p50 / p95 / p99", secs(total.lpr_seconds.p50),
      secs(total.lpr_seconds.p95) + " / " + secs(total.lpr_seconds.p99)],
    ["Throughput", Number(total.throughput_jobs_per_s).toFixed(3) + " /s",
      total.peak_minute_jobs_per_s === null ? "" : "peak minute " + Number(total.peak_minute_jobs_per_s).toFixed(2) + " /s"],
    ["Cache hit rate", pct(total.cache_hit_rate.total),
      "exact " + pct(total.cache_hit_rate.exact) + " · semantic " + pct(total.cache_hit_rate.semantic)],
    ["Deadlines met", pct(total.deadlines.met_rate), `${total.deadlines.met} of ${total.deadlines.jobs}`],
  ];
  const root = document.getElementById("tiles");
  root.replaceChildren(...items.map(([label, value, hint]) => {
    const tile = document.createElement("div");
    tile.className = "tile";
    for (const [cls, text] of [["label", label], ["value", value], ["hint", hint]]) {
      const part = document.createElement("div");
      part.className = cls;
      part.textContent = text;
      tile.appendChild(part);
    }
    return tile;
  }));
}

function draw(id, config) {
  if (charts[id]) charts[id].destroy();
  config.options = Object.assign(
    { responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: "bottom" } } },
    config.options || {});
  charts[id] = new Chart(document.getElementById(id), config);
}

function label(key, unit) {
  const date = new Date(key);
  if (Number.isNaN(date.getTime())) return key;
  return unit === "day" ? date.toISOString().slice(0, 10) : date.toISOString().slice(5, 16).replace("T", " ");
}

function render(overTime, byModel, byMode, unit) {
  const total = overTime;
  tiles(total);
  const times = overTime.groups.map((g) => label(g.key, unit));
  draw("chart-cost", {
    type: "line",
    data: { labels: times, datasets: [
      { label: "actual", data: overTime.groups.map((g) => money(g.cost_usd)), borderColor: COLORS.actual, backgroundColor: COLORS.actual, tension: 0.2 },
      { label: "naive", data: overTime.groups.map((g) => money(g.naive_cost_usd)), borderColor: COLORS.naive, backgroundColor: COLORS.naive, borderDash: [6, 4], tension: 0.2 },
    ] },
  });
  draw("chart-savings", {
    type: "bar",
    data: { labels: LAYERS.map((l) => l.replace("_", " ")), datasets: [{
      label: "saved (USD)", data: LAYERS.map((l) => money(total.savings_usd[l])),
      backgroundColor: LAYERS.map((l) => COLORS[l]) }] },
    options: { plugins: { legend: { display: false } } },
  });
  const modes = [["all", total.lpr_seconds], ...Object.entries(total.lpr_seconds_by_mode)];
  draw("chart-lpr", {
    type: "bar",
    data: { labels: modes.map(([m]) => m), datasets: ["p50", "p95", "p99"].map((q) => ({
      label: q, data: modes.map(([, p]) => p[q]), backgroundColor: COLORS[q] })) },
    options: { scales: { y: { type: "logarithmic", title: { display: true, text: "seconds" } } } },
  });
  draw("chart-throughput", {
    type: "bar",
    data: { labels: times, datasets: [
      { label: "mean", data: overTime.groups.map((g) => g.throughput_jobs_per_s), backgroundColor: COLORS.actual },
      { label: "peak minute", data: overTime.groups.map((g) => g.peak_minute_jobs_per_s), backgroundColor: COLORS.p95 },
    ] },
  });
  draw("chart-cache", {
    type: "bar",
    data: { labels: byModel.groups.map((g) => g.key), datasets: ["exact", "semantic"].map((kind) => ({
      label: kind, data: byModel.groups.map((g) => g.cache_hit_rate[kind] || 0), backgroundColor: COLORS[kind] })) },
    options: { scales: { x: { stacked: true }, y: { stacked: true, max: 1, ticks: { format: { style: "percent" } } } } },
  });
  draw("chart-models", {
    type: "bar",
    data: { labels: byModel.groups.map((g) => g.key), datasets: [
      { label: "actual", data: byModel.groups.map((g) => money(g.cost_usd)), backgroundColor: COLORS.actual },
      { label: "naive", data: byModel.groups.map((g) => money(g.naive_cost_usd)), backgroundColor: COLORS.naive },
    ] },
  });
  const modesText = byMode.groups.map((g) => `${g.key}: ${g.jobs.completed} jobs, p95 ${secs(g.lpr_seconds.p95)}`).join(" · ");
  document.getElementById("footnote").textContent =
    `${total.since} – ${total.until}. ${modesText}. ${total.lpr_resolution}.`;
}

async function load() {
  const status = document.getElementById("status");
  const key = apiKey();
  if (!key) {
    status.textContent = "Enter an API key with the stats:read scope.";
    return;
  }
  const since = document.getElementById("range").value;
  const unit = since.endsWith("d") && since !== "1d" ? "day" : "hour";
  status.className = "";
  status.textContent = "Loading…";
  try {
    const [overTime, byModel, byMode] = await Promise.all([
      stats(key, { since, group_by: unit }),
      stats(key, { since, group_by: "model" }),
      stats(key, { since, group_by: "mode" }),
    ]);
    render(overTime, byModel, byMode, unit);
    status.textContent = overTime.jobs.total === 0 ? "No job ended in this range." : "";
    window.thriftyReport.loaded = true;
  } catch (error) {
    status.className = "error";
    status.textContent = "Could not load the stats: " + error.message;
    window.thriftyReport.error = error.message;
  }
}

document.getElementById("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  const typed = document.getElementById("key").value;
  if (typed) sessionStorage.setItem("thrifty-key", typed);
  load();
});
document.getElementById("range").addEventListener("change", load);
load();
