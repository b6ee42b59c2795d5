import { Readable } from 'node:stream';

/**
 * A pod log as the API server sends it, passed on with backpressure and almost no work per chunk.
 *
 * A followed log arrives one line per TLS record (the API server flushes every line), so passing
 * each chunk on as it comes costs one socket write per line downstream. Chunks that arrive in one
 * turn of the event loop are joined and pushed once instead (setImmediate, not nextTick: Node
 * drains the nextTick queue after every record it reads). A fetched log arrives in large chunks,
 * which pass through as they are.
 *
 * `finish()` ends the stream cleanly (the follow is over: the pod finished) and closes the source;
 * an error of the source after that, such as its abort, is not the reader's business.
 */
export class PodLogStream extends Readable {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private flushScheduled = false;
  private ending = false;
  private finished = false;
  /** Set on every chunk, cleared by whoever checks the pod: bytes flowing mean the pod is alive. */
  active = false;

  private source: Readable | undefined;
  private wanted = false;

  /** `closeSource` stops the request to the API server, whether or not it has answered yet. */
  constructor(private readonly closeSource: () => void) {
    super({ highWaterMark: 64 * 1024 });
  }

  /** The API server's answer arrived: pass its bytes on. */
  attach(source: Readable): void {
    if (this.finished) {
      source.destroy();
      return;
    }
    this.source = source;
    source.on('data', (chunk: Buffer) => {
      if (this.finished) return;
      this.active = true;
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      // A source that has much at hand (a fetched log, a fast local stream) waits for the next flush.
      if (this.pendingBytes >= this.readableHighWaterMark) source.pause();
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(this.flush);
      }
    });
    source.once('end', () => this.finish());
    source.on('error', (error) => this.fail(error));
    source.pause();
    if (this.wanted) source.resume();
  }

  /** The log cannot be read (any more): the reader gets the error, unless the stream already ended. */
  fail(error: Error): void {
    if (this.finished) return;
    this.finished = true;
    this.destroy(error);
  }

  override _read(): void {
    this.wanted = true;
    if (!this.finished) this.source?.resume();
  }

  private readonly flush = () => {
    this.flushScheduled = false;
    if (this.destroyed) return;
    if (this.pending.length) {
      const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
      this.pending = [];
      this.pendingBytes = 0;
      if (this.push(data)) {
        if (!this.finished) this.source?.resume();
      } else this.source?.pause();
    }
    if (this.ending) this.push(null);
  };

  /** Ends after what has arrived so far; the source is closed. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.closeSource();
    if (this.flushScheduled) this.ending = true;
    else this.push(null);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.finished = true;
    this.pending = [];
    this.closeSource();
    this.source?.destroy();
    callback(error);
  }
}
