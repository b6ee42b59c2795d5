import { createHash, randomBytes } from 'node:crypto';
import type { WriteStream } from 'node:fs';
import { finished } from 'node:stream/promises';
import { BadRequest, PayloadTooLarge, type HttpError } from '../http/errors.ts';
import { assertIdentityEncoding, assertJsonContentType, defaultJsonLimitBytes, maxJsonDepth, requestBodyStream } from '../http/body.ts';
import type { IncomingRequest } from '../http/types.ts';
import { uploadTooLarge } from '../uploads/errors.ts';
import { Spool, spoolError } from '../uploads/spool.ts';

/**
 * Upstream's submit body, `{job, code: {binary_data: {code: "<base64 zip>"}}}`, read as it streams
 * (issue 10: an upload of any size grows memory by ≤ 32 MB). Everything but the code string is
 * copied verbatim into a small "skeleton" (capped like any JSON body) that JSON.parse reads at the
 * end, so malformed JSON, duplicate keys (last wins) and odd shapes behave exactly as readJson did;
 * the code string is base64-decoded on the fly into a spool file, and a per-request placeholder
 * stands in for it in the skeleton. Only a string at exactly body.code.binary_data.code (or
 * binaryData.code) is streamed: anything else there (a number, an object) stays in the skeleton
 * and meets the route's usual 400.
 */

/** The decoded code of one `code.binary_data.code` string, in a spool file. */
export interface SpooledCode {
  readonly kind: 'spooled-code';
  path: string;
  size: number;
  sha256: string;
}

export function isSpooledCode(value: unknown): value is SpooledCode {
  return typeof value === 'object' && value !== null && (value as SpooledCode).kind === 'spooled-code';
}

/** What the scanner reports about code strings, in order: a start, its decoded bytes, an end. */
export type CodeEvent = { type: 'start'; id: number } | { type: 'data'; id: number; bytes: Buffer } | { type: 'end'; id: number };

export interface ScannerOptions {
  /** Bytes of the body outside code strings. */
  maxJsonBytes: number;
  maxDepth: number;
  /** Decoded bytes of all code strings together (duplicates included: each is spooled). */
  maxCodeBytes: number;
  onCode: (event: CodeEvent) => void;
}

const codeField = 'code.binary_data.code';
const maxCodeStrings = 8;
const notBase64 = () => new BadRequest(`${codeField}: must be the base64 (RFC 4648, no whitespace) of the code's zip`, codeField);
const notJson = () => new BadRequest('Request body is not valid JSON');

const base64Values = new Int8Array(256).fill(-1);
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((c, i) => (base64Values[c.charCodeAt(0)] = i));
const simpleEscapes: Record<number, number> = { 0x22: 0x22, 0x5c: 0x5c, 0x2f: 0x2f, 0x62: 8, 0x66: 12, 0x6e: 10, 0x72: 13, 0x74: 9 };

/** In an object, what may come next: a key, its colon, its value, or a comma (or the end). */
type Phase = 'key' | 'colon' | 'value' | 'comma';

interface Frame {
  object: boolean;
  phase: Phase;
  key: string | undefined;
}

type StringMode = 'none' | 'key' | 'value' | 'code';

/** The byte-level state machine; synchronous and free of I/O, so chunk boundaries can be tested exhaustively. */
export class UpstreamBodyScanner {
  private readonly nonce = randomBytes(16).toString('hex');
  private readonly skeleton: Buffer[] = [];
  private skeletonBytes = 0;
  private total = 0;
  private readonly stack: Frame[] = [];
  private string: StringMode = 'none';
  private escape = false;
  /** Hex digits of a \u escape still to come (code strings only); -1 when none. */
  private unicodeLeft = -1;
  private unicodeValue = 0;
  private keyBytes: Buffer[] = [];
  private codes = 0;
  // Base64 decoding state of the current code string.
  private quad = 0;
  private quadLength = 0;
  private padding = 0;
  private decoded = 0;

  constructor(private readonly options: ScannerOptions) {}

