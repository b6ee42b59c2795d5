import busboy from 'busboy';
import type { Readable } from 'node:stream';
import { BadRequest, PayloadTooLarge, type HttpError } from '../http/errors.ts';
import { bufferedByFramework } from '../http/body.ts';
import type { IncomingRequest } from '../http/router.ts';
import { detectArchive, readArchive, type ArchiveEntry, type UploadLimits } from './archive.ts';
import { invalidArchive, uploadTooLarge } from './errors.ts';

export interface MultipartUpload {
  fields: Record<string, string>;
  entries: ArchiveEntry[];
  /** How many file parts arrived; 0 means the request carried a spec only. */
  fileParts: number;
}

interface FilePart {
  field: string;
  name: string;
  data: Buffer;
}

const archiveName = /\.(zip|tar|tgz|tar\.gz)$/i;
const maxFieldBytes = 1024 * 1024;

/**
 * Collects one part's bytes. A part that grows past 1 MiB moves into one buffer sized to the
 * most it can still be (what Content-Length leaves, within the upload limit) and is copied into
 * it as it arrives: the upload is held once, instead of as socket chunks plus their joined copy.
 * Untouched pages of that buffer cost no memory, and a part that ends much smaller is copied out
 * of it. Small parts keep their chunks and are joined once.
 */
class PartBuffer {
  private chunks: Buffer[] = [];
  private buffer: Buffer | undefined;
  private length = 0;

  constructor(private readonly bound: number) {}

  push(chunk: Buffer): void {
    if (!this.buffer && this.length + chunk.length > 1024 * 1024 && this.bound >= this.length + chunk.length) this.preallocate();
    if (this.buffer && this.length + chunk.length > this.buffer.length) {
      this.chunks = [this.buffer.subarray(0, this.length)]; // the bound was wrong: fall back to chunks
      this.buffer = undefined;
    }
    if (this.buffer) chunk.copy(this.buffer, this.length);
    else this.chunks.push(chunk);
    this.length += chunk.length;
  }

  private preallocate(): void {
    try {
      this.buffer = Buffer.allocUnsafe(this.bound);
    } catch {
      return; // no room for it: keep collecting chunks
    }
    let offset = 0;
    for (const chunk of this.chunks) offset += chunk.copy(this.buffer, offset);
    this.chunks = [];
  }

  take(): Buffer {
    const { buffer, chunks, length } = this;
    this.buffer = undefined;
    this.chunks = [];
    if (buffer) return length < buffer.length * 0.75 ? Buffer.from(buffer.subarray(0, length)) : buffer.subarray(0, length);
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
  }
}

/**
 * Parses a multipart body as it streams in. A part named `archive` (or a lone file named *.zip,
 * *.tar, *.tar.gz) is unpacked; every other file part is one file whose name is its path under /code.
 *
 * Every stream involved (the parser, each file part, the request) can fail on its own, and busboy
 * fails the parser and the current part together (a body cut before its closing boundary does
 * both). So each gets an 'error' listener the moment it exists, kept for its whole life; every
 * listener body is guarded; and every outcome goes through `stop`: the first one wins, later ones
 * are ignored, and nothing can throw outside this promise. On failure the request is unpiped and drained, never destroyed,
 * so the client (and the Hub's proxy in front of it) reads the 400/413 instead of a reset.
 */
