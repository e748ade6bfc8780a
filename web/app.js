// Minimal live table: subscribes to the server's default symbols and shows each update.
const rows = document.getElementById("rows");
const status = document.getElementById("status");
const cells = new Map();

function row(sym) {
  let r = cells.get(sym);
  if (!r) {
    const tr = document.createElement("tr");
    tr.dataset.testid = `row-${sym}`;
    tr.innerHTML = "<td></td><td></td><td></td><td></td><td></td><td></td><td></td>";
    tr.children[0].textContent = sym;
    rows.appendChild(tr);
    r = tr;
    cells.set(sym, r);
  }
  return r;
}

function show(q) {
  const c = row(q.s).children;
  const vals = [q.p, q.c, q.cp, q.b, q.a, q.v];
  vals.forEach((v, i) => { c[i + 1].textContent = v === undefined ? "" : String(v); });
}

async function start() {
  const res = await fetch("/api/symbols");
  const { symbols } = await res.json();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/ws`);
  ws.onopen = () => {
    status.textContent = "connected"; status.dataset.state = "connected";
    ws.send(JSON.stringify({ op: "subscribe", symbols: symbols.slice(0, 50) }));
  };
  ws.onclose = () => {
    status.textContent = "disconnected"; status.dataset.state = "disconnected";
    setTimeout(start, 1000);
  };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.type === "quotes" || m.type === "snapshot") m.data.forEach(show);
  };
}
start();
