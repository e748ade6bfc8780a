// The detail panel's chart: candlesticks with the volume beneath them, drawn by TradingView Lightweight
// Charts (web/vendor/, Apache-2.0; loaded on first use, a classic script that defines
// window.LightweightCharts). Bars are {t, o, h, l, c, v} with t the bar's start in epoch ms; the
// chart takes a whole history (setBars) and then upserts live bars by t (upsert). The element carries
// what the chart holds, for tests and the curious: data-bars (the candles in the library's series),
// data-last-t and data-last-c (the newest candle).

export const LIBRARY_URL = "/static/vendor/lightweight-charts.standalone.production.js";
const DAY_MS = 86_400_000;

let loading = null;

/** The charting library, loaded once (a rejected load is tried again on the next call). */
export function loadLibrary() {
  if (window.LightweightCharts) return Promise.resolve(window.LightweightCharts);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = LIBRARY_URL;
      script.async = true;
      script.onload = () => {
        if (window.LightweightCharts) resolve(window.LightweightCharts);
        else reject(new Error("the chart library did not load"));
      };
      script.onerror = () => {
        loading = null;
        script.remove();
        reject(new Error("the chart library could not be loaded"));
      };
      document.head.append(script);
    });
  }
  return loading;
}

function isNum(x) {
  return typeof x === "number" && Number.isFinite(x);
}

/** Whether `b` is a bar the chart can draw. */
export function isBar(b) {
  return (
    !!b && isNum(b.t) && isNum(b.o) && isNum(b.h) && isNum(b.l) && isNum(b.c) && (b.v === undefined || isNum(b.v))
  );
}

/** `bars` that are bars, oldest first, one per start time (the later one wins). */
export function cleanBars(bars) {
  const byT = new Map();
  for (const b of Array.isArray(bars) ? bars : []) if (isBar(b)) byT.set(b.t, b);
  return [...byT.values()].sort((x, y) => x.t - y.t);
}

const fmtTime = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const fmtDay = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const fmtDayUtc = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
const fmtYearUtc = new Intl.DateTimeFormat(undefined, { year: "numeric", timeZone: "UTC" });
const fmtFull = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});
const fmtFullDayUtc = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
  timeZone: "UTC",
});

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

export class BarChart {
  /** el: the chart's box (sized by the CSS); the chart fills it and follows its size. */
  constructor(el) {
    this.el = el;
    this.lib = null;
    this.chart = null;
    this.candles = null;
    this.volume = null;
    this.daily = false; // 1d bars: labelled by their session's date, not a local time
    this.last = null; // the newest bar drawn
    this.count = 0;
    this.themeWatch = null;
  }

