import { constants, type Stats } from 'node:fs';
import { lstat, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { OutputFile } from '../lib/contract.ts';
import type { KbatchApi } from './api.ts';
import { ApiError, CliError } from './errors.ts';
import { Extractor, type ExtractSummary } from './extract.ts';
import { humanBytes } from './format.ts';
import type { HttpResponse } from './http.ts';
import { failureText, isTransient, Reconnects, type ReconnectOptions } from './retry.ts';

/**
 * Downloads of a job's outputs: one file, resumable (`Range: bytes=N-`) into `<file>.part` renamed
 * when complete, or every file as a tar.gz unpacked as it streams (cli/extract.ts). Both ride out
 * dropped connections with the shared bounded reconnect policy (cli/retry.ts).
 */

const noFollow = constants.O_NOFOLLOW ?? 0;

/** Told the bytes so far and the total when known, after each chunk. */
export type ProgressListener = (bytes: number, total: number | undefined) => void;

/** Where one file's bytes go: a `.part` file renamed at the end, or a stream (stdout) that cannot seek. */
export interface FileSink {
  /** Bytes already there to resume from: a `.part` left by an earlier run, or what this run wrote. */
  resumable(): Promise<number>;
  /** Drops everything and starts again from byte 0 (the server ignored the Range, or the file changed). */
  restart(): Promise<void>;
  write(chunk: Uint8Array): Promise<void>;
  /** The last `n` bytes held, to check a resume against (a sink that cannot read back has none). */
  tail?(n: number): Promise<Buffer>;
  /** The download is complete and verified. */
  finish(): Promise<void>;
  /** The download failed: release what is open; a `.part` stays, so a rerun resumes. */
  abandon(): Promise<void>;
}

async function lstatOrMissing(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** `<target>.part`, appended to, renamed onto `target` at the end (replacing a file, never writing through a link). */
export class PartFile implements FileSink {
  readonly part: string;
  private handle: FileHandle | undefined;
  private size = 0;

  constructor(readonly target: string) {
    this.part = `${target}.part`;
  }

  async resumable(): Promise<number> {
    const existing = await lstatOrMissing(this.part);
    if (existing && !existing.isFile()) throw new CliError(`${this.part} exists and is not a regular file; remove it and try again`);
    const target = await lstatOrMissing(this.target);
    if (target?.isDirectory()) throw new CliError(`${this.target} is a directory; choose another --dest`);
    // O_NOFOLLOW: a symlink planted as the .part after the check is not followed.
    this.handle ??= await open(this.part, constants.O_RDWR | constants.O_CREAT | noFollow, 0o644);
    this.size = (await this.handle.stat()).size;
    return this.size;
  }

  async restart(): Promise<void> {
    await this.handle!.truncate(0);
    this.size = 0;
  }

  async write(chunk: Uint8Array): Promise<void> {
    // Positioned writes: where the bytes go never depends on a file offset shared with anyone.
    await this.handle!.write(chunk, 0, chunk.length, this.size);
    this.size += chunk.length;
  }

  async tail(n: number): Promise<Buffer> {
    const buffer = Buffer.alloc(n);
    const { bytesRead } = await this.handle!.read(buffer, 0, n, this.size - n);
    return buffer.subarray(0, bytesRead);
  }

  async finish(): Promise<void> {
    await this.handle!.close();
    this.handle = undefined;
    await rename(this.part, this.target);
  }

  async abandon(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = undefined;
    // An empty .part holds nothing worth resuming.
    if (this.size === 0) await unlink(this.part).catch(() => {});
  }
}

/** stdout (`--dest -`): written with backpressure; a resume continues after what was written. */
export class StreamSink implements FileSink {
  private written = 0;

  constructor(private readonly stream: Writable) {}

  async resumable(): Promise<number> {
    return this.written;
  }

  async restart(): Promise<void> {
    if (this.written > 0) throw new CliError('the file changed on the server while it was being written to stdout; run the command again');
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.written += chunk.length;
    if (!this.stream.write(chunk)) await new Promise<void>((resolve) => this.stream.once('drain', resolve));
  }

  async finish(): Promise<void> {}
  async abandon(): Promise<void> {}
}

/** Where the body starts and the file's full size, from a 200 or 206 answer. */
export function bodyRange(response: HttpResponse): { start: number; total: number | undefined } {
  if (response.status === 206) {
    const match = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get('content-range')?.trim() ?? '');
    if (!match) throw new CliError(`the server answered 206 without a usable Content-Range (${response.headers.get('content-range')})`);
    return { start: Number(match[1]), total: match[3] === '*' ? undefined : Number(match[3]) };
  }
  const length = response.headers.get('content-length');
  return { start: 0, total: length !== null && /^\d+$/.test(length) ? Number(length) : undefined };
}

/**
 * No byte for this long and the connection is taken as dead (a half-open socket, a laptop that
 * slept, a proxy that lost it never says so): the download resumes as after a cut.
 */
export const defaultStallMs = 60_000;

/** Aborts an attempt when no byte arrived for `ms`; each chunk starts the clock again. */
class StallWatch {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly ms: number) {
    this.poke();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get stalled(): boolean {
    return this.controller.signal.aborted;
  }

  get reason(): string {
    return `no data for ${this.ms / 1000} s`;
  }

  poke(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.controller.abort(new Error(this.reason)), this.ms);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/**
 * A resume asks for this much of what is already there again and compares it: a `.part` left by
 * another file of the same name (another job's) or a file that changed since is then caught and
 * started over, instead of being completed into a mix of two files of the right size.
 */
export const defaultOverlapBytes = 64 * 1024;

/** Starting over (a 416, a mismatch) more often than this means the file keeps changing. */
const maxRestarts = 3;

export interface DownloadOptions extends ReconnectOptions {
  /** See defaultStallMs. */
  stallMs?: number;
  /** See defaultOverlapBytes. */
  overlapBytes?: number;
  progress?: ProgressListener;
  /** One line for a notice (a restart from zero), without newline. */
  notice?: (text: string) => void;
}

/**
 * Downloads one output file into `sink`, resuming from what it already holds. A dropped connection
 * resumes from the last byte written; a server that ignores the Range starts over; a 416 (the
 * `.part` is longer than the file, which changed) starts over once. The size is checked at the
 * end: against the answer's length, else against the outputs listing.
 */
export async function downloadFile(
  api: KbatchApi,
  job: string,
  path: string,
  sink: FileSink,
  options: DownloadOptions = {},
): Promise<number> {
  const reconnects = new Reconnects(options);
  const overlapBytes = options.overlapBytes ?? defaultOverlapBytes;
  let restarts = 0;
  let have = await sink.resumable();
  let total: number | undefined;
  const startOver = async (why: string) => {
    if (++restarts > maxRestarts)
      throw new CliError(`${path} of job ${job} keeps changing on the server (${why})`, 1, 'wait until the job has finished writing it');
    options.notice?.(`${why}; starting over`);
    await sink.restart();
    have = 0;
  };
  try {
    for (;;) {
      const watch = new StallWatch(options.stallMs ?? defaultStallMs);
      let dropped: string | undefined;
      try {
        const expected = have > 0 && sink.tail ? await sink.tail(Math.min(have, overlapBytes)) : undefined;
        const from = have - (expected?.length ?? 0);
        let response: HttpResponse;
        try {
          response = await api.outputFile(job, path, from, watch.signal);
        } catch (error) {
          if (error instanceof ApiError && error.status === 416 && have > 0) {
            await startOver(`the partial download (${humanBytes(have)}) is longer than the file on the server`);
            continue;
          }
          if (!isTransient(error)) throw error;
          throw new Dropped(watch.stalled ? watch.reason : failureText(error));
        }
        const range = bodyRange(response);
        total = range.total ?? total;
        let check = expected;
        if (range.start !== from) {
          // A 200 to a ranged request: the server sent the whole file again.
          if (range.start !== 0) throw new CliError(`the server resumed ${path} at byte ${range.start}, not ${from} as asked`);
          options.notice?.(`the server did not resume the download; starting over`);
          await sink.restart();
          have = 0;
          check = undefined;
        }
        let checked = 0;
        let mismatch = false;
        try {
          for await (const received of response.body ?? []) {
            watch.poke();
            let chunk = received;
            if (check && checked < check.length) {
              const n = Math.min(chunk.length, check.length - checked);
              if (!Buffer.from(chunk.buffer, chunk.byteOffset, n).equals(check.subarray(checked, checked + n))) {
                mismatch = true;
                break;
              }
              checked += n;
              chunk = chunk.subarray(n);
              if (!chunk.length) continue;
            }
            await sink.write(chunk);
            have += chunk.length;
            reconnects.succeeded();
            options.progress?.(have, total);
          }
        } catch (error) {
          if (!isTransient(error) && !watch.stalled) throw error;
          throw new Dropped(watch.stalled ? watch.reason : failureText(error));
        }
        // A file shorter than what we hold ends inside the overlap: not the same file either.
        if (mismatch || (check && checked < check.length)) {
          await startOver(`the partial download does not match ${path} on the server (another file of that name, or it changed)`);
          continue;
        }
        if (total !== undefined && have < total) throw new Dropped(`the connection closed after ${have} of ${total} bytes`);
      } catch (error) {
        if (!(error instanceof Dropped)) throw error;
        dropped = error.message;
      } finally {
        watch.stop();
      }
      if (!dropped) break;
      const reason = dropped;
      await reconnects.failed(reason, () => gaveUp(job, path, reason));
    }
    if (total === undefined) {
      // No length in the answer (a chunked response): the listing says how long the file is.
      total = (await api.listOutputs(job)).files.find((file) => file.path === path)?.size;
    }
    if (total !== undefined && have !== total)
      throw new CliError(`downloaded ${have} bytes of ${path}, but the file has ${total}; run the command again to resume`);
    await sink.finish();
    return have;
  } catch (error) {
    await sink.abandon();
    throw error;
  }
}

/** An attempt that ended early for a reason worth retrying; its message says why. */
class Dropped extends Error {}

function gaveUp(job: string, path: string, reason: string): CliError {
  return new CliError(
    `lost the connection while downloading ${path} of job ${job} (${reason})`,
    1,
    'run the same command again: it resumes from the partial file',
  );
}

export interface ArchiveOptions extends ReconnectOptions {
  /** See defaultStallMs. */
  stallMs?: number;
  /**
   * The listing of the outputs. With it, an archive cut mid-way is not started again: the files it
   * had not delivered whole are fetched one by one, each resumable. (On Knative a request lasts at
   * most the function's timeout: an archive too large for it would otherwise never complete.)
   */
  files?: OutputFile[];
  progress?: ProgressListener;
  warn: (text: string) => void;
  /** One line for a notice (the switch to file-by-file), without newline. */
  notice?: (text: string) => void;
}

/**
 * Downloads the outputs archive and unpacks it into `dest` as it streams: nothing is held whole.
 * A dropped connection continues file by file when the listing is given (see ArchiveOptions.files),
 * else starts the archive again (a tar.gz cannot resume mid-stream), skipping the files complete.
 */
export async function downloadArchive(api: KbatchApi, job: string, dest: string, options: ArchiveOptions): Promise<ExtractSummary> {
  const reconnects = new Reconnects(options);
  const completed = new Map<string, number>();
  const totalBytes = options.files?.reduce((sum, file) => sum + file.size, 0);
  for (;;) {
    let received = 0;
    const watch = new StallWatch(options.stallMs ?? defaultStallMs);
    const extractor = new Extractor(dest, {
      warn: options.warn,
      completed,
      progress: (bytes) => {
        if (bytes > received) reconnects.succeeded();
        received = bytes;
        options.progress?.(bytes, totalBytes);
      },
    });
    // Why the body ended early, when it did: what had arrived is still unpacked first (the stream
    // just ends there), and this, not the truncation it causes, is the failure reported.
    let cut: unknown;
    try {
      const response = await api.outputsArchive(job, watch.signal);
      const gunzip = createGunzip();
      // Leaving early (the end-of-archive block) closes the body.
      const body = response.body ?? [];
      const watched = (async function* () {
        try {
          for await (const chunk of body) {
            watch.poke();
            yield chunk;
          }
        } catch (error) {
          cut = error;
        }
      })();
      const done = pipeline(Readable.from(watched), gunzip).catch(() => {});
      try {
        return await extractor.extract(gunzip);
      } finally {
        gunzip.destroy();
        await done;
      }
    } catch (thrown) {
      const error = cut ?? thrown;
      if (!isTransient(error) && !watch.stalled) {
        if ((error as { code?: string }).code?.startsWith('Z_'))
          throw new CliError(`the outputs archive of job ${job} is corrupt (${(error as Error).message})`);
        throw error;
      }
      const reason = watch.stalled ? watch.reason : failureText(error);
      if (options.files) return fileByFile(api, job, extractor, options.files, reason, totalBytes!, options);
      await reconnects.failed(
        reason,
        () =>
          new CliError(
            `lost the connection while downloading the outputs of job ${job} (${reason})`,
            1,
            'run the same command again: files already complete are kept',
          ),
      );
    } finally {
      watch.stop();
    }
  }
}

/** The rest of a cut archive, one resumable download per file, with the archive's checks on each name. */
async function fileByFile(
  api: KbatchApi,
  job: string,
  extractor: Extractor,
  files: OutputFile[],
  reason: string,
  totalBytes: number,
  options: ArchiveOptions,
): Promise<ExtractSummary> {
  const done = extractor.result();
  options.notice?.(
    `the archive was cut after ${done.files} file${done.files === 1 ? '' : 's'} (${reason}); downloading the rest one file at a time, each resumable`,
  );
  for (const file of files) {
    const place = await extractor.targetFor(file.path, file.size);
    if (!place || place.complete) continue;
    const before = extractor.result().bytes;
    await downloadFile(api, job, file.path, new PartFile(place.target), {
      ...options,
      notice: options.notice,
      progress: (bytes) => options.progress?.(before + bytes, totalBytes),
    });
    extractor.written(place.path, file.size);
  }
  return extractor.result();
}