  write(chunk: Buffer): void {
    this.total += chunk.length;
    let spanStart = 0;
    let out: Buffer | undefined;
    let outLength = 0;
    const flushOut = () => {
      if (out && outLength) this.options.onCode({ type: 'data', id: this.codes - 1, bytes: out.subarray(0, outLength) });
      out = undefined;
      outLength = 0;
    };
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (this.string === 'code') {
        if (this.unicodeLeft >= 0 || this.escape || byte === 0x5c || byte === 0x22) {
          const ch = this.codeSpecial(byte);
          if (ch === -2) {
            // The closing quote: the placeholder takes the string's place in the skeleton.
            out ??= Buffer.allocUnsafe(3);
            outLength = this.finishBase64(out, outLength);
            flushOut();
            this.options.onCode({ type: 'end', id: this.codes - 1 });
            this.string = 'none';
            this.appendSkeleton(Buffer.from(JSON.stringify(this.placeholder(this.codes - 1))));
            spanStart = i + 1;
            continue;
          }
          if (ch < 0) continue;
          out ??= Buffer.allocUnsafe(Math.ceil(((chunk.length - i) * 3) / 4) + 3);
          outLength = this.base64Byte(ch, out, outLength);
          continue;
        }
        if (byte < 0x20) throw notJson();
        out ??= Buffer.allocUnsafe(Math.ceil(((chunk.length - i) * 3) / 4) + 3);
        outLength = this.base64Byte(byte, out, outLength);
        continue;
      }
      if (this.string !== 'none') {
        if (this.escape) this.escape = false;
        else if (byte === 0x5c) this.escape = true;
        else if (byte === 0x22) {
          if (this.string === 'key') this.endKey(chunk, i);
          this.string = 'none';
        }
        continue;
      }
      switch (byte) {
        case 0x7b: // {
        case 0x5b: // [
          if (this.stack.length >= this.options.maxDepth)
            throw new BadRequest(`Request body nests deeper than ${this.options.maxDepth} levels`);
          this.valueStarts();
          this.stack.push({ object: byte === 0x7b, phase: 'key', key: undefined });
          break;
        case 0x7d: // }
        case 0x5d: // ]
          this.stack.pop();
          break;
        case 0x2c: {
          // ,
          const top = this.stack.at(-1);
          if (top?.object) top.phase = 'key';
          break;
        }
        case 0x3a: {
          // :
          const top = this.stack.at(-1);
          if (top?.object) {
            if (top.phase !== 'colon') throw notJson();
            top.phase = 'value';
          }
          break;
        }
        case 0x22: {
          // "
          const top = this.stack.at(-1);
          if (top?.object && top.phase === 'key') {
            this.string = 'key';
            this.keyBytes = [];
            this.keyStart = i + 1;
            top.phase = 'colon';
            break;
          }
          // A string where an object wants a colon or comma is malformed; it must not pass for the code.
          if (top?.object && top.phase !== 'value') throw notJson();
          if (this.atCodePath()) {
            this.valueStarts();
            this.appendSkeleton(chunk.subarray(spanStart, i));
            this.startCode();
            spanStart = i + 1;
          } else {
            this.valueStarts();
            this.string = 'value';
          }
          break;
        }
      }
    }
    flushOut();
    if (this.string === 'key') this.keyBytes.push(chunk.subarray(this.keyStart, chunk.length));
    this.keyStart = 0;
    if (this.string !== 'code') this.appendSkeleton(chunk.subarray(spanStart));
  }

  /** Where the current key began in the current chunk. */
  private keyStart = 0;

  private endKey(chunk: Buffer, end: number): void {
    this.keyBytes.push(chunk.subarray(this.keyStart, end));
    const raw = Buffer.concat(this.keyBytes).toString('utf8');
    this.keyBytes = [];
    let key: string | undefined;
    try {
      key = JSON.parse(`"${raw}"`) as string;
    } catch {
      key = undefined; // malformed: the skeleton's parse refuses it
    }
    this.stack.at(-1)!.key = key;
  }

  /** A value begins in the current container: an object now wants a comma. */
  private valueStarts(): void {
    const top = this.stack.at(-1);
    if (!top?.object) return;
    if (top.phase !== 'value') throw notJson();
    top.phase = 'comma';
  }

  private atCodePath(): boolean {
    const [root, code, binary] = this.stack;
    return (
      this.stack.length === 3 &&
      root!.object &&
      code!.object &&
      binary!.object &&
      root!.key === 'code' &&
      (code!.key === 'binary_data' || code!.key === 'binaryData') &&
      binary!.key === 'code'
    );
  }

  private startCode(): void {
    this.string = 'code';
    this.quad = this.quadLength = this.padding = 0;
    // Duplicate keys are JSON (the last wins), but each costs a spool file: a few are plenty.
    if (this.codes >= maxCodeStrings) throw new BadRequest(`${codeField}: given more than ${maxCodeStrings} times`, codeField);
    this.options.onCode({ type: 'start', id: this.codes++ });
  }

  /** A byte of a code string that is an escape, part of one, or the closing quote: the character it stands for, -1 for none yet, -2 at the end. */
  private codeSpecial(byte: number): number {
    if (this.unicodeLeft >= 0) {
      const digit = Number.parseInt(String.fromCharCode(byte), 16);
      if (Number.isNaN(digit)) throw notJson();
      this.unicodeValue = this.unicodeValue * 16 + digit;
      if (--this.unicodeLeft > 0) return -1;
      this.unicodeLeft = -1;
      if (this.unicodeValue > 0x7f) throw notBase64();
      return this.unicodeValue;
    }
    if (this.escape) {
      this.escape = false;
      if (byte === 0x75) {
        this.unicodeLeft = 4;
        this.unicodeValue = 0;
        return -1;
      }
      const ch = simpleEscapes[byte];
      if (ch === undefined) throw notJson();
      return ch;
    }
    if (byte === 0x5c) {
      this.escape = true;
      return -1;
    }
    return -2; // 0x22
  }

  private base64Byte(ch: number, out: Buffer, at: number): number {
    if (ch === 0x3d) {
      // '=': only after two or three characters of a group, and only padding after it.
      if (this.quadLength + this.padding < 2) throw notBase64();
      if (++this.padding + this.quadLength > 4) throw notBase64();
      return at;
    }
    const value = base64Values[ch]!;
    if (value < 0 || this.padding) throw notBase64();
    this.quad = (this.quad << 6) | value;
    if (++this.quadLength < 4) return at;
    out[at++] = (this.quad >> 16) & 0xff;
    out[at++] = (this.quad >> 8) & 0xff;
    out[at++] = this.quad & 0xff;
    this.quad = this.quadLength = 0;
    return this.counted(at, 3);
  }

  /** The last, short group (padded or not); a lone character is no base64. */
  private finishBase64(out: Buffer, at: number): number {
    if (this.padding && this.quadLength + this.padding !== 4) throw notBase64();
    if (this.quadLength === 1) throw notBase64();
    if (this.quadLength === 2) {
      out[at++] = (this.quad >> 4) & 0xff;
      at = this.counted(at, 1);
    } else if (this.quadLength === 3) {
      out[at++] = (this.quad >> 10) & 0xff;
      out[at++] = (this.quad >> 2) & 0xff;
      at = this.counted(at, 2);
    }
    this.quad = this.quadLength = this.padding = 0;
    return at;
  }

  private counted(at: number, bytes: number): number {
    this.decoded += bytes;
    if (this.decoded > this.options.maxCodeBytes) throw uploadTooLarge(`the upload is larger than ${this.options.maxCodeBytes} bytes`);
    return at;
  }

  private appendSkeleton(bytes: Buffer): void {
    if (!bytes.length) return;
    this.skeletonBytes += bytes.length;
    if (this.skeletonBytes > this.options.maxJsonBytes)
      throw new PayloadTooLarge(`Request body exceeds ${this.options.maxJsonBytes} bytes outside ${codeField}`);
    // Copied: a view would keep its whole socket chunk (mostly code) alive until the end.
    this.skeleton.push(Buffer.from(bytes));
  }

  private placeholder(id: number): string {
    return `kbatch-spooled-code:${this.nonce}:${id}`;
  }

  /** The parsed body, each streamed code string replaced by `resolve(id)`: the last one per JSON's last-key-wins. */
  end(resolve: (id: number) => unknown): unknown {
    if (this.total === 0) throw new BadRequest('Request body is empty; expected JSON');
    if (this.string !== 'none') throw notJson();
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(this.skeleton, this.skeletonBytes).toString('utf8'));
    } catch {
      throw notJson();
    }
    const code = (body as { code?: unknown } | null)?.code;
    if (typeof code !== 'object' || code === null) return body;
    for (const name of ['binary_data', 'binaryData']) {
      const binary = (code as Record<string, unknown>)[name];
      if (typeof binary !== 'object' || binary === null || Array.isArray(binary)) continue;
      const value = (binary as Record<string, unknown>).code;
      const prefix = `kbatch-spooled-code:${this.nonce}:`;
      if (typeof value === 'string' && value.startsWith(prefix))
        (binary as Record<string, unknown>).code = resolve(Number(value.slice(prefix.length)));
    }
    return body;
  }
}

