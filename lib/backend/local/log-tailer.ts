import { open, type FileHandle } from 'node:fs/promises';
import { PassThrough, type Readable } from 'node:stream';
import type { LogOptions } from '../types.ts';

/** How often a follower looks for new bytes: one fstat, so cheap enough for many followers. */
const followPollMs = 200;
const blockBytes = 64 * 1024;
const newline = 0x0a;

/**
 * Streams a pod's log file (lines of `<RFC 3339 time> <text>`) with the kubelet's semantics:
 * `tailLines` picks the last N complete lines present when the request starts, `sinceTime` then
 * drops the lines before it (inclusive, so a resuming client de-duplicates the boundary line), and
 * `follow` keeps reading new lines until `isFinished` says the pod is done. `isFinished` is asked
 * only when no new bytes arrived, and after it said yes the file is read once more to its end:
 * the runner closes a log before it records the pod as finished, so the last lines are never lost.
 */
export function tailLog(file: string, options: LogOptions, signal: AbortSignal, isFinished: () => Promise<boolean>): Readable {
  const output = new PassThrough();
  const since = options.sinceTime ? Date.parse(options.sinceTime) : Number.NaN;
  const tailLines = Number.isInteger(options.tailLines) && options.tailLines! >= 0 ? options.tailLines : undefined;
  let carry: Buffer = Buffer.alloc(0);
  let handle: FileHandle | undefined;
  let offset = 0;

  const stopped = () => signal.aborted || output.destroyed;

  /** Waits for the reader when the output is full, so a large log is never held in memory whole. */
  const push = async (text: string): Promise<void> => {
    if (output.write(text)) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        output.off('drain', done);
        output.off('close', done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      output.on('drain', done);
      output.on('close', done);
      signal.addEventListener('abort', done, { once: true });
    });
  };

  const emit = async (chunk: Buffer): Promise<void> => {
    // Split on bytes, not decoded text: a character cut by a block boundary stays whole.
    const data = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    const lines: string[] = [];
    let start = 0;
    for (let end = data.indexOf(newline); end !== -1; end = data.indexOf(newline, start)) {
      const line = data.toString('utf8', start, end);
      start = end + 1;
      const space = line.indexOf(' ');
      if (Date.parse(line.slice(0, space)) < since) continue;
      lines.push(options.timestamps ? line : line.slice(space + 1));
    }
    carry = Buffer.from(data.subarray(start));
    if (lines.length) await push(lines.join('\n') + '\n');
  };

  /** The file's size now; 0 while it does not exist yet (a pod that has not started). */
  const size = async (): Promise<number> => {
    if (!handle) {
      try {
        handle = await open(file, 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
        throw error;
      }
    }
    return (await handle.stat()).size;
  };

  const readTo = async (end: number): Promise<void> => {
    while (offset < end && !stopped()) {
      const buffer = Buffer.alloc(Math.min(blockBytes, end - offset));
      const { bytesRead } = await handle!.read(buffer, 0, buffer.length, offset);
      if (!bytesRead) break;
      offset += bytesRead;
      await emit(buffer.subarray(0, bytesRead));
    }
  };

  void (async () => {
    try {
      const initial = await size();
      if (tailLines !== undefined && handle) offset = await startOfLastLines(handle, initial, tailLines);
      // Without follow the answer is the file as it was when asked, even while the process still writes.
      await readTo(initial);
      while (options.follow && !stopped()) {
        const current = await size();
        if (current > offset) {
          // Bytes came: the pod is writing, so no need to ask whether it finished until a poll brings none.
          await readTo(current);
          await sleep(followPollMs, signal);
          continue;
        }
        if (await isFinished()) {
          await readTo(await size());
          break;
        }
        await sleep(followPollMs, signal);
      }
      output.end();
    } catch (error) {
      output.destroy(error as Error);
    } finally {
      await handle?.close().catch(() => undefined);
    }
  })();
  return output;
}

/**
 * Where the last `lines` complete lines of the first `size` bytes start. An unterminated last line
 * is not counted (it is still being written), as the kubelet does.
 */
export async function startOfLastLines(handle: FileHandle, size: number, lines: number): Promise<number> {
  let newlines = 0;
  let end = size;
  while (end > 0) {
    const start = Math.max(0, end - blockBytes);
    const buffer = Buffer.alloc(end - start);
    await handle.read(buffer, 0, buffer.length, start);
    for (let i = buffer.length - 1; i >= 0; i--) {
      // The newline before the first wanted line; the last line's own newline is the first one counted.
      if (buffer[i] === newline && ++newlines === lines + 1) return start + i + 1;
    }
    end = start;
  }
  return 0;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
