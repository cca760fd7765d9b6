// Waveforms of the microphone and the model's voice; one animation loop, asleep in hidden tabs.

const POINTS = 160;

export class Visualiser {
  frame = 0;
  sources = [];

  constructor(canvases) {
    this.scopes = canvases.map((canvas) => ({ canvas, ctx: canvas.getContext("2d"), analyser: null, gain: 1 }));
    const observer = new ResizeObserver(() => this.measure());
    canvases.forEach((canvas) => observer.observe(canvas));
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.measure());
  }

  audioContext() {
    this.context ||= new AudioContext();
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
    return this.context;
  }

  // Scope 0: microphone, 1: model. A dead end: the <audio> element plays.
  attach(index, stream) {
    const source = this.audioContext().createMediaStreamSource(stream);
    const analyser = this.context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    this.sources.push(source);
    Object.assign(this.scopes[index], { analyser, data: new Uint8Array(analyser.fftSize) });
    this.resume();
  }

  detachAll() {
    this.sources.forEach((source) => source.disconnect());
    this.sources = [];
    this.pause();
    this.scopes.forEach((scope) => this.draw(Object.assign(scope, { analyser: null })));
  }

  resume() {
    if (!this.frame && this.scopes.some((scope) => scope.analyser)) this.frame = requestAnimationFrame(this.tick);
  }

  pause() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
  }

  tick = () => {
    this.scopes.forEach((scope) => this.draw(scope));
    this.frame = requestAnimationFrame(this.tick);
  };

  measure() {
    const ratio = devicePixelRatio;
    for (const scope of this.scopes) {
      const { canvas } = scope;
      const box = canvas.getBoundingClientRect();
      canvas.width = Math.max(1, Math.round(box.width * ratio));
      canvas.height = Math.max(1, Math.round(box.height * ratio));
      Object.assign(scope, { lineWidth: 2 * ratio, color: getComputedStyle(canvas).color });
      this.draw(scope);
    }
  }

  draw(scope) {
    const { ctx, analyser, data } = scope;
    const { width, height } = ctx.canvas;
    const middle = height / 2;
    ctx.clearRect(0, 0, width, height);
    Object.assign(ctx, { lineWidth: scope.lineWidth, lineJoin: "round", strokeStyle: scope.color, globalAlpha: analyser ? 1 : 0.35 });
    ctx.beginPath();
    if (!analyser) {
      ctx.moveTo(0, middle);
      ctx.lineTo(width, middle);
    } else {
      analyser.getByteTimeDomainData(data);
      // Speech is quiet: a smoothed gain (at most 6×) keeps a voice visible, silence flat.
      let peak = 1;
      for (let i = 0; i < data.length; i += 8) peak = Math.max(peak, Math.abs(data[i] - 128));
      scope.gain += (Math.min(6, Math.max(1, 100 / peak)) - scope.gain) * 0.08;
      const scale = (scope.gain / 128) * middle * 0.9;
      for (let i = 0; i <= POINTS; i += 1) {
        const sample = data[Math.min(data.length - 1, Math.floor((i * data.length) / POINTS))];
        ctx.lineTo((i / POINTS) * width, Math.max(1, Math.min(height - 1, middle + (sample - 128) * scale)));
      }
    }
    ctx.stroke();
  }
}
