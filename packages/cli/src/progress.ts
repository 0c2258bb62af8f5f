/**
 * Progress on stderr for long work. On a terminal: one live line, redrawn in place (`\r`) with the
 * elapsed seconds of every step that is running, ticking twice a second, and finished steps as
 * lines above it. Piped: no live line and no ticking, only the finished steps, one line each, so a
 * log stays short and diffable.
 */

export interface LiveStatus {
  /** Whether the live line is drawn (stderr is a terminal). */
  readonly tty: boolean;
  /** A step begins: shown on the live line as `label`, its elapsed time and its detail, if any. */
  start(key: string, label: string): void;
  /** The detail a running step shows (e.g. `12/40 hello-1.0`); its clock keeps running. */
  update(key: string, detail: string): void;
  /** A step ends; `line`, when given, stays as a line (on a terminal and piped). */
  end(key: string, line?: string): void;
  /** A line that stays, printed above the live line. */
  line(text: string): void;
  /** Stops ticking and clears the live line (for the last output, an error or an interrupt). */
  stop(): void;
}

export const TICK_MS = 500;

/** Seconds with one decimal: `3.5 s`. */
export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function liveStatus(prefix: string, stream: NodeJS.WriteStream = process.stderr): LiveStatus {
  const tty = stream.isTTY === true;
  const running = new Map<string, { label: string; detail: string; started: number }>();
  let timer: NodeJS.Timeout | undefined;
  let drawn = false;

  const clear = () => {
    if (drawn) stream.write('\r\x1b[K');
    drawn = false;
  };
  const draw = () => {
    if (!tty) return;
    if (running.size === 0) {
      clear();
      return;
    }
    const now = performance.now();
    // The times come before the details, which are what gets cut when the line is too wide:
    // a line wider than the terminal wraps, and `\r` would then redraw only its last row.
    const text = `${prefix}: ${[...running.values()]
      .map((step) => `${step.label} ${seconds(now - step.started)}${step.detail ? `: ${step.detail}` : ''}`)
      .join(', ')}`;
    const width = Math.max(20, (stream.columns || 80) - 1);
    stream.write(`\r\x1b[K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
    drawn = true;
  };
  const tick = () => {
    if (!tty) return;
    if (running.size > 0 && timer === undefined) {
      timer = setInterval(draw, TICK_MS);
      timer.unref(); // never what keeps the process alive
    } else if (running.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const line = (text: string) => {
    clear();
    stream.write(`${text}\n`);
    draw();
  };

  return {
    tty,
    start(key, label) {
      running.set(key, { label, detail: '', started: performance.now() });
      tick();
      draw();
    },
    update(key, detail) {
      const step = running.get(key);
      if (step) step.detail = detail;
      else running.set(key, { label: key, detail, started: performance.now() });
      tick();
      draw();
    },
    end(key, text) {
      running.delete(key);
      tick();
      if (text !== undefined) line(text);
      else draw();
    },
    line,
    stop() {
      running.clear();
      tick();
      clear();
    },
  };
}

/** Bytes for people: `812 B`, `3.4 KiB`, `12.0 MiB`, `1.20 GiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 2 ** 20) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 2 ** 30) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
