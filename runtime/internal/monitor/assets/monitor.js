// The runnel monitor page: it draws the topology from api/topology, shows
// the partitions this instance owns from api/groups (polled), and queries
// tables through api/tables/{group}. Plain JavaScript and no library, so
// that the page works wherever the runtime does, offline included. URLs are
// relative, so that the page also works behind a proxy's path prefix.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const POLL_MS = 1000;

// el makes an HTML element; attrs are set as attributes (class included),
// children are nodes or strings (as text, never as HTML).
function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// svg makes an SVG element, like el.
function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null) continue;
    node.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  }
  return node;
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store" });
  const body = await resp.json().catch(() => ({ error: resp.status + " " + resp.statusText }));
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

// ---- the graph ----

// layout places the nodes of a graph in layers, left to right along the
// edges (a layered, Sugiyama-style drawing, kept simple):
//   - cycles (a group and its loop) are broken by turning their back edges
//     around;
//   - each node goes one layer after its furthest predecessor, and a source
//     just before its first successor;
//   - an edge that spans several layers gets a point in each layer between,
//     which takes a row there like a node, so that the edge runs between
//     the nodes rather than through them;
//   - a few sweeps order each layer by the mean row of its neighbours, to
//     uncross edges.
function layout(graph) {
  const nodes = graph.nodes.map((n) => ({ ...n, ins: [], outs: [] }));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges = graph.edges
    .filter((e) => byId.has(e.from) && byId.has(e.to))
    .map((e) => ({ ...e, back: false, via: [] }));
  for (const e of edges) {
    byId.get(e.from).outs.push(e);
    byId.get(e.to).ins.push(e);
  }

  // Depth-first from the sources: an edge to a node still being visited
  // closes a cycle.
  const seen = new Map();
  const visit = (n) => {
    seen.set(n.id, "open");
    for (const e of n.outs) {
      const m = byId.get(e.to);
      if (seen.get(m.id) === "open") e.back = true;
      else if (!seen.has(m.id)) visit(m);
    }
    seen.set(n.id, "done");
  };
  for (const n of nodes) if (n.ins.length === 0 && !seen.has(n.id)) visit(n);
  for (const n of nodes) if (!seen.has(n.id)) visit(n);
  const forward = edges.filter((e) => !e.back);

  const layerOf = new Map();
  const layer = (n) => {
    if (!layerOf.has(n.id)) {
      let l = 0;
      for (const e of n.ins) if (!e.back) l = Math.max(l, layer(byId.get(e.from)) + 1);
      layerOf.set(n.id, l);
    }
    return layerOf.get(n.id);
  };
  for (const n of nodes) n.layer = layer(n);
  for (const n of nodes) {
    const outs = n.outs.filter((e) => !e.back);
    if (n.ins.every((e) => e.back) && outs.length > 0) {
      n.layer = Math.max(n.layer, Math.min(...outs.map((e) => byId.get(e.to).layer)) - 1);
    }
  }

  // Rows: the nodes, and the points of the long edges, by layer, each
  // with its neighbours in the layers before (up) and after (down).
  const layers = [];
  const place = (r) => {
    r.up = [];
    r.down = [];
    (layers[r.layer] ||= []).push(r);
    return r;
  };
  nodes.forEach(place);
  for (const e of forward) {
    let prev = byId.get(e.from);
    for (let l = prev.layer + 1; l < byId.get(e.to).layer; l++) {
      const p = place({ id: `${e.from}>${e.to}@${l}`, point: true, layer: l, w: 0 });
      e.via.push(p);
      prev.down.push(p);
      p.up.push(prev);
      prev = p;
    }
    const to = byId.get(e.to);
    prev.down.push(to);
    to.up.push(prev);
  }
  for (let l = 0; l < layers.length; l++) layers[l] ||= [];
  const number = () => layers.forEach((rs) => rs.forEach((r, i) => (r.pos = i)));
  number();
  const mean = (r, near) => (near.length ? near.reduce((s, m) => s + m.pos, 0) / near.length : r.pos);
  for (let sweep = 0; sweep < 6; sweep++) {
    const down = sweep % 2 === 0;
    const order = down ? [...layers.keys()] : [...layers.keys()].reverse();
    for (const l of order) {
      const key = new Map(layers[l].map((r) => [r, mean(r, down ? r.up : r.down)]));
      layers[l].sort((a, b) => key.get(a) - key.get(b) || a.pos - b.pos);
      number();
    }
  }

  // Coordinates: a column per layer, as wide as its widest node, and a
  // row per node or edge point, each column centred on the tallest.
  const rowH = 60, gapX = 80, margin = 24;
  for (const n of nodes) {
    n.w = Math.max(90, n.name.length * 7 + 30) + (n.kind === "group" ? 24 : 0);
    n.h = 36;
  }
  const tallest = Math.max(1, ...layers.map((rs) => rs.length));
  let x = margin;
  for (const rs of layers) {
    const w = Math.max(0, ...rs.map((r) => r.w));
    const top = margin + ((tallest - rs.length) * rowH) / 2;
    rs.forEach((r, i) => {
      r.x = x + w / 2;
      r.y = top + i * rowH + rowH / 2;
      r.left = x;
      r.right = x + w;
    });
    x += w + gapX;
  }
  return { nodes, edges, byId, width: x - gapX + margin, height: margin * 2 + tallest * rowH + 20 };
}

