// The monitor page of runnel serve: it fetches api/status (broker.Status as
// JSON) every two seconds and renders its topics and consumer groups. Text
// from the broker is set with textContent only, never parsed as HTML.
"use strict";

const refreshMillis = 2000;

// el makes an element with the given class (or none) and children, strings
// becoming text.
function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  e.append(...children.map(c => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return e;
}

// table makes a table; a column whose heading starts with "#" holds numbers
// and is aligned right.
function table(headings, rows) {
  const num = headings.map(h => h.startsWith("#"));
  const head = el("tr", "", ...headings.map((h, i) => el("th", num[i] ? "num" : "", num[i] ? h.slice(1) : h)));
  const body = rows.map(r => el("tr", "", ...r.map((c, i) => (c instanceof Node && c.tagName === "TD" ? c : el("td", num[i] ? "num" : "", c)))));
  return el("table", "", el("thead", "", head), el("tbody", "", ...body));
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function renderTopics(topics) {
  const rows = [];
  for (const t of topics) {
    for (const p of t.partitions) {
      rows.push([t.name + (t.internal ? " (internal)" : ""), p.partition, p.log_start_offset, p.high_watermark,
        el("td", p.last_stable_offset < p.high_watermark ? "num lagging" : "num", p.last_stable_offset), p.log_end_offset, bytes(p.size_bytes)]);
    }
  }
  if (rows.length === 0) return el("p", "muted", "No topics.");
  return table(["Topic", "#Partition", "#Log start", "#High watermark", "#Last stable", "#Log end", "#Size"], rows);
}

function renderGroup(g) {
  const title = el("h3", "", g.group, " ", el("span", "muted", `${g.state}, generation ${g.generation}` + (g.protocol ? `, ${g.protocol}` : "")));
  const members = g.members.length === 0
    ? el("p", "muted", "No members.")
    : table(["Member", "Client", "Host", "Assigned"], g.members.map(m => [
        m.member_id + (m.instance_id ? ` (${m.instance_id})` : ""),
        m.client_id,
        m.client_host,
        m.assignments.map(a => `${a.topic} [${a.partitions.join(", ")}]`).join("; "),
      ]));
  const offsets = g.offsets.length === 0
    ? el("p", "muted", "No committed or assigned partitions.")
    : table(["Topic", "#Partition", "#Committed", "#High watermark", "#Lag", "Member"], g.offsets.map(o => [
        o.topic,
        o.partition,
        o.committed === null ? "–" : o.committed,
        o.high_watermark < 0 ? "–" : o.high_watermark,
        el("td", o.lag > 0 ? "num lagging" : "num", o.lag < 0 ? "–" : o.lag),
        o.member_id || "",
      ]));
  return el("div", "", title, members, offsets);
}

function renderTransactions(txns) {
  if (txns.length === 0) return el("p", "muted", "No open transactions.");
  const now = Date.now();
  return table(["Transactional id", "#Producer", "#Epoch", "State", "#Open for", "#Timeout", "Partitions"], txns.map(x => [
    x.transactional_id,
    x.producer_id,
    x.producer_epoch,
    x.state,
    el("td", x.started_ms > 0 && now - x.started_ms > x.timeout_ms / 2 ? "num lagging" : "num", x.started_ms > 0 ? `${((now - x.started_ms) / 1000).toFixed(1)} s` : "–"),
    `${(x.timeout_ms / 1000).toFixed(0)} s`,
    x.partitions.map(p => `${p.topic} [${p.partitions.join(", ")}]`).join("; "),
  ]));
}

function render(st) {
  document.getElementById("broker").textContent =
    `node ${st.node_id} at ${st.addr}, cluster ${st.cluster_id}, updated ${new Date().toLocaleTimeString()}`;
  document.getElementById("topics").replaceChildren(renderTopics(st.topics));
  document.getElementById("groups").replaceChildren(
    ...(st.groups.length === 0 ? [el("p", "muted", "No consumer groups.")] : st.groups.map(renderGroup)));
  document.getElementById("transactions").replaceChildren(renderTransactions(st.transactions || []));
}

async function refresh() {
  const error = document.getElementById("error");
  try {
    const resp = await fetch("api/status", { cache: "no-store" });
    if (!resp.ok) throw new Error(`api/status: ${resp.status} ${resp.statusText}`);
    render(await resp.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = `Could not refresh: ${e.message}`;
    error.hidden = false;
  } finally {
    setTimeout(refresh, refreshMillis);
  }
}

refresh();
