// The dashboard's script: reads the rows inlined by monitoring/dashboard.py (#dashboard-data), aggregates
// them per chart spec as chart_frame() does for the chosen date range, computes the KPI tiles as
// kpi_tiles() does, and draws with Apache ECharts (inlined before this script). No network access.
// Each chart's figure (data-chart) gets data-points, data-total (sum of its first measure) and
// data-drawn once a frame shows it; the body's data-rendered counts the drawn ones.
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('dashboard-data').textContent);
  var days = data.days;
  var OTHER = data.other;
  var PALETTE = ['#2f6fbe', '#e07b24', '#2e9e5b', '#c2413b', '#7b5cc4', '#8c6a3f', '#d45ba3', '#1c9fb0', '#a3a82c', '#4c5a8a'];
  var OTHER_COLOR = '#9aa5b1';

  // --- rows ----------------------------------------------------------------------------------------
  function decode(col) {
    if (Array.isArray(col)) return col;
    return col.codes.map(function (c) { return c < 0 ? null : col.dict[c]; });
  }
  var datasets = {};
  Object.keys(data.datasets).forEach(function (id) {
    var ds = data.datasets[id];
    var cols = {};
    Object.keys(ds.columns).forEach(function (c) { cols[c] = decode(ds.columns[c]); });
    datasets[id] = { rows: ds.rows, dated: ds.dated, cols: cols };
  });
  var shoppers = data.shoppers && data.shoppers.map(function (row) {
    var acc = 0;
    return row.map(function (d) { acc += d; return acc; });
  });

  // --- formatting ----------------------------------------------------------------------------------
  var inr = new Intl.NumberFormat('en-IN', { style: 'currency', currency: 'INR', maximumFractionDigits: 0 });
  var inrCompact = new Intl.NumberFormat('en-IN', {
    style: 'currency', currency: 'INR', notation: 'compact', maximumFractionDigits: 1,
  });
  var num = new Intl.NumberFormat('en-IN', { maximumFractionDigits: 3 });
  var numCompact = new Intl.NumberFormat('en-IN', { notation: 'compact', maximumFractionDigits: 1 });
  function fmt(unit, v, compact) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    if (unit === 'INR') return (compact ? inrCompact : inr).format(v);
    if (unit === '%') return (v * 100).toFixed(compact ? 0 : 1) + ' %';
    return (compact && Math.abs(v) >= 1000 ? numCompact : num).format(v);  // small values keep their decimals
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }
  function pretty(name) {
    return name.replace(/_to_/g, ' → ').replace(/_at_/g, '@').replace(/_/g, ' ');
  }
  function shortDate(iso) { return iso.slice(5); }
  function cmp(a, b) {
    if (a === b) return 0;
    if (a === null || a === undefined) return 1;
    if (b === null || b === undefined) return -1;
    return a < b ? -1 : 1;
  }

  // --- aggregation: chart_frame() in monitoring/dashboard.py -------------------------------------
  function measuresOf(spec) {
    var out = [];
    spec.y.forEach(function (y) {
      var rate = rateOf(spec, y);
      (rate ? [rate.numerator, rate.denominator] : [y]).forEach(function (c) {
        if (out.indexOf(c) < 0) out.push(c);
      });
    });
    return out;
  }
  function rateOf(spec, name) {
    for (var i = 0; i < spec.rates.length; i++) if (spec.rates[i].name === name) return spec.rates[i];
    return null;
  }
  function rowsInRange(ds, from, to) {
    var idx = [];
    for (var i = 0; i < ds.rows; i++) {
      if (!ds.dated || (ds.cols.event_date[i] >= from && ds.cols.event_date[i] <= to)) idx.push(i);
    }
    return idx;
  }
  function aggregate(spec, from, to) {
    var ds = datasets[spec.dataset];
    var cols = ds.cols;
    var measures = measuresOf(spec);
    var idx = rowsInRange(ds, from, to);
    var foldCol = spec.top_n && spec.other ? (spec.color || spec.x) : null;
    var keep = null;
    if (foldCol) {
      var totals = new Map();
      idx.forEach(function (i) {
        var k = cols[foldCol][i];
        totals.set(k, (totals.get(k) || 0) + (cols[measures[0]][i] || 0));
      });
      var ranked = Array.from(totals.keys()).sort(function (a, b) {
        return totals.get(b) - totals.get(a) || cmp(String(a), String(b));
      });
      if (ranked.length > spec.top_n) keep = new Set(ranked.slice(0, spec.top_n));
    }
    var groups = new Map();
    idx.forEach(function (i) {
      var x = cols[spec.x][i];
      var color = spec.color ? cols[spec.color][i] : null;
      var order = spec.order_by ? cols[spec.order_by][i] : null;
      if (keep && foldCol === spec.color && !keep.has(color)) color = OTHER;
      if (keep && foldCol === spec.x && !keep.has(x)) x = OTHER;
      var key = JSON.stringify([x, color, order]);
      var g = groups.get(key);
      if (!g) {
        g = { x: x, color: color, order: order, m: {}, n: {} };
        measures.forEach(function (m) { g.m[m] = null; g.n[m] = 0; });
        groups.set(key, g);
      }
      measures.forEach(function (m) {
        var v = cols[m][i];
        if (v === null || v === undefined) return;
        var a = g.m[m];
        g.n[m] += 1;
        if (a === null) g.m[m] = v;
        else if (spec.aggregation === 'MAX') g.m[m] = Math.max(a, v);
        else if (spec.aggregation === 'MIN') g.m[m] = Math.min(a, v);
        else g.m[m] = a + v;
      });
    });
    var out = Array.from(groups.values());
    out.forEach(function (g) {
      measures.forEach(function (m) {
        if (spec.aggregation === 'AVERAGE' && g.n[m]) g.m[m] /= g.n[m];
        if (spec.aggregation === 'SUM' && g.m[m] === null) g.m[m] = 0;
      });
      g.y = {};
      spec.y.forEach(function (y) {
        var rate = rateOf(spec, y);
        if (!rate) g.y[y] = g.m[y];
        else g.y[y] = g.m[rate.denominator] ? g.m[rate.numerator] / g.m[rate.denominator] : null;
      });
    });
    out.sort(function (a, b) {
      return (spec.order_by ? cmp(a.order, b.order) : 0) || cmp(a.x, b.x) || cmp(a.color, b.color);
    });
    if (spec.top_n && !spec.other) {
      var first = spec.y[0];
      out.sort(function (a, b) {  // stable: ties keep the key order, as pandas' stable sort does
        var va = a.y[first], vb = b.y[first];
        if (va === null) return vb === null ? 0 : 1;
        if (vb === null) return -1;
        return vb - va;
      });
      out = out.slice(0, spec.top_n);
    }
    return out;
  }

  // One colour per colour-dimension value for the whole page: ranked by the first such chart's measure.
  var colorOf = {};
  (function () {
    var spec = data.charts.filter(function (c) { return c.color; })[0];
    if (!spec || !days.length) return;
    var rows = aggregate(Object.assign({}, spec, { top_n: null, other: false }), 0, days.length - 1);
    var totals = new Map();
    rows.forEach(function (r) { totals.set(r.color, (totals.get(r.color) || 0) + (r.y[spec.y[0]] || 0)); });
    Array.from(totals.keys())
      .sort(function (a, b) { return totals.get(b) - totals.get(a) || cmp(String(a), String(b)); })
      .forEach(function (name, i) { colorOf[name] = PALETTE[i % PALETTE.length]; });
    colorOf[OTHER] = OTHER_COLOR;
  })();

  // --- chart options -----------------------------------------------------------------------------
  function xLabel(spec, r) {
    if (spec.order_by) {  // one point per evaluation: short version and when
      var version = String(r.x === null ? '?' : r.x).split('/').pop();
      if (/^\d+$/.test(version)) version = 'version ' + version;
      return version + '\n' + String(r.order || '').slice(0, 16);
    }
    if (spec.x === 'product_id' && data.productCategory[r.x]) return r.x + ' · ' + data.productCategory[r.x];
    return r.x === null ? '(none)' : String(r.x);
  }
  function emptyOption(text) {
    return {
      title: {
        text: text, left: 'center', top: 'middle',
        textStyle: { color: '#66727f', fontSize: 13, fontWeight: 'normal' },
      },
    };
  }
  function valueAxis(spec) {
    return {
      type: 'value',
      axisLabel: { formatter: function (v) { return fmt(spec.unit, v, true); } },
      splitLine: { lineStyle: { color: '#eef1f5' } },
    };
  }
  function timeSeries(spec, rows, from, to) {
    var xs = days.slice(from, to + 1);
    var series = [];
    if (spec.color) {
      var totals = new Map();
      rows.forEach(function (r) { totals.set(r.color, (totals.get(r.color) || 0) + (r.y[spec.y[0]] || 0)); });
      var names = Array.from(totals.keys()).sort(function (a, b) {
        if (a === OTHER) return 1;
        if (b === OTHER) return -1;
        return totals.get(b) - totals.get(a) || cmp(String(a), String(b));
      });
      names.forEach(function (name) {
        var values = xs.map(function () { return 0; });
        rows.forEach(function (r) { if (r.color === name) values[r.x - from] = r.y[spec.y[0]]; });
        series.push({ name: String(name), values: values, color: colorOf[name] || OTHER_COLOR });
      });
    } else {
      spec.y.forEach(function (y, i) {
        var values = xs.map(function () { return 0; });
        rows.forEach(function (r) { values[r.x - from] = r.y[y]; });
        series.push({ name: pretty(y), values: values, color: PALETTE[i] });
      });
    }
    return {
      tooltip: {
        trigger: 'axis', order: 'valueDesc', confine: true,
        valueFormatter: function (v) { return fmt(spec.unit, v); },
      },
      legend: { type: 'scroll', top: 0 },
      grid: { left: 64, right: 20, top: 40, bottom: 36 },
      xAxis: { type: 'category', data: xs, boundaryGap: false, axisLabel: { formatter: shortDate } },
      yAxis: valueAxis(spec),
      series: series.map(function (s) {
        return {
          name: s.name, type: 'line', data: s.values, color: s.color,
          showSymbol: xs.length <= 31, symbolSize: 5, emphasis: { focus: 'series' },
          lineStyle: { width: s.name === OTHER ? 1.5 : 2, type: s.name === OTHER ? 'dashed' : 'solid' },
        };
      }),
    };
  }
  function bars(spec, rows) {
    var horizontal = spec.kind === 'hbar';
    var labels = rows.map(function (r) { return xLabel(spec, r); });
    var many = rows.length * spec.y.length > 24;
    var categoryAxis = { type: 'category', data: labels, inverse: horizontal, axisLabel: { width: 170, overflow: 'truncate' } };
    var option = {
      tooltip: {
        trigger: 'axis', axisPointer: { type: 'shadow' }, confine: true,
        formatter: function (params) {
          var r = rows[params[0].dataIndex];
          var lines = ['<b>' + esc(labels[params[0].dataIndex]) + '</b>'];
          spec.y.forEach(function (y) {
            var rate = rateOf(spec, y);
            var detail = rate ? ' (' + num.format(r.m[rate.numerator]) + ' of ' + num.format(r.m[rate.denominator]) +
              ' ' + esc(rate.denominator) + ')' : '';
            lines.push(esc(pretty(y)) + ': <b>' + esc(fmt(spec.unit, r.y[y])) + '</b>' + detail);
          });
          return lines.join('<br>');
        },
      },
      legend: spec.y.length > 1 ? { top: 0 } : { show: false },
      grid: { left: horizontal ? 180 : 64, right: 64, top: spec.y.length > 1 ? 36 : 12, bottom: 28 },
      xAxis: horizontal ? valueAxis(spec) : categoryAxis,
      yAxis: horizontal ? categoryAxis : valueAxis(spec),
      series: spec.y.map(function (y, i) {
        return {
          name: pretty(y), type: 'bar', data: rows.map(function (r) { return r.y[y]; }), color: PALETTE[i],
          barMaxWidth: 26,
          label: {
            show: !many, position: horizontal ? 'right' : 'top', fontSize: 11,
            formatter: function (p) { return fmt(spec.unit, p.value, spec.unit !== '%'); },
          },
        };
      }),
    };
    return option;
  }
  function evaluations(spec, rows) {
    var labels = rows.map(function (r) { return xLabel(spec, r); });
    return {
      tooltip: {
        trigger: 'axis', confine: true,
        formatter: function (params) {
          var r = rows[params[0].dataIndex];
          var lines = ['<b>' + esc(r.x) + '</b>', 'evaluated ' + esc(r.order)];
          params.forEach(function (p) { lines.push(p.marker + esc(p.seriesName) + ': <b>' + esc(fmt(spec.unit, p.value)) + '</b>'); });
          return lines.join('<br>');
        },
      },
      legend: spec.y.length > 1 ? { top: 0 } : { show: false },
      grid: { left: 64, right: 28, top: spec.y.length > 1 ? 40 : 16, bottom: 56 },
      xAxis: { type: 'category', data: labels, boundaryGap: true, axisLabel: { interval: 'auto', fontSize: 11, lineHeight: 15 } },
      yAxis: Object.assign(valueAxis(spec), { min: 0 }),
      series: spec.y.map(function (y, i) {
        return {
          name: pretty(y), type: 'line', data: rows.map(function (r) { return r.y[y]; }), color: PALETTE[i],
          symbol: 'circle', symbolSize: 10, showSymbol: true, connectNulls: false,
          label: {
            show: rows.length <= 12, position: 'top', fontSize: 11,
            formatter: function (p) { return fmt(spec.unit, p.value); },
          },
        };
      }),
    };
  }

  // --- drawing -----------------------------------------------------------------------------------
  var figures = {};
  var instances = {};
  data.charts.forEach(function (spec) {
    var fig = document.querySelector('[data-chart="' + spec.id + '"]');
    if (!fig) return;
    var el = fig.querySelector('.chart');
    figures[spec.id] = fig;
    instances[spec.id] = echarts.init(el, null, { renderer: 'svg' });
    instances[spec.id].on('rendered', function () { markDrawn(spec.id); });
  });
  function markDrawn(id) {  // after each rendered frame, until the chart's first frame with data
    var fig = figures[id];
    if (fig.getAttribute('data-drawn') === '1') return;
    var svg = fig.querySelector('.chart svg');
    var box = svg ? svg.getBoundingClientRect() : null;
    var points = Number(fig.getAttribute('data-points'));
    var drawn = points > 0 && box && box.width > 0 && box.height > 0 && svg.querySelectorAll('path').length > 0;
    fig.setAttribute('data-drawn', drawn ? '1' : '0');
    updateRendered();
  }
  function updateRendered() {
    document.body.setAttribute('data-rendered', String(document.querySelectorAll('[data-chart][data-drawn="1"]').length));
    if (window.__dashboardShowErrors) window.__dashboardShowErrors();
  }
  function draw(spec, from, to) {
    var fig = figures[spec.id];
    var chart = instances[spec.id];
    if (!fig) return;
    var rows = days.length || !spec.filtered ? aggregate(spec, from, to) : [];
    var points = 0;
    var total = 0;
    rows.forEach(function (r) {
      spec.y.forEach(function (y) { if (r.y[y] !== null && isFinite(r.y[y])) points += 1; });
      if (r.y[spec.y[0]] !== null && isFinite(r.y[spec.y[0]])) total += r.y[spec.y[0]];
    });
    fig.setAttribute('data-points', String(points));
    fig.setAttribute('data-total', String(total));
    fig.setAttribute('data-drawn', '0');
    var note = fig.querySelector('.note');
    var option;
    if (!points) {
      option = emptyOption(spec.empty);
      note.textContent = '';
    } else if (spec.kind === 'line' && spec.x === 'event_date') {
      option = timeSeries(spec, rows, from, to);
      note.textContent = spec.top_n && spec.other ? 'top ' + spec.top_n + ' in the selected dates; click a legend entry to hide it' : '';
    } else if (spec.kind === 'line') {
      option = evaluations(spec, rows);
      note.textContent = rows.length + (rows.length === 1 ? ' evaluation' : ' evaluations');
    } else {
      option = bars(spec, rows);
      note.textContent = spec.rates.length ? 'ratios of sums over the ' + (spec.filtered ? 'selected dates' : 'whole log') : '';
    }
    var el = fig.querySelector('.chart');
    var height = spec.kind === 'hbar' && points ? Math.max(340, rows.length * (spec.y.length > 1 ? 40 : 28) + 70) : 340;
    if (el.style.height !== height + 'px') {
      el.style.height = height + 'px';
      chart.resize();
    }
    chart.setOption(option, true);
  }

  // --- KPI tiles: kpi_tiles() in monitoring/dashboard.py ------------------------------------------
  var tileData = datasets.kpi_daily_funnel;
  function periodSums(from, to) {
    if (from < 0 || !tileData) return null;
    var sums = { views: 0, carts: 0, purchases: 0, revenue: 0, shoppers: null };
    var idx = rowsInRange(tileData, from, to);
    ['views', 'carts', 'purchases', 'revenue'].forEach(function (c) {
      idx.forEach(function (i) { sums[c] += tileData.cols[c][i] || 0; });
    });
    if (shoppers) {
      var seen = new Set();
      for (var d = from; d <= to; d++) shoppers[d].forEach(function (u) { seen.add(u); });
      sums.shoppers = seen.size;
    }
    return sums;
  }
  function tileValue(tile, sums) {
    if (!sums) return null;
    var n = sums[tile.numerator];
    if (n === null) return null;
    if (!tile.denominator) return n;
    return sums[tile.denominator] ? n / sums[tile.denominator] : null;
  }
  function attr(v) { return v === null || v === undefined || !isFinite(v) ? '' : String(v); }
  function drawTiles(from, to) {
    var len = to - from + 1;
    var current = days.length ? periodSums(from, to) : null;
    var previous = days.length ? periodSums(from - len, from - 1) : null;
    var isDefault = data.defaultRange && from === data.defaultRange[0] && to === data.defaultRange[1];
    data.tiles.forEach(function (tile) {
      var el = document.querySelector('[data-tile="' + tile.id + '"]');
      var value = tileValue(tile, current);
      var before = tileValue(tile, previous);
      if (tile.numerator === 'shoppers' && !shoppers && isDefault) {  // too many shoppers to inline
        value = data.defaultTiles[tile.id].value;
        before = data.defaultTiles[tile.id].previous;
      }
      var change = value !== null && before ? (value - before) / before * 100 : null;
      el.setAttribute('data-value', attr(value));
      el.setAttribute('data-previous', attr(before));
      el.setAttribute('data-change', attr(change));
      el.querySelector('.value').textContent = fmt(tile.unit, value);
      var ch = el.querySelector('.change');
      if (change === null) {
        ch.textContent = '–';
        ch.className = 'change flat';
      } else {
        ch.textContent = (change > 0 ? '▲ +' : change < 0 ? '▼ ' : '') + change.toFixed(1) + ' %';
        ch.className = 'change ' + (Math.abs(change) < 0.05 ? 'flat' : change > 0 ? 'up' : 'down');
      }
      el.querySelector('.previous').textContent = previous
        ? 'previous ' + len + ' days: ' + fmt(tile.unit, before)
        : 'no full previous period in the data';
    });
    var note = document.getElementById('tiles-note');
    if (!days.length) note.textContent = 'No interactions yet.';
    else {
      note.textContent = 'Selected ' + days[from] + ' to ' + days[to] + ' (' + len + (len === 1 ? ' day' : ' days') + ')' +
        (from - len >= 0 ? ', compared with ' + days[from - len] + ' to ' + days[from - 1] + '.' :
          '; the data starts on ' + days[0] + ', too late for a previous period of the same length.');
    }
  }

  // --- date range --------------------------------------------------------------------------------
  var fromInput = document.getElementById('range-from');
  var toInput = document.getElementById('range-to');
  var presetBox = document.querySelector('.presets');
  var state = { from: 0, to: Math.max(days.length - 1, 0) };
  function dayIndex(iso, fallback) {
    if (!iso || !/^\d{4}-\d{2}-\d{2}$/.test(iso)) return fallback;
    if (iso <= days[0]) return 0;
    if (iso >= days[days.length - 1]) return days.length - 1;
    var i = days.indexOf(iso);
    return i < 0 ? fallback : i;
  }
  function presets() {
    var out = [7, 28, 90].filter(function (n) { return n < days.length; }).map(function (n) {
      return { label: 'Last ' + n + ' days', from: days.length - n, to: days.length - 1 };
    });
    out.push({ label: 'All ' + days.length + ' days', from: 0, to: days.length - 1 });
    return out;
  }
  function renderSales() {
    data.charts.forEach(function (spec) { if (spec.filtered) draw(spec, state.from, state.to); });
    drawTiles(state.from, state.to);
    fromInput.value = days[state.from];
    toInput.value = days[state.to];
    Array.prototype.forEach.call(presetBox.querySelectorAll('button'), function (b) {
      b.classList.toggle('active', Number(b.dataset.from) === state.from && Number(b.dataset.to) === state.to);
    });
  }
  function setRange(from, to, remember) {
    if (from > to) { var t = from; from = to; to = t; }
    state.from = Math.max(0, from);
    state.to = Math.min(days.length - 1, to);
    if (remember) {
      try {
        history.replaceState(null, '', '#from=' + days[state.from] + '&to=' + days[state.to]);
      } catch (e) { /* a file:// page may refuse; the range still applies */ }
    }
    renderSales();
  }
  if (days.length) {
    fromInput.min = toInput.min = days[0];
    fromInput.max = toInput.max = days[days.length - 1];
    presets().forEach(function (p) {
      var b = document.createElement('button');
      b.type = 'button';
      b.textContent = p.label;
      b.dataset.from = String(p.from);
      b.dataset.to = String(p.to);
      b.addEventListener('click', function () { setRange(p.from, p.to, true); });
      presetBox.appendChild(b);
    });
    fromInput.addEventListener('change', function () { setRange(dayIndex(fromInput.value, state.from), state.to, true); });
    toInput.addEventListener('change', function () { setRange(state.from, dayIndex(toInput.value, state.to), true); });
    var hash = {};
    location.hash.replace(/^#/, '').split('&').forEach(function (kv) {
      var p = kv.split('=');
      if (p.length === 2) hash[p[0]] = decodeURIComponent(p[1]);
    });
    setRange(dayIndex(hash.from, data.defaultRange[0]), dayIndex(hash.to, data.defaultRange[1]), false);
  } else {
    fromInput.disabled = toInput.disabled = true;
    data.charts.forEach(function (spec) { if (spec.filtered) draw(spec, 0, -1); });
    drawTiles(0, -1);
  }
  data.charts.forEach(function (spec) { if (!spec.filtered) draw(spec, 0, days.length - 1); });  // all dates

  var resizeTimer = null;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      Object.keys(instances).forEach(function (id) { instances[id].resize(); });
    }, 150);
  });
})();