export interface UpstreamBody {
  /** The parsed body; `code.binary_data.code` (or binaryData) is a SpooledCode when it was a string. */
  body: unknown;
  spool: Spool;
}

/**
 * Reads an upstream submit body and runs `use` on it; the spool is removed whatever happens, once
 * `use` is done (it must have finished reading the spooled code when its promise settles).
 * Call only after authenticating.
 */
export async function withUpstreamBody<T>(
  req: IncomingRequest,
  limits: { maxCodeBytes: number; maxJsonBytes?: number },
  use: (body: unknown, spool: Spool) => Promise<T> | T,
): Promise<T> {
  const spool = new Spool();
  try {
    const body = await readUpstreamBody(req, spool, limits);
    return await use(body, spool);
  } finally {
    await spool.dispose();
  }
}

async function readUpstreamBody(
  req: IncomingRequest,
  spool: Spool,
  limits: { maxCodeBytes: number; maxJsonBytes?: number },
): Promise<unknown> {
  assertJsonContentType(req);
  assertIdentityEncoding(req);
  const files: { path: string; stream: WriteStream; size: number; hash: ReturnType<typeof createHash>; done?: SpooledCode }[] = [];
  let pending: CodeEvent[] = [];
  const scanner = new UpstreamBodyScanner({
    maxJsonBytes: limits.maxJsonBytes ?? defaultJsonLimitBytes,
    maxDepth: maxJsonDepth,
    maxCodeBytes: limits.maxCodeBytes,
    onCode: (event) => pending.push(event),
  });
  const source = requestBodyStream(req);
  const streaming = source === req;
  let spoolFailure: Error | undefined;
  const onSpoolError = (error: Error) => (spoolFailure ??= error);
  try {
    // Not destroyed on a throw: the router drains what is left, so the client reads the 400/413.
    for await (const chunk of source.iterator({ destroyOnReturn: false })) {
      scanner.write(chunk as Buffer);
      const events = pending;
      pending = [];
      for (const event of events) {
        if (spoolFailure) throw spoolError(spoolFailure);
        if (event.type === 'start') {
          const { path, stream } = await spool.create();
          stream.on('error', onSpoolError);
          files[event.id] = { path, stream, size: 0, hash: createHash('sha256') };
        } else if (event.type === 'data') {
          const file = files[event.id]!;
          file.size += event.bytes.length;
          file.hash.update(event.bytes);
          // The scanner allocates a new output buffer per chunk, so a queued write keeps its bytes.
          if (!file.stream.write(event.bytes)) await drained(file.stream);
        } else {
          const file = files[event.id]!;
          file.stream.end();
          await finished(file.stream);
          file.done = { kind: 'spooled-code', path: file.path, size: file.size, sha256: file.hash.digest('hex') };
        }
      }
      if (spoolFailure) throw spoolError(spoolFailure);
    }
    if (streaming && !req.complete) throw new BadRequest('The request body was cut off');
    return scanner.end((id) => files[id]!.done!);
  } catch (error) {
    for (const file of files) file?.stream.destroy();
    if (error instanceof Error && 'status' in error) throw error as HttpError;
    if (spoolFailure || (error as NodeJS.ErrnoException).syscall) throw spoolError((spoolFailure ?? error) as Error);
    throw new BadRequest('The request body was cut off');
  }
}

/** Waits for the disk to take more; a write error is recorded by the stream's own listener. */
function drained(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done).off('error', done);
      resolve();
    };
    stream.on('drain', done).on('error', done);
  });
}
