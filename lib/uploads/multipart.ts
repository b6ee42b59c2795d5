import busboy from 'busboy';
import { createHash, type Hash } from 'node:crypto';
import type { WriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { BadRequest, PayloadTooLarge, type HttpError } from '../http/errors.ts';
import { bufferedByFramework } from '../http/body.ts';
import type { IncomingRequest } from '../http/router.ts';
import type { UploadLimits } from './archive.ts';
import { uploadTooLarge } from './errors.ts';
import { Spool, spoolError } from './spool.ts';

export interface MultipartUpload {
  fields: Record<string, string>;
  /** The file parts, in order, in memory or spooled to disk (`spool`). */
  parts: UploadPart[];
  /** How many file parts arrived; 0 means the request carried a spec only. */
  fileParts: number;
  /** Of every file part's name and bytes: what the client sent, for idempotency before anything is stored. */
  sha256: string;
  /** Holds the spooled parts; `dispose` removes them (withMultipart does). */
  spool: Spool;
}

export interface UploadPart {
  field: string;
  name: string;
  size: number;
  /** The first bytes (up to 512): enough to recognise an archive. */
  head: Buffer;
  /** The bytes, when small enough to keep in memory; else the spooled file at `path` holds them. */
  data?: Buffer;
  path?: string;
}

/**
 * A part stays in memory up to 256 KiB, and all parts together up to 1 MiB; past either it goes to
 * disk, so memory does not grow with the upload (issue 10: ≤ 32 MB for an upload of any size).
 */
const maxMemoryPartBytes = 256 * 1024;
const maxMemoryBytes = 1024 * 1024;
const maxFieldBytes = 1024 * 1024;

/**
 * Parses a multipart body and runs `use` on it; the spooled parts are removed whatever happens,
 * once `use` is done (it must have finished reading them when its promise settles).
 */
export async function withMultipart<T>(
  req: IncomingRequest,
  limits: UploadLimits,
  use: (upload: MultipartUpload) => Promise<T> | T,
): Promise<T> {
  const upload = await parseMultipart(req, limits);
  try {
    return await use(upload);
  } finally {
    await upload.spool.dispose();
  }
}

interface PartState {
  part: UploadPart;
  chunks: Buffer[];
  hash: Hash;
  file?: WriteStream;
  /** Settles when the part is complete (in memory, or flushed to its file). */
  done: Promise<void>;
}

/**
 * Parses a multipart body as it streams in, spooling large file parts to disk (lib/uploads/spool.ts)
 * with the limits enforced on every chunk. Which parts are code is decided later (lib/uploads/code.ts).
 *
 * Every stream involved (the parser, each file part, each spool file, the request) can fail on its
 * own, and busboy fails the parser and the current part together (a body cut before its closing
 * boundary does both). So each gets an 'error' listener the moment it exists, kept for its whole
 * life; every listener body is guarded; and every outcome goes through `fail` or the final resolve:
 * the first one wins, later ones are ignored, and nothing can throw outside this promise. A failure
 * removes the spool before it rejects, so no temporary file outlives a refused or aborted upload. On
 * failure the request is unpiped and drained, never destroyed, so the client (and the Hub's proxy in
 * front of it) reads the 400/413 instead of a reset.
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
    const spool = new Spool();
    const fields: Record<string, string> = {};
    let parts: PartState[] = [];
    let total = 0;
    let inMemory = 0;
    let settled = false;
    // functions-framework may have read the body already; otherwise it streams from the request.
    const buffered = bufferedByFramework(req);
    const streaming = !buffered;
    const stop = () => {
      settled = true;
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
      for (const state of parts) state.file?.destroy();
      parts = [];
      spool.dispose().then(
        () => reject(error),
        (cleanup: Error) => {
          console.error('kbatch: removing a refused upload from the spool failed:', cleanup.message);
          reject(error);
        },
      );
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
    // After a refusal the spool's files are destroyed on purpose: their errors are no news.
    const spoolFailed = (error: Error) => {
      if (!settled) fail(spoolError(error));
    };
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

    /** Moves a part that grew too large for memory into a spool file; the part's stream waits meanwhile. */
    const spill = (state: PartState, stream: Readable) => {
      stream.pause();
      spool.create().then(({ path, stream: file }) => {
        file.on('error', spoolFailed);
        if (settled) return void file.destroy();
        state.file = file;
        state.part.path = path;
        for (const chunk of state.chunks) file.write(chunk);
        inMemory -= state.part.size;
        state.chunks = [];
        stream.resume();
      }, spoolFailed);
    };

    const receiveFile = (field: string, stream: Readable, info: busboy.FileInfo) => {
      if (settled) {
        stream.resume();
        return;
      }
      const state: PartState = {
        part: { field, name: info.filename ?? field, size: 0, head: Buffer.alloc(0) },
        chunks: [],
        hash: createHash('sha256'),
        done: Promise.resolve(),
      };
      state.hash.update(`${field}\0${state.part.name}\0`);
      parts.push(state);
      let spilling = false;
      state.done = new Promise<void>((partDone) => {
        stream.on(
          'data',
          guard((chunk: Buffer) => {
            if (settled) return;
            total += chunk.length;
            if (total > limits.maxBytes) return tooLarge();
            const { part } = state;
            if (part.head.length < 512) part.head = Buffer.concat([part.head, chunk.subarray(0, 512 - part.head.length)]);
            part.size += chunk.length;
            state.hash.update(chunk);
            if (state.file) {
              // Backpressure: the part (and so the parser and the request) waits for the disk.
              if (!state.file.write(chunk)) {
                stream.pause();
                state.file.once('drain', () => stream.resume());
              }
              return;
            }
            state.chunks.push(chunk);
            inMemory += chunk.length;
            if (!spilling && (part.size > maxMemoryPartBytes || inMemory > maxMemoryBytes)) {
              spilling = true;
              spill(state, stream);
            }
          }),
        );
        stream.on('limit', tooLarge);
        stream.on(
          'end',
          guard(() => {
            if (settled) return;
            const { file } = state;
            if (!file) {
              state.part.data = state.chunks.length === 1 ? state.chunks[0]! : Buffer.concat(state.chunks, state.part.size);
              state.chunks = [];
              return partDone();
            }
            file.end();
            finished(file).then(partDone, spoolFailed);
          }),
        );
      });
    };
    parser.on('filesLimit', () => fail(uploadTooLarge(`the upload has more than ${limits.maxFiles} files`)));
    parser.on('fieldsLimit', () => fail(new BadRequest('Malformed multipart request: too many form fields')));
    parser.on('partsLimit', () => fail(new BadRequest('Malformed multipart request: too many parts')));
    parser.on('close', () => {
      if (settled) return;
      // busboy may close before the last part's file is flushed: wait for every part.
      const states = parts;
      Promise.all(states.map((state) => state.done)).then(() => {
        if (settled) return;
        stop();
        const sha256 = createHash('sha256');
        for (const state of states) sha256.update(state.hash.digest());
        resolve({ fields, parts: states.map((state) => state.part), fileParts: states.length, sha256: sha256.digest('hex'), spool });
      }, fail);
    });

    if (!streaming) {
      parser.end(buffered);
    } else {
      req.on('close', onRequestClose);
      req.pipe(parser);
    }
  });
}
