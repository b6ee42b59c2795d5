import { closeSync, createReadStream, createWriteStream, openSync, readFileSync, readSync, type WriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { InternalError, Unavailable, type HttpError } from '../http/errors.ts';
import type { RandomAccess } from './archive.ts';

/**
 * Where the parts of one multipart upload wait on disk while the request streams in, so an upload
 * of any size costs a few socket chunks of memory (issue 10). One private directory (0700) per
 * request under the system's temporary directory, files 0600; `dispose` removes it, and every
 * outcome (answer, refusal, client gone, process error) reaches `dispose` (lib/uploads/multipart.ts).
 */
export class Spool {
  private dir: Promise<string> | undefined;
  private readonly descriptors = new Set<number>();
  private files = 0;
  private disposed = false;

  /** A new empty file, opened for writing; errors (disk full, no temp dir) arrive on the stream. */
  async create(): Promise<{ path: string; stream: WriteStream }> {
    if (this.disposed) throw new Error('the upload spool is already disposed');
    this.dir ??= mkdtemp(join(tmpdir(), 'kbatch-upload-'));
    const path = join(await this.dir, `part-${this.files++}`);
    return { path, stream: createWriteStream(path, { flags: 'wx', mode: 0o600 }) };
  }

  /** Positioned reads of a spooled file (a zip's central directory and members). */
  access(path: string, length: number): RandomAccess {
    const fd = openSync(path, 'r');
    this.descriptors.add(fd);
    return {
      length,
      read(offset, size) {
        const buffer = Buffer.allocUnsafe(size);
        let done = 0;
        while (done < size) {
          const got = readSync(fd, buffer, done, size - done, offset + done);
          if (got === 0) throw new Error('a spooled upload part is shorter than it was');
          done += got;
        }
        return buffer;
      },
      stream: (offset, size) =>
        size ? createReadStream(path, { start: offset, end: offset + size - 1, highWaterMark: 64 * 1024 }) : Readable.from([]),
    };
  }

  readAll(path: string): Buffer {
    return readFileSync(path);
  }

  stream(path: string): Readable {
    return createReadStream(path, { highWaterMark: 64 * 1024 });
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    for (const fd of this.descriptors) {
      try {
        closeSync(fd);
      } catch {
        /* already closed */
      }
    }
    this.descriptors.clear();
    const dir = await this.dir?.catch(() => undefined);
    if (dir) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

/**
 * A spool that cannot take the upload: a full disk is the server's temporary state (503, try again
 * later), anything else (no temporary directory, no permission) a server fault (500). Either way a
 * JSON answer, never a crash.
 */
export function spoolError(error: Error): HttpError {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  console.error('kbatch: spooling an upload to disk failed:', error.message);
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EMFILE' || code === 'ENFILE')
    return new Unavailable('The server has no room for this upload right now; try again later');
  return new InternalError('The server could not store this upload temporarily');
}
