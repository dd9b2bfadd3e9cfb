// A regression plot on a canvas: support points (click to add), the adapted curve and its
// +-std band where the learner gives one.

export class RegressionPlot {
  constructor(canvas, xRange, yRange) {
    this.canvas = canvas;
    this.xRange = xRange;
    this.yRange = yRange;
    this.points = [];   // [[x, y]]
    this.curve = null;  // {xs, ys, std}
    this.onChange = () => {};
    canvas.addEventListener("click", (event) => {
      const box = canvas.getBoundingClientRect();
      const px = ((event.clientX - box.left) / box.width) * canvas.width;
      const py = ((event.clientY - box.top) / box.height) * canvas.height;
      this.add(this.toX(px), this.toY(py));
    });
    this.draw();
  }

  add(x, y) {
    const round = (v) => Math.round(v * 100) / 100;
    this.points.push([round(x), round(y)]);
    this.onChange();
    this.draw();
  }

  remove(index) {
    this.points.splice(index, 1);
    this.onChange();
    this.draw();
  }

  clear() {
    this.points = [];
    this.curve = null;
    this.onChange();
    this.draw();
  }

  setCurve(curve) {
    this.curve = curve;
    this.draw();
  }

  margin() { return 28; }
  fromX(x) { const m = this.margin(); return m + ((x - this.xRange[0]) / (this.xRange[1] - this.xRange[0])) * (this.canvas.width - 2 * m); }
  fromY(y) { const m = this.margin(); return this.canvas.height - m - ((y - this.yRange[0]) / (this.yRange[1] - this.yRange[0])) * (this.canvas.height - 2 * m); }
  toX(px) { const m = this.margin(); return this.xRange[0] + ((px - m) / (this.canvas.width - 2 * m)) * (this.xRange[1] - this.xRange[0]); }
  toY(py) { const m = this.margin(); return this.yRange[0] + ((this.canvas.height - m - py) / (this.canvas.height - 2 * m)) * (this.yRange[1] - this.yRange[0]); }

  draw() {
    const ctx = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, width, height);
    ctx.strokeStyle = "#ccc";
    ctx.lineWidth = 1;
    ctx.font = "11px sans-serif";
    ctx.fillStyle = "#555";
    for (let x = Math.ceil(this.xRange[0]); x <= this.xRange[1]; x += 1) {
      ctx.beginPath(); ctx.moveTo(this.fromX(x), this.fromY(this.yRange[0])); ctx.lineTo(this.fromX(x), this.fromY(this.yRange[1])); ctx.stroke();
      ctx.fillText(String(x), this.fromX(x) - 4, height - 10);
    }
    for (let y = Math.ceil(this.yRange[0]); y <= this.yRange[1]; y += 1) {
      ctx.beginPath(); ctx.moveTo(this.fromX(this.xRange[0]), this.fromY(y)); ctx.lineTo(this.fromX(this.xRange[1]), this.fromY(y)); ctx.stroke();
      ctx.fillText(String(y), 4, this.fromY(y) + 4);
    }
    if (this.curve) {
      const { xs, ys, std } = this.curve;
      if (std) {
        ctx.fillStyle = "rgba(31, 119, 180, 0.2)";
        ctx.beginPath();
        xs.forEach((x, i) => ctx.lineTo(this.fromX(x), this.fromY(ys[i] + std[i])));
        for (let i = xs.length - 1; i >= 0; i -= 1) ctx.lineTo(this.fromX(xs[i]), this.fromY(ys[i] - std[i]));
        ctx.closePath();
        ctx.fill();
      }
      ctx.strokeStyle = "#1f77b4";
      ctx.lineWidth = 2;
      ctx.beginPath();
      xs.forEach((x, i) => (i ? ctx.lineTo(this.fromX(x), this.fromY(ys[i])) : ctx.moveTo(this.fromX(x), this.fromY(ys[i]))));
      ctx.stroke();
    }
    ctx.fillStyle = "#d62728";
    for (const [x, y] of this.points) {
      ctx.beginPath(); ctx.arc(this.fromX(x), this.fromY(y), 5, 0, 2 * Math.PI); ctx.fill();
    }
  }
}
