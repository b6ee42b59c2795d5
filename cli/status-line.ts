import type { Output } from './command.ts';

/**
 * One line on a terminal, redrawn in place (progress of a wait or an upload). On anything else (a
 * pipe, a CI log) it draws nothing, so scripts read only results.
 */
export class StatusLine {
  private shown = false;

  constructor(private readonly output: Output) {}

  get active(): boolean {
    return this.output.isTTY;
  }

  update(text: string): void {
    if (!this.output.isTTY) return;
    this.output.write(`\r\x1b[K${text}`);
    this.shown = true;
  }

  /** Clears the line, so what follows starts on a clean one. */
  clear(): void {
    if (!this.shown) return;
    this.output.write('\r\x1b[K');
    this.shown = false;
  }
}