export function parseMultipart(req: IncomingRequest, limits: UploadLimits): Promise<MultipartUpload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        preservePath: true,
        limits: { fileSize: limits.maxBytes, files: limits.maxFiles, fields: 32, fieldSize: maxFieldBytes },
      });
    } catch (error) {
      reject(new BadRequest(`Malformed multipart request: ${(error as Error).message}`));
      return;
    }
    const fields: Record<string, string> = {};
    let files: FilePart[] = [];
    let total = 0;
    let settled = false;
    // functions-framework may have read the body already; otherwise it streams from the request.
    const buffered = bufferedByFramework(req);
    const streaming = !buffered;
    // What is left of Content-Length bounds the next part (0: unknown, as with a chunked body).
    const declaredLength = buffered ? 0 : Number(req.headers['content-length']) || 0;
    const stop = () => {
      settled = true;
      files = [];
      if (!streaming) return;
      req.off('close', onRequestClose);
      // Not parser.destroy(): this often runs inside one of busboy's own callbacks, which keeps
      // using its state after we return. Unpiped and never ended, the parser simply goes quiet.
      req.unpipe(parser);
      // Drained, never destroyed: a proxy (CHP) that is still sending does not pass the answer on
      // until its request is read; left paused, the socket times out and the client gets the
      // proxy's HTML 503 instead of our 413. The router may bound this drain and close after it.
      if (!req.readableEnded) req.resume();
    };
    const fail = (error: HttpError | Error) => {
      if (settled) return;
      stop();
      reject(error);
    };
    // A throw inside a listener would surface in busboy's or the socket's call stack, outside any
    // request: turn it into this request's failure instead (a 500 if it is not an HttpError).
    const guard =
      <A extends unknown[]>(listener: (...args: A) => void) =>
      (...args: A) => {
        try {
          listener(...args);
        } catch (error) {
          fail(error as Error);
        }
      };
    const malformed = (error: Error) => fail(new BadRequest(`Malformed multipart request: ${error.message}`));
    const tooLarge = () => fail(uploadTooLarge(`the upload is larger than ${limits.maxBytes} bytes`));
    // A client that goes away mid-body never ends the parser: without this the promise would hang.
    function onRequestClose() {
      if (!req.complete && !req.readableEnded) fail(new BadRequest('Malformed multipart request: the request ended before its body did'));
    }

    parser.on('error', malformed);
    parser.on(
      'field',
      guard((name: string, value: string, info: busboy.FieldInfo) => {
        if (settled) return;
        if (info.valueTruncated) return fail(new PayloadTooLarge(`Field "${name.slice(0, 100)}" is larger than ${maxFieldBytes} bytes`));
        fields[name] = value;
      }),
    );
    parser.on('file', (field: string, stream: Readable, info: busboy.FileInfo) => {
      stream.on('error', malformed);
      guard(() => receiveFile(field, stream, info))();
    });
    const receiveFile = (field: string, stream: Readable, info: busboy.FileInfo) => {
      if (settled) {
        stream.resume();
        return;
      }
      const name = info.filename ?? field;
      const part = new PartBuffer(Math.max(0, Math.min(declaredLength, limits.maxBytes) - total));
      stream.on(
        'data',
        guard((chunk: Buffer) => {
          if (settled) return;
          total += chunk.length;
          if (total > limits.maxBytes) return tooLarge();
          part.push(chunk);
        }),
      );
      stream.on('limit', tooLarge);
      stream.on(
        'end',
        guard(() => {
          if (settled) return;
          files.push({ field, name, data: part.take() });
        }),
      );
    };
    parser.on('filesLimit', () => fail(uploadTooLarge(`the upload has more than ${limits.maxFiles} files`)));
    parser.on('fieldsLimit', () => fail(new BadRequest('Malformed multipart request: too many form fields')));
    parser.on('partsLimit', () => fail(new BadRequest('Malformed multipart request: too many parts')));
    parser.on('close', () => {
      if (settled) return;
      const parts = files;
      stop();
      try {
        resolve({ fields, entries: toEntries(parts, limits), fileParts: parts.length });
      } catch (error) {
        reject(error);
      }
    });

    if (!streaming) {
      parser.end(buffered);
    } else {
      req.on('close', onRequestClose);
      req.pipe(parser);
    }
  });
}

function toEntries(files: FilePart[], limits: UploadLimits): ArchiveEntry[] {
  const archives = files.filter((f) => f.field === 'archive' || (files.length === 1 && archiveName.test(f.name) && detectArchive(f.data)));
  if (archives.length > 1) throw invalidArchive('send one archive per upload');
  if (archives.length === 1) {
    if (files.length > 1) throw invalidArchive('send either one archive or individual files, not both');
    return readArchive(archives[0]!.data, limits);
  }
  return files.map((f) => ({ path: f.name, type: 'file' as const, mode: 0o644, data: f.data }));
}