// shape draws a node's outline: groups are ellipses, topics boxes,
// changelogs cylinders.
function shape(n) {
  const x = n.x - n.w / 2, y = n.y - n.h / 2, w = n.w, h = n.h;
  if (n.kind === "group") {
    return [svg("ellipse", { class: "shape", cx: n.x, cy: n.y, rx: w / 2, ry: h / 2 + 4 })];
  }
  if (n.kind === "table" || n.kind === "state") {
    const e = 6;
    return [
      svg("path", {
        class: "shape",
        d: `M${x},${y + e} A${w / 2},${e} 0 0 1 ${x + w},${y + e} V${y + h - e} A${w / 2},${e} 0 0 1 ${x},${y + h - e} Z`,
      }),
      svg("path", { d: `M${x},${y + e} A${w / 2},${e} 0 0 0 ${x + w},${y + e}`, fill: "none", stroke: "#4a8a3f" }),
    ];
  }
  return [svg("rect", { class: "shape", x, y, width: w, height: h, rx: 3 })];
}

const edgeLabels = {
  loop: "loop", table: "table", state: "windows, timers", join: "join", lookup: "lookup", "dead-letter": "dead letter",
};

// edgePath returns an edge's SVG path and where to put its label. A
// forward edge leaves its node's right side, crosses the columns between
// in its own rows, and enters the next node's left side, with curves that
// start and end level. A back edge (a loop's records coming back) returns
// below, from the left side of its node to the right side of the other.
function edgePath(e, a, b) {
  const curve = (p, q) => {
    const dx = (q[0] - p[0]) / 2;
    return `C${p[0] + dx},${p[1]} ${q[0] - dx},${q[1]} ${q[0]},${q[1]}`;
  };
  if (e.back) {
    const p = [a.x - a.w / 2, a.y + 6], q = [b.x + b.w / 2, b.y + 6];
    const dx = Math.max(30, (p[0] - q[0]) / 2);
    const d = `M${p} C${p[0] - dx},${p[1] + 34} ${q[0] + dx},${q[1] + 34} ${q}`;
    return { d, label: [(p[0] + q[0]) / 2, Math.max(p[1], q[1]) + 30] };
  }
  let at = [a.x + a.w / 2, a.y];
  let d = `M${at}`;
  for (const v of e.via) {
    d += ` ${curve(at, [v.left, v.y])} L${v.right},${v.y}`;
    at = [v.right, v.y];
  }
  const end = [b.x - b.w / 2, b.y];
  d += ` ${curve(at, end)}`;
  const first = e.via.length ? [e.via[0].left, e.via[0].y] : end;
  const start = [a.x + a.w / 2, a.y];
  return { d, label: [(start[0] + first[0]) / 2, (start[1] + first[1]) / 2 - 5] };
}

function drawGraph(graph) {
  const g = layout(graph);
  const root = document.getElementById("graph");
  root.replaceChildren();
  root.setAttribute("width", g.width);
  root.setAttribute("height", g.height);
  root.setAttribute("viewBox", `0 0 ${g.width} ${g.height}`);
  const marker = (id, color) =>
    svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", fill: color }));
  root.append(svg("defs", {}, marker("arrow", "#7d8794"), marker("arrow-red", "#c62828")));

  const edgeLayer = svg("g", { class: "edges" });
  for (const e of g.edges) {
    const { d, label } = edgePath(e, g.byId.get(e.from), g.byId.get(e.to));
    edgeLayer.append(svg("path", {
      class: `edge edge-${e.kind}`, d, "data-from": e.from, "data-to": e.to, "data-kind": e.kind,
      "marker-end": e.kind === "dead-letter" ? "url(#arrow-red)" : "url(#arrow)",
    }));
    if (edgeLabels[e.kind]) {
      edgeLayer.append(svg("text", { class: "edge-label", x: label[0], y: label[1], "text-anchor": "middle" }, edgeLabels[e.kind]));
    }
  }
  root.append(edgeLayer);

  const nodeLayer = svg("g", { class: "nodes" });
  for (const n of g.nodes) {
    nodeLayer.append(svg("g", { class: `node node-${n.kind}`, "data-id": n.id, "data-kind": n.kind, "data-name": n.name },
      svg("title", {}, `${n.kind} ${n.name}`),
      shape(n),
      svg("text", { x: n.x, y: n.y, "text-anchor": "middle", "dominant-baseline": "central" }, n.name)));
  }
  root.append(nodeLayer);
  paintStates();
}

// ---- the partitions ----

function stateBadge(state) {
  return el("span", { class: `state state-${state}` }, state);
}

