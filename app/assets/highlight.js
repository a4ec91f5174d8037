/* fci explorer: draw a clause highlight onto the figures the browser already
   shows, and mark the selected clause-table row.

   The server sends, per graph, the edits of its highlight slots: path shapes at
   fixed indices (`shapes[i].path`, `.name`, `.visible`) and highlighted trace
   properties (`marker.color` of the polysemanticity bars), see
   app.figures.split_highlight. Going through Plotly.relayout / restyle costs
   20-30 ms a graph (each call re-runs plotly's defaults over the whole figure),
   so the edits go straight to the SVG elements plotly drew (data coordinates
   converted with the axes plotly laid out) and into gd.layout / gd.data, which
   keeps any later redraw consistent. Plotly.relayout is the fallback when an
   element is not where it should be. */
(function () {
  function toPx(gd, shape, path) {
    const fl = gd._fullLayout;
    const xa = fl[(shape.xref || 'x').replace('x', 'xaxis')] || fl.xaxis;
    const ya = shape.yref === 'paper' ? null : (fl[(shape.yref || 'y').replace('y', 'yaxis')] || fl.yaxis);
    const sz = fl._size;
    const px = (v) => xa._offset + xa.l2p(v);
    const py = (v) => (ya ? ya._offset + ya.l2p(v) : sz.t + sz.h * (1 - v));
    return path.replace(/([MLHVZ])([^MLHVZ]*)/g, (m, cmd, args) => {
      const nums = args.trim() ? args.trim().split(/[ ,]+/).map(Number) : [];
      if (cmd === 'H') { return 'H' + px(nums[0]); }
      if (cmd === 'V') { return 'V' + py(nums[0]); }
      if (cmd === 'Z') { return 'Z'; }
      return cmd + px(nums[0]) + ',' + py(nums[1]);
    });
  }

  function applyShapes(gd, edits) {
    const byIndex = {};
    for (const k of Object.keys(edits)) {
      const m = /^shapes\[(\d+)\]\.(\w+)$/.exec(k);
      if (!m) { return false; }
      (byIndex[m[1]] = byIndex[m[1]] || {})[m[2]] = edits[k];
    }
    for (const i of Object.keys(byIndex)) {
      const shape = gd.layout.shapes && gd.layout.shapes[i];
      const full = gd._fullLayout.shapes && gd._fullLayout.shapes[i];
      const el = gd.querySelector('.shapelayer path[data-index="' + i + '"]');
      if (!shape || !full || !el) { return false; }
      Object.assign(shape, byIndex[i]);
      Object.assign(full, byIndex[i]);
      el.setAttribute('d', toPx(gd, full, shape.path || 'M0,0'));
      el.style.display = shape.visible === false ? 'none' : '';
    }
    return true;
  }

  function applyTrace(gd, i, props) {
    const keys = Object.keys(props);
    if (keys.length === 1 && keys[0] === 'marker.color' && Array.isArray(props['marker.color'])) {
      const paths = gd.querySelectorAll('.barlayer .trace')[i];
      const pts = paths ? paths.querySelectorAll('.point path') : [];
      if (pts.length === props['marker.color'].length) {
        gd.data[i].marker.color = props['marker.color'];
        pts.forEach((p, k) => { p.style.fill = props['marker.color'][k]; });
        return;
      }
    }
    const update = {};
    for (const k of keys) { update[k] = [props[k]]; }
    window.Plotly.restyle(gd, update, [i]);
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    fci: {
      highlight: function (hl) {
        if (!hl || !hl.graphs || !window.Plotly) { return window.dash_clientside.no_update; }
        for (const gid of Object.keys(hl.graphs)) {
          const h = hl.graphs[gid];
          const gd = document.querySelector('#' + CSS.escape(gid) + ' .js-plotly-plot');
          if (!gd || !gd.data || !gd._fullLayout) { continue; }
          for (const [i, props] of h.traces) {
            if (i < gd.data.length) { applyTrace(gd, i, props); }
          }
          if (!applyShapes(gd, h.layout)) { window.Plotly.relayout(gd, h.layout); }
        }
        return hl.seq;
      },
      selectRow: function (clause, table) {
        const rows = document.querySelectorAll('#clause-table tbody tr');
        rows.forEach((tr, k) => tr.classList.toggle('selected', clause !== null && clause !== undefined && k === clause));
        return clause === undefined ? null : clause;
      }
    }
  });
})();