  /** Load the library and make the chart (once); resolves to this. */
  async mount() {
    if (this.chart) return this;
    const lib = await loadLibrary();
    if (this.chart) return this;
    this.lib = lib;
    this.chart = lib.createChart(this.el, {
      autoSize: true,
      layout: { attributionLogo: true, fontFamily: getComputedStyle(document.body).fontFamily },
      rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.28 } },
      timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 2, tickMarkFormatter: (t) => this._tick(t) },
      localization: { timeFormatter: (t) => this._label(t) },
      crosshair: { mode: lib.CrosshairMode ? lib.CrosshairMode.Normal : 0 },
    });
    this.candles = this.chart.addSeries(lib.CandlestickSeries, { borderVisible: false });
    this.volume = this.chart.addSeries(lib.HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "",
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.volume.priceScale().applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
    this.applyTheme();
    this.themeWatch = new MutationObserver(() => this.applyTheme());
    this.themeWatch.observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
    return this;
  }

  /** Colours from the page's palette (style.css), again whenever the theme changes. */
  applyTheme() {
    if (!this.chart) return;
    const text = cssVar("--muted", "#586170");
    const border = cssVar("--border", "#dde1e7");
    const up = cssVar("--spark-up", "#16a34a");
    const down = cssVar("--spark-down", "#dc2626");
    this.colors = { upVol: `${up}66`, downVol: `${down}66` };
    this.chart.applyOptions({
      layout: { background: { color: cssVar("--surface", "#ffffff") }, textColor: text },
      grid: { vertLines: { color: `${border}88` }, horzLines: { color: `${border}88` } },
      rightPriceScale: { borderColor: border },
      timeScale: { borderColor: border },
    });
    this.candles.applyOptions({ upColor: up, downColor: down, wickUpColor: up, wickDownColor: down });
    if (this.last) this.volume.setData(this._volumes(this.candlesData ?? []));
  }

  /** Time labels for `interval` ("1d" labels dates). */
  setInterval(interval) {
    this.daily = interval === "1d";
    this.chart?.applyOptions({ timeScale: { timeVisible: !this.daily } });
  }

  /** Draw `bars` (the history), replacing what the chart held. */
  setBars(bars) {
    const clean = cleanBars(bars);
    this.candlesData = clean;
    this.candles.setData(clean.map((b) => this._candle(b)));
    this.volume.setData(this._volumes(clean));
    this.last = clean.length ? clean[clean.length - 1] : null;
    this.count = clean.length;
    this.chart.timeScale().scrollToRealTime();
    this._mark();
  }

  /** Put live bar `b` in: a new newest candle, or an update of the one with its start time. */
  upsert(b) {
    if (!isBar(b) || !this.chart) return;
    const data = this.candlesData ?? (this.candlesData = []);
    if (!this.last || b.t > this.last.t) {
      data.push(b);
      this.count += 1;
    } else if (b.t === this.last.t) {
      data[data.length - 1] = b;
    } else {
      // A correction of an older bar (a provider's late or revised bar): update it where it is.
      const i = data.findIndex((x) => x.t >= b.t);
      if (i < 0) return;
      if (data[i].t === b.t) data[i] = b;
      else {
        data.splice(i, 0, b);
        this.count += 1;
      }
      this.candles.setData(data.map((x) => this._candle(x)));
      this.volume.setData(this._volumes(data));
      this._mark();
      return;
    }
    this.last = b;
    this.candles.update(this._candle(b));
    this.volume.update(this._volume(b));
    this._mark();
  }

  /** Empty the chart (a new symbol or interval is on its way). */
  clear() {
    this.candlesData = [];
    this.last = null;
    this.count = 0;
    if (this.chart) {
      this.candles.setData([]);
      this.volume.setData([]);
    }
    this._mark();
  }

  _candle(b) {
    return { time: Math.floor(b.t / 1000), open: b.o, high: b.h, low: b.l, close: b.c };
  }

  _volume(b) {
    const c = this.colors ?? {};
    return { time: Math.floor(b.t / 1000), value: isNum(b.v) ? b.v : 0, color: b.c >= b.o ? c.upVol : c.downVol };
  }

  _volumes(bars) {
    return bars.map((b) => this._volume(b));
  }

  _mark() {
    const el = this.el;
    el.dataset.bars = String(this.candles ? this.candles.data().length : 0); // as the library holds them
    if (this.last) {
      el.dataset.lastT = String(this.last.t);
      el.dataset.lastC = String(this.last.c);
    } else {
      delete el.dataset.lastT;
      delete el.dataset.lastC;
    }
  }

  // The time axis: local times of day, dates where the day changes; 1d bars by their session's date
  // (a session's start is midnight in its exchange's zone, within half a day of midnight UTC).
  _tick(t) {
    const ms = t * 1000;
    if (this.daily) {
      const mid = ms + DAY_MS / 2;
      return new Date(mid).getUTCMonth() === 0 && new Date(mid).getUTCDate() === 1
        ? fmtYearUtc.format(mid)
        : fmtDayUtc.format(mid);
    }
    const d = new Date(ms);
    return d.getHours() === 0 && d.getMinutes() === 0 ? fmtDay.format(ms) : fmtTime.format(ms);
  }

  _label(t) {
    const ms = t * 1000;
    return this.daily ? fmtFullDayUtc.format(ms + DAY_MS / 2) : fmtFull.format(ms);
  }
}
