/* The dashboard (docs/dashboard.md): every view reads the documented HTTP API
 * (docs/http-api.md) with the project API key the user signed in with. The key lives in
 * this tab only: in memory and in sessionStorage (gone when the tab closes), sent as the
 * X-API-Key header; never in a URL, a cookie, localStorage or the console.
 *
 * `window.ledgerDashboard.state` holds what each view shows (the chart's series, per-day
 * totals, the receipt shown), so tests and curious users can read the figures back.
 */
"use strict";

(function () {
  const KEY_SLOT = "llmring.apiKey";
  const NANOS = 1e9;
  const state = { project: null, origin: null, chart: null, receipt: null, log: null,
    receiptsOffset: 0, loading: 0 };
  window.ledgerDashboard = { state };
  let apiKey = sessionStorage.getItem(KEY_SLOT);

  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, code, detail) {
      super(detail || `the server answered ${status}`);
      this.status = status; this.code = code;
    }
  }

  async function api(path, params = {}) {
    const url = new URL(path, window.location.origin);
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) url.searchParams.set(k, v);
    state.loading += 1;
    try {
      let answer;
      try {
        answer = await fetch(url, { headers: { "X-API-Key": apiKey }, cache: "no-store",
          credentials: "omit", referrerPolicy: "no-referrer" });
      } catch {
        throw new ApiError(0, "unreachable", "the server cannot be reached");
      }
      if (!answer.ok) {
        let body = {};
        try { body = await answer.json(); } catch { /* not JSON: the status says it */ }
        throw new ApiError(answer.status, body.code, body.detail);
      }
      return await answer.json();
    } finally {
      state.loading -= 1;
    }
  }

  // -- formatting ------------------------------------------------------------------------
  function usd(nanos) {
    const value = nanos / NANOS;
    const digits = value !== 0 && Math.abs(value) < 0.01 ? 6 : 2;
    return "$" + value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  const count = (n) => Number(n).toLocaleString("en-US");

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function showError(id, error) {
    const box = $(id);
    if (!error) { box.hidden = true; box.textContent = ""; return; }
    box.hidden = false;
    box.textContent = error.message;
    if (error.status === 401) signOut("Your API key is no longer accepted; sign in again.");
  }

  // -- sign-in ---------------------------------------------------------------------------
  async function signIn(key) {
    if (!/^[\x21-\x7e]+$/.test(key)) {
      throw new Error("An API key is one word of printable ASCII characters (llr_…): check what was pasted.");
    }
    apiKey = key;
    try {
      const project = await api("/api/v1/project");
      state.project = project.project; state.origin = project.origin;
    } catch (error) {
      apiKey = null;
      throw error.status === 401
        ? new Error("This API key was not accepted: it is unknown or revoked. Check it " +
          "(llmring keys list) and try again.")
        : error;
    }
    sessionStorage.setItem(KEY_SLOT, key);
    $("project-name").textContent = `project ${state.project}`;
    $("nav").hidden = false; $("who").hidden = false;
  }

  function signOut(message) {
    apiKey = null; state.project = null;
    sessionStorage.removeItem(KEY_SLOT);
    $("nav").hidden = true; $("who").hidden = true;
    if (message) { $("signin-error").hidden = false; $("signin-error").textContent = message; }
    if (window.location.hash) history.replaceState(null, "", window.location.pathname);
    show("signin");
  }

  // -- views -----------------------------------------------------------------------------
  function show(view) {
    for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
    for (const a of document.querySelectorAll("#nav a[data-view]")) {
      a.classList.toggle("active", a.dataset.view === view || (view === "receipt" && a.dataset.view === "receipts"));
    }
    document.body.dataset.view = view;
  }

  async function route() {
    if (!state.project) { show("signin"); return; }
    const [, view, arg] = (window.location.hash || "#/overview").split("/");
    document.body.dataset.ready = "false";
    try {
      if (view === "receipts") { show("receipts"); await loadReceipts(); }
      else if (view === "receipt" && arg) { show("receipt"); await loadReceipt(decodeURIComponent(arg)); }
      else if (view === "log") { show("log"); await loadLog(); }
      else { show("overview"); await loadOverview(); }
    } finally {
      document.body.dataset.ready = "true";
    }
  }

  // -- overview --------------------------------------------------------------------------
  /** The UTC offset of `zone` at the instant `ms`, in minutes. */
  function offsetMinutes(zone, ms) {
    const parts = Object.fromEntries(new Intl.DateTimeFormat("en-US", { timeZone: zone,
      hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
      minute: "2-digit", second: "2-digit" }).formatToParts(new Date(ms)).map((p) => [p.type, p.value]));
    const local = Date.UTC(+parts.year, +parts.month - 1, +parts.day, +parts.hour, +parts.minute, +parts.second);
    return Math.round((local - Math.floor(ms / 1000) * 1000) / 60000);
  }

  /** Local midnight starting `day` (YYYY-MM-DD) in `zone`, as ISO 8601 with its offset. */
  function midnight(day, zone) {
    const [y, m, d] = day.split("-").map(Number);
    const naive = Date.UTC(y, m - 1, d);
    let offset = offsetMinutes(zone, naive);
    offset = offsetMinutes(zone, naive - offset * 60000);
    const sign = offset < 0 ? "-" : "+"; const abs = Math.abs(offset);
    return `${day}T00:00:00${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
  }

  function nextDay(day) {
    const [y, m, d] = day.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, d + 1)).toISOString().slice(0, 10);
  }

  function today(zone) {
    return new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).format(new Date());
  }

  function validZone(zone) {
    try { new Intl.DateTimeFormat("en-US", { timeZone: zone }); return true; } catch { return false; }
  }

  function dimension() {
    const choice = $("dimension").value;
    if (choice !== "meta") return choice;
    const key = $("meta-key").value.trim();
    if (!key) throw new Error("Name the metadata key to stack by (for example customer).");
    return `meta.${key}`;
  }

  async function loadOverview() {
    showError("overview-error", null);
    const zone = $("tz").value.trim();
    if (!validZone(zone)) { showError("overview-error", new Error(`${zone} is not an IANA time zone this browser knows`)); return; }
    const from = $("from").value; const to = $("to").value;
    if (!from || !to || from > to) { showError("overview-error", new Error("Choose a From date on or before the To date.")); return; }
    let by;
    try { by = dimension(); } catch (error) { showError("overview-error", error); return; }
    const window_ = { tz: zone, start: midnight(from, zone), end: midnight(nextDay(to), zone) };
    const [rollup, uncertified, budgets] = await Promise.allSettled([
      api("/api/v1/usage/rollup", { by: `day,${by}`, ...window_ }),
      api("/api/v1/receipts/uncertified", { limit: 1 }),
      api("/api/v1/budgets/status"),
    ]);
    if (rollup.status === "rejected") { showError("overview-error", rollup.reason); return; }
    drawRollup(rollup.value, by, from, to);
    if (uncertified.status === "fulfilled") {
      const u = uncertified.value;
      $("uncertified").textContent = usd(u.total_cost_nanos);
      $("uncertified-count").textContent = `${count(u.total)} calls` +
        (u.unpriced_logs ? `, ${count(u.unpriced_logs)} unpriced` : "");
    }
    drawBudgets(budgets.status === "fulfilled" ? budgets.value.budgets : []);
  }

  function drawRollup(rollup, by, from, to) {
    const days = []; // every day of the period, so that gaps show as gaps
    for (let d = from; d <= to; d = nextDay(d)) days.push(d);
    const series = {}; const dayTotals = {}; const dayCalls = {}; const dayUnpriced = {};
    for (const d of days) { dayTotals[d] = 0; dayCalls[d] = 0; dayUnpriced[d] = 0; }
    let calls = 0; let cost = 0; let unpriced = 0;
    for (const row of rollup.rows) {
      const day = String(row.day).slice(0, 10);
      const name = row[by] === null || row[by] === undefined ? "(none)" : String(row[by]);
      if (!(day in dayTotals)) { days.push(day); dayTotals[day] = 0; dayCalls[day] = 0; dayUnpriced[day] = 0; }
      series[name] = series[name] || {};
      series[name][day] = (series[name][day] || 0) + row.cost_nanos;
      dayTotals[day] += row.cost_nanos; dayCalls[day] += row.calls; dayUnpriced[day] += row.unpriced_calls;
      calls += row.calls; cost += row.cost_nanos; unpriced += row.unpriced_calls;
    }
    days.sort();
    state.chart = { by, tz: rollup.tz, days, dayTotals, dayCalls,
      series: Object.fromEntries(Object.entries(series).map(([n, v]) => [n, days.map((d) => v[d] || 0)])) };
    $("total-cost").textContent = usd(cost);
    $("total-calls").textContent = count(calls);
    $("unpriced-calls").textContent = count(unpriced);
    const warning = $("unpriced-warning");
    warning.hidden = unpriced === 0;
    warning.textContent = unpriced ? `${count(unpriced)} ${unpriced === 1 ? "call has" : "calls have"} no price: they count as $0 here. ` +
      "Give their cost when logging, or add the model to the price table." : "";
    $("chart-title").textContent = `Cost per day by ${by} (${rollup.tz})`;
    const names = Object.keys(state.chart.series).sort((a, b) =>
      state.chart.series[b].reduce((x, y) => x + y, 0) - state.chart.series[a].reduce((x, y) => x + y, 0));
    const traces = names.map((name) => ({ type: "bar", name, x: days,
      y: state.chart.series[name].map((n) => n / NANOS),
      hovertemplate: `${name}<br>%{x}: $%{y:.6f}<extra></extra>` }));
    const layout = { barmode: "stack", yaxis: { title: { text: "USD" }, rangemode: "tozero",
      tickprefix: "$" }, xaxis: { type: "category" }, paper_bgcolor: "#fff",
    plot_bgcolor: "#fff", ...fitLayout() };
    if (window.Plotly) {
      window.Plotly.react("chart", traces, layout, { responsive: true, displayModeBar: false });
    }
    const body = $("days").tBodies[0];
    body.replaceChildren(...days.map((d) => el("tr", { class: dayUnpriced[d] ? "unpriced" : "" },
      el("td", { text: d }), el("td", { class: "num", text: count(dayCalls[d]) }),
      el("td", { class: "num", text: (dayTotals[d] / NANOS).toFixed(6) }),
      el("td", { class: "num", text: dayUnpriced[d] ? `⚠ ${count(dayUnpriced[d])}` : "0" }))));
  }

  /** The legend beside the bars on a wide screen, under them on a phone. */
  function fitLayout() {
    const narrow = $("chart").clientWidth < 560;
    return { margin: { t: 10, r: 10, b: narrow ? 40 : 60, l: 60 },
      legend: narrow ? { orientation: "h", x: 0, y: -0.2, yanchor: "top" }
        : { orientation: "v", x: 1.02, y: 1, yanchor: "top" } };
  }

  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (state.chart && window.Plotly && $("chart").data) window.Plotly.relayout("chart", fitLayout());
    }, 100);
  });

  function drawBudgets(budgets) {
    $("budgets-card").hidden = !budgets.length;
    $("budgets").tBodies[0].replaceChildren(...budgets.map((b) => el("tr", {},
      el("td", { text: b.name }),
      el("td", { text: `${b.period} (${b.current_period.start.slice(0, 10)}, ${b.tz})` }),
      el("td", { class: "num", text: usd(b.spent_nanos) }),
      el("td", { class: "num", text: usd(b.amount_nanos) }),
      el("td", { class: "num", text: `${Number(b.percent).toFixed(1)}%` }),
      el("td", { text: b.refusing ? "refusing logs (hard budget spent)"
        : b.crossed.length ? `crossed ${b.crossed.map((t) => t + "%").join(", ")}` : "ok" }))));
  }

  // -- receipts --------------------------------------------------------------------------
  const PAGE = 25;

  async function loadReceipts() {
    showError("receipts-error", null);
    let page;
    try { page = await api("/api/v1/receipts/", { limit: PAGE, offset: state.receiptsOffset }); } catch (error) {
      showError("receipts-error", error); return;
    }
    const body = $("receipts").tBodies[0];
    body.replaceChildren(...page.receipts.map((r) => el("tr", {},
      el("td", {}, el("a", { href: `#/receipt/${encodeURIComponent(r.receipt_id)}`, text: r.receipt_id })),
      el("td", { text: r.timestamp.replace("T", " ").slice(0, 19) }),
      el("td", { class: "num", text: count(r.certified_count) }),
      el("td", { class: "num", text: (r.total_cost_nanos / NANOS).toFixed(6) }),
      el("td", { text: r.description || "" }))));
    if (!page.receipts.length) body.append(el("tr", {}, el("td", { colspan: "5", text: "No receipts yet: llmring receipts generate certifies calls." })));
    $("receipts-page").textContent = page.total ? `${page.offset + 1}–${page.offset + page.receipts.length} of ${page.total}` : "";
    $("receipts-prev").disabled = page.offset === 0;
    $("receipts-next").disabled = page.offset + page.receipts.length >= page.total;
  }

  function breakdown(title, rows) {
    const entries = Object.entries(rows || {});
    return el("div", {}, el("h3", { text: title }), el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", { text: title.replace("By ", "") }), el("th", { class: "num", text: "calls" }),
        el("th", { class: "num", text: "cost (USD)" }))),
      el("tbody", {}, ...entries.map(([k, v]) => el("tr", { class: v.unpriced_calls ? "unpriced" : "" },
        el("td", { text: k || "(none)" }), el("td", { class: "num", text: count(v.calls) }),
        el("td", { class: "num", text: (v.cost_nanos / NANOS).toFixed(6) })))))));
  }

  function witnessItems(note, empty) {
    const lines = [];
    if (note) {
      for (const sig of window.LedgerVerify.parseNote(note).signatures) {
        const at = window.LedgerVerify.cosignedAt(sig);
        if (at) lines.push({ name: sig.name, keyId: window.LedgerVerify.bytesToHex(sig.keyHash), at: at.toISOString() });
      }
    }
    const items = lines.map((w) => el("li", { "data-witness": w.name },
      el("strong", { text: w.name }), ` (key ${w.keyId}) cosigned at ${w.at.replace(".000Z", "Z")}`));
    return { lines, items: items.length ? items : [el("li", { class: "muted", text: empty })] };
  }

  function download(name, data) {
    const url = URL.createObjectURL(new Blob([JSON.stringify(data, null, 2) + "\n"], { type: "application/json" }));
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  async function loadReceipt(id) {
    showError("receipt-error", null);
    let receipt; let logs;
    try {
      [receipt, logs] = await Promise.all([api(`/api/v1/receipts/${encodeURIComponent(id)}`),
        api(`/api/v1/receipts/${encodeURIComponent(id)}/logs`, { limit: 100 })]);
    } catch (error) { showError("receipt-error", error); return; }
    $("receipt-title").textContent = `Receipt ${receipt.receipt_id}`;
    $("receipt-certified").textContent = count(receipt.certified_count);
    $("receipt-cost").textContent = usd(receipt.total_cost_nanos);
    $("receipt-issued").textContent = receipt.timestamp;
    $("receipt-description").textContent = receipt.description || "–";
    $("receipt-root").textContent = receipt.merkle_root;
    $("receipt-key").textContent = receipt.key_id;
    const cp = receipt.log_checkpoint || {};
    $("receipt-checkpoint").textContent = cp.origin ? `${cp.origin} at size ${count(cp.size)}, root ${cp.root}` : "–";
    const summary = receipt.batch_summary || {};
    $("receipt-breakdowns").replaceChildren(breakdown("By model", summary.by_model),
      breakdown("By alias", summary.by_alias), breakdown("By provider", summary.by_provider),
      breakdown("By date", summary.by_date));
    // The checkpoint's cosigned note, as a proof bundle carries it (stored cosignatures).
    let witnesses = { lines: [], items: [el("li", { class: "muted", text: "No certified call to prove." })] };
    if (logs.logs.length) {
      try {
        const proof = await api(`/api/v1/receipts/${encodeURIComponent(id)}/proof/${encodeURIComponent(logs.logs[0].id)}`);
        witnesses = witnessItems(proof.log_proof && proof.log_proof.checkpoint,
          "No witness has cosigned this receipt's log checkpoint yet.");
      } catch (error) { showError("receipt-error", error); }
    }
    $("receipt-witnesses").replaceChildren(...witnesses.items);
    state.receipt = { id: receipt.receipt_id, certified_count: receipt.certified_count,
      witnesses: witnesses.lines };
    $("receipt-logs").tBodies[0].replaceChildren(...logs.logs.map((log) => {
      const button = el("button", { type: "button", class: "secondary", "data-log": log.id, text: "Download" });
      button.addEventListener("click", async () => {
        try {
          const bundle = await api(`/api/v1/receipts/${encodeURIComponent(id)}/proof/${encodeURIComponent(log.id)}`);
          download(`proof-${log.id}.json`, bundle);
        } catch (error) { showError("receipt-error", error); }
      });
      return el("tr", {}, el("td", { class: "hash", text: log.id }), el("td", { text: log.model || "" }),
        el("td", { class: "num", text: (log.cost_nanos / NANOS).toFixed(6) }),
        el("td", { text: String(log.timestamp || "").replace("T", " ").slice(0, 19) }), el("td", {}, button));
    }));
    $("receipt-logs-more").hidden = logs.total <= logs.logs.length;
    $("receipt-logs-more").textContent = `The first ${logs.logs.length} of ${count(logs.total)} calls; GET /api/v1/receipts/{id}/logs pages through all of them.`;
  }

  // -- the log ---------------------------------------------------------------------------
  async function loadLog() {
    showError("log-error", null);
    let cp;
    try { cp = await api("/api/v1/log/checkpoint"); } catch (error) { showError("log-error", error); return; }
    $("log-origin").textContent = cp.origin;
    $("log-size").textContent = count(cp.size);
    $("log-root").textContent = cp.root;
    $("log-issued").textContent = cp.issued_at;
    $("log-note").textContent = cp.cosigned_note || cp.note;
    const witnesses = witnessItems(cp.cosigned_note, "No witness has cosigned the latest checkpoint.");
    $("log-witnesses").replaceChildren(...witnesses.items);
    state.log = { origin: cp.origin, size: cp.size, witnesses: witnesses.lines, policy: null };
    let status;
    try { status = await api("/api/v1/log/witnesses"); } catch (error) { showError("log-error", error); return; }
    state.log.policy = status.policy ? { quorum: status.quorum, quorum_met: status.quorum_met,
      witnesses: status.witnesses.map((w) => ({ name: w.name, state: w.state })) } : null;
    if (!status.policy) {
      $("log-quorum").textContent = "No witness policy: the server submits its checkpoints to no witness (witnesses.policy, docs/formats.md).";
      $("log-policy").replaceChildren();
      return;
    }
    $("log-quorum").textContent = `Quorum ${status.quorum}: ${status.quorum_met ? "met" : "not met"} at size ${count(status.checkpoint_size)}.`;
    $("log-policy").replaceChildren(...status.witnesses.map((w) => {
      const cosigned = w.cosigned_latest ? `cosigned the latest checkpoint (size ${count(status.checkpoint_size)})`
        : w.cosigned_size === null || w.cosigned_size === undefined ? "has cosigned nothing yet"
          : `cosigned size ${count(w.cosigned_size)}${w.cosigned_at ? ` at ${w.cosigned_at}` : ""}`;
      const error = w.last_error ? `; last error: ${w.last_error}` : "";
      return el("li", { "data-witness": w.name, "data-state": w.state },
        el("strong", { text: w.name }), ` (${w.state}) ${cosigned}${error}`);
    }));
  }

  // -- start -----------------------------------------------------------------------------
  function setUp() {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    $("tz").value = zone;
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    $("zones").replaceChildren(...["UTC", ...zones.filter((z) => z !== "UTC")].map((z) => el("option", { value: z })));
    $("to").value = today(zone);
    const start = new Date(`${today(zone)}T00:00:00Z`); start.setUTCDate(start.getUTCDate() - 29);
    $("from").value = start.toISOString().slice(0, 10);
    $("dimension").addEventListener("change", () => { $("meta-key-label").hidden = $("dimension").value !== "meta"; });
    $("period").addEventListener("submit", (event) => { event.preventDefault(); route(); });
    $("signin-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $("api-key"); const key = input.value.trim();
      input.value = "";
      $("signin-error").hidden = true;
      try {
        await signIn(key);
        if (!window.location.hash) window.location.hash = "#/overview"; else await route();
      } catch (error) {
        $("signin-error").hidden = false; $("signin-error").textContent = error.message;
        document.body.dataset.ready = "true";
      }
    });
    $("sign-out").addEventListener("click", () => signOut());
    $("receipts-prev").addEventListener("click", () => { state.receiptsOffset = Math.max(0, state.receiptsOffset - PAGE); loadReceipts(); });
    $("receipts-next").addEventListener("click", () => { state.receiptsOffset += PAGE; loadReceipts(); });
    window.addEventListener("hashchange", route);
  }

  async function start() {
    setUp();
    if (apiKey) {
      try { await signIn(apiKey); } catch (error) { signOut(error.message); }
    }
    await route();
    document.body.dataset.ready = "true";
  }

  start();
})();
