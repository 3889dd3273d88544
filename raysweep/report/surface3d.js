// raysweep's turnable 3-D surface of a plane (the HTML report): z = metric(a, b) drawn as shaded quads, far ones
// first (the painter's algorithm), on a 2-D canvas, offline. Drag to turn it. Each drawing records how many quads
// it drew on the canvas (data-drawn).
function raysweepSurface(canvas, d) {
  const ctx = canvas.getContext('2d'), W = canvas.width, H = canvas.height;
  const stops = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];  // viridis
  const colour = t => {
    const x = Math.max(0, Math.min(0.9999, t)) * (stops.length - 1), i = Math.floor(x), f = x - i;
    const c = stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  };
  const h = d.z.map(row => row.map(v => v === null ? null : (d.log ? Math.log10(Math.max(v, 1e-12)) : v)));
  const vals = h.flat().filter(v => v !== null), lo = Math.min(...vals), hi = Math.max(...vals);
  const span = (arr) => [Math.min(...arr), Math.max(...arr)];
  const [a0, a1] = span(d.a), [b0, b1] = span(d.b);
  const sa = d.a.map(v => (v - a0) / ((a1 - a0) || 1) * 2 - 1), sb = d.b.map(v => (v - b0) / ((b1 - b0) || 1) * 2 - 1);
  const hz = h.map(row => row.map(v => v === null ? null : (hi > lo ? (v - lo) / (hi - lo) : 0)));
  let az = -55, el = 30;
  function project(x, y, w) {
    const A = az * Math.PI / 180, E = el * Math.PI / 180;
    const xr = x * Math.cos(A) - y * Math.sin(A), yr = x * Math.sin(A) + y * Math.cos(A);
    return [xr, w * Math.cos(E) + yr * Math.sin(E), yr * Math.cos(E) - w * Math.sin(E)];
  }
  function draw() {
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, W, H);
    const quads = [];
    for (let j = 0; j + 1 < d.b.length; j++) for (let i = 0; i + 1 < d.a.length; i++) {
      const corners = [[i, j], [i + 1, j], [i + 1, j + 1], [i, j + 1]];
      if (corners.some(([ii, jj]) => hz[jj][ii] === null)) continue;
      const pts = corners.map(([ii, jj]) => project(sa[ii], sb[jj], 1.2 * hz[jj][ii]));
      const t = corners.reduce((s, [ii, jj]) => s + hz[jj][ii], 0) / 4;
      quads.push([pts.reduce((s, p) => s + p[2], 0) / 4, pts, t]);
    }
    quads.sort((p, q) => q[0] - p[0]);
    const scale = Math.min(W, H) / 3.4, cx = W / 2, cy = H / 2 + scale * 0.45;
    for (const [, pts, t] of quads) {
      ctx.beginPath();
      pts.forEach(([x, y], k) => (k ? ctx.lineTo : ctx.moveTo).call(ctx, cx + scale * x, cy - scale * y));
      ctx.closePath(); ctx.fillStyle = colour(t); ctx.fill();
      ctx.strokeStyle = 'rgba(0,0,0,0.35)'; ctx.lineWidth = 0.5; ctx.stroke();
    }
    ctx.fillStyle = '#333'; ctx.font = '12px sans-serif';
    ctx.fillText(`${d.metric} (${d.split})${d.log ? ', log height' : ''} — drag to turn`, 8, 16);
    canvas.dataset.drawn = quads.length;
  }
  let drag = null;
  canvas.addEventListener('pointerdown', e => { drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener('pointerup', () => { drag = null; });
  canvas.addEventListener('pointermove', e => {
    if (!drag) return;
    az += (e.clientX - drag[0]) * 0.5; el = Math.max(-89, Math.min(89, el - (e.clientY - drag[1]) * 0.5));
    drag = [e.clientX, e.clientY]; draw();
  });
  draw();
}