function partitionRow(p) {
  const inputs = p.inputs.map((in_) =>
    el("div", {}, `${in_.topic} `, el("span", { class: "offset" }, in_.offset < 0 ? "?" : in_.offset), ` / ${in_.high_watermark}`));
  const lag = p.inputs.some((in_) => in_.lag < 0) ? "?" : p.inputs.reduce((s, in_) => s + in_.lag, 0);
  const restores = p.restores.map((r) => {
    const done = r.remaining === 0 && p.state !== "restoring";
    return el("div", {}, `${r.topic} `,
      done ? el("span", { class: "muted" }, `${r.restored} restored`)
        : [el("progress", { max: Math.max(r.total, 1), value: r.restored }), ` ${r.restored} / ${r.total}`]);
  });
  const failures = `${p.skipped} skipped, ${p.dead_lettered} dead-lettered`;
  const rows = [el("tr", { "data-partition": p.partition, "data-state": p.state },
    el("td", { class: "num" }, p.partition),
    el("td", { class: "owner" }, p.owner),
    el("td", { class: "partition-state" }, stateBadge(p.state)),
    el("td", { class: "inputs" }, inputs),
    el("td", { class: "num lag" }, lag),
    el("td", { class: "restores" }, restores),
    el("td", { class: "num processed" }, p.processed),
    el("td", { class: "num failed", title: failures }, p.failed))];
  if (p.error) rows.push(el("tr", {}, el("td", {}), el("td", { class: "error", colspan: 7 }, p.error)));
  return rows;
}

// lastStatus is the last answer of api/groups, whose group states the graph
// shows as soon as it is drawn.
let lastStatus = null;

// paintStates shows each group's state by the outline of its node.
function paintStates() {
  for (const g of lastStatus ? lastStatus.groups : []) {
    const node = document.querySelector(`#graph g.node[data-id="${CSS.escape("group:" + g.name)}"]`);
    if (node) node.setAttribute("class", `node node-group state-${g.state}`);
  }
}

function renderGroups(status) {
  const inst = status.instance;
  document.getElementById("instance").textContent = `instance ${inst.owner} · log ${inst.brokers.join(", ")}`;
  const box = document.getElementById("groups");
  box.replaceChildren(...status.groups.map((g) => {
    const head = ["partition", "owner", "state", "input offset / high watermark", "lag", "restore", "processed", "failed"];
    return el("div", { class: "group", "data-group": g.name },
      el("h3", {}, `${g.name} `, stateBadge(g.state), el("span", { class: "muted" }, g.generation ? ` generation ${g.generation}` : "")),
      g.error ? el("p", { class: "error" }, g.error) : null,
      el("p", { class: "muted" }, `owns ${g.owned.length} of ${g.partitions} partitions here`, g.member ? ` as member ${g.member}` : ""),
      g.owned.length === 0 ? null : el("table", { class: "partitions" },
        el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
        el("tbody", {}, g.owned.map(partitionRow))));
  }));
  lastStatus = status;
  paintStates();
  // The query box offers the groups that have a table.
  const select = document.getElementById("query-group");
  const names = status.groups.filter((g) => g.table).map((g) => g.name);
  if ([...select.options].map((o) => o.value).join("\n") !== names.join("\n")) {
    const keep = select.value;
    select.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
    if (names.includes(keep)) select.value = keep;
  }
}

async function poll() {
  const updated = document.getElementById("updated");
  try {
    renderGroups(await getJSON("api/groups"));
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    updated.textContent = `cannot reach the runtime: ${err.message}`;
  }
  setTimeout(poll, POLL_MS);
}

// ---- the table query ----

async function query(ev) {
  ev.preventDefault();
  const group = document.getElementById("query-group").value;
  const key = document.getElementById("query-key").value;
  const out = document.getElementById("query-result");
  out.replaceChildren(el("p", { class: "muted" }, "…"));
  try {
    const r = await getJSON(`api/tables/${encodeURIComponent(group)}?key=${encodeURIComponent(key)}`);
    const source = r.source === "local" ? "this instance's store" : "a view of the table";
    out.replaceChildren(el("dl", { "data-found": r.found },
      el("dt", {}, "key"), el("dd", { id: "query-key-shown" }, r.key),
      el("dt", {}, "partition"), el("dd", {}, `${r.partition}, read from ${source}`),
      el("dt", {}, "value"), el("dd", { id: "query-value" }, r.found ? (r.value || r.raw) : "(no row)"),
      r.found ? [el("dt", {}, `stored (${r.raw_encoding})`), el("dd", { id: "query-raw" }, r.raw)] : null));
  } catch (err) {
    out.replaceChildren(el("p", { class: "error", id: "query-error" }, err.message));
  }
}

async function main() {
  document.getElementById("query").addEventListener("submit", query);
  poll();
  try {
    drawGraph(await getJSON("api/topology"));
  } catch (err) {
    document.getElementById("graph-box").replaceChildren(el("p", { class: "error" }, `cannot draw the topology: ${err.message}`));
  }
}

main();
