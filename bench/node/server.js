// Benchmark peer: Node's `ws` package broadcasting pre-framed buffers.
//
// Speaks enough of ticker's wire protocol for the load generator: accepts
// {"op":"subscribe","symbols":[...]}, answers {"type":"subscribed",...} and sends
// {"type":"quotes","data":[Q]} per tick to every subscriber of the symbol. Each tick is
// encoded and framed once (WebSocket.Sender.frame) and the same Buffer is written to every
// subscriber's socket; sockets written in one scheduler pass are corked and uncorked once.
// The simulated market mirrors feeds/simulated.py: a 5 ms scheduler, `rate` ticks per second
// per symbol with staggered phases, a geometric random walk with spread and volume.
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

function parseArgs(argv) {
  const opts = { port: 0, host: '127.0.0.1', symbols: [], rate: 2, seed: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const [key, val] = [argv[i], argv[i + 1]];
    if (key === '--port') opts.port = Number(val);
    else if (key === '--host') opts.host = val;
    else if (key === '--symbols') opts.symbols = val.split(',').filter(Boolean);
    else if (key === '--sim-rate') opts.rate = Number(val);
    else if (key === '--seed') opts.seed = Number(val);
    else {
      console.error(`unknown option ${key}`);
      process.exit(2);
    }
  }
  return opts;
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gauss(rng) {
  const u = 1 - rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

const opts = parseArgs(process.argv.slice(2));
const rng = mulberry32(opts.seed);
const VOL = 0.0006;
const sims = new Map();
for (const s of opts.symbols) {
  const base = Math.round(Math.exp(Math.log(5) + rng() * (Math.log(800) - Math.log(5))) * 100) / 100;
  sims.set(s, {
    s, prevClose: base, price: base, volume: 100000 + Math.floor(rng() * 49000) * 100, acc: rng(), seq: 0,
    open: null, high: -Infinity, low: Infinity, pv: 0, size: 0,
  });
}
const subscribers = new Map(); // symbol -> Set<WebSocket>

function step(sim, ts) {
  const z = gauss(rng);
  sim.price = Math.max(0.01, Math.round(sim.price * Math.exp(VOL * z - 0.5 * VOL * VOL) * 100) / 100);
  const half = Math.max(0.01, Math.round(sim.price * 0.0001 * 100) / 100) / 2;
  const size = 100 * (1 + Math.floor(rng() * 19));
  sim.volume += size;
  sim.seq += 1;
  // the day statistics ticker's server adds to each quote (ticker/daystats.py): the same fields on the wire
  if (sim.open === null) sim.open = sim.price;
  if (sim.price > sim.high) sim.high = sim.price;
  if (sim.price < sim.low) sim.low = sim.price;
  sim.pv += sim.price * size;
  sim.size += size;
  const c = Math.round((sim.price - sim.prevClose) * 1e6) / 1e6;
  return {
    s: sim.s, p: sim.price, b: Math.round((sim.price - half) * 1000) / 1000,
    a: Math.round((sim.price + half) * 1000) / 1000, v: sim.volume, c,
    cp: Math.round((c / sim.prevClose) * 100 * 1e4) / 1e4, o: sim.open, h: sim.high, l: sim.low,
    pc: sim.prevClose, vw: Math.round((sim.pv / sim.size) * 1e4) / 1e4, t: ts, q: sim.seq,
  };
}

const FRAME_OPTS = { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: false };

let last = process.hrtime.bigint();
setInterval(() => {
  const now = process.hrtime.bigint();
  const elapsed = Math.min(Number(now - last) / 1e9, 1.0);
  last = now;
  const ts = Date.now();
  const due = opts.rate * elapsed;
  const corked = new Set();
  for (const sim of sims.values()) {
    sim.acc += due;
    while (sim.acc >= 1.0) {
      sim.acc -= 1.0;
      const q = step(sim, ts);
      const subs = subscribers.get(sim.s);
      if (!subs || subs.size === 0) continue;
      const frame = Buffer.concat(WebSocket.Sender.frame(Buffer.from(JSON.stringify({ type: 'quotes', data: [q] })), FRAME_OPTS));
      for (const ws of subs) {
        const sock = ws._socket;
        if (!sock || ws.readyState !== WebSocket.OPEN) continue;
        if (!corked.has(sock)) {
          sock.cork();
          corked.add(sock);
        }
        sock.write(frame);
      }
    }
  }
  for (const sock of corked) sock.uncork();
}, 5);

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false, clientTracking: false });
wss.on('connection', (ws) => {
  const mine = new Set();
  ws.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      ws.send(JSON.stringify({ type: 'error', code: 'bad_json', message: 'not JSON' }));
      return;
    }
    if (msg.op === 'subscribe' && Array.isArray(msg.symbols)) {
      for (const raw of msg.symbols) {
        const s = String(raw).toUpperCase();
        if (!sims.has(s)) continue;
        mine.add(s);
        if (!subscribers.has(s)) subscribers.set(s, new Set());
        subscribers.get(s).add(ws);
      }
      ws.send(JSON.stringify({ type: 'subscribed', symbols: [...mine].sort() }));
    } else if (msg.op === 'ping') {
      ws.send(JSON.stringify({ type: 'pong', id: msg.id }));
    } else {
      ws.send(JSON.stringify({ type: 'error', code: 'unknown_op', message: 'unsupported op' }));
    }
  });
  ws.on('close', () => {
    for (const s of mine) subscribers.get(s)?.delete(ws);
  });
  ws.on('error', () => {});
});
server.listen(opts.port, opts.host);
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
