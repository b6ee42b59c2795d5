import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import {
  checkSymlink,
  checksumMatches,
  longText,
  readOctal,
  readPax,
  readString,
  safeRelativePath,
  tarTypes,
  writeHeader,
  type ArchiveEntry,
  type UploadLimits,
} from './archive.ts';
import { invalidArchive, quoted, uploadTooLarge } from './errors.ts';

/**
 * A tar checked and rewritten while it streams, for uploads too large to hold (lib/uploads/archive.ts
 * checks whole archives in memory). Applies the same rules as validateEntries: safe relative paths,
 * no hard links, devices or FIFOs, symlinks only inside the upload, nothing below a symlink or file,
 * no path twice, and the byte and file limits; the first violation fails the stream (400 or 413).
 *
 * The output is a new tar written from the checked fields only (ustar headers, GNU long names, uid
 * and gid 0, mtime 0, mode & 0o777), followed by the end-of-archive blocks and padding to a whole
 * 10240-byte record, so the extracting `tar` never interprets anything the user wrote in a header
 * and stops by itself at the end (KWOK never closes an exec's stdin). Data passes through as the
 * chunks it arrived in: memory is one header plus at most one extended-header record.
 */

/** GNU long names and pax records are small; a larger one is an attack on memory, not a path. */
const maxExtendedHeaderBytes = 64 * 1024;
const recordBytes = 10240;

export interface StreamedTarSummary {
  files: number;
  /** Bytes of file data after unpacking. */
  bytes: number;
  /** Of the rewritten tar, as sent to the volume. */
  sha256: string;
  archiveBytes: number;
}

type State =
  | { kind: 'header' }
  | { kind: 'data'; remaining: number; padding: number }
  | { kind: 'extended'; typeflag: string; size: number; padding: number; chunks: Buffer[]; got: number }
  | { kind: 'skip'; remaining: number }
  | { kind: 'end' };

export class TarSanitizer extends Transform {
  private pending = Buffer.alloc(0);
  private state: State = { kind: 'header' };
  private longName: string | undefined;
  private longLink: string | undefined;
  private pax: Map<string, string> | undefined;
  private readonly types = new Map<string, ArchiveEntry['type']>();
  /** Every directory some entry lies in: a file or symlink may not take one of these names. */
  private readonly ancestors = new Set<string>();
  private files = 0;
  private bytes = 0;
  private written = 0;
  private readonly hash = createHash('sha256');

  constructor(private readonly limits: UploadLimits) {
    super();
  }

  summary(): StreamedTarSummary {
    return { files: this.files, bytes: this.bytes, sha256: this.hash.copy().digest('hex'), archiveBytes: this.written };
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    try {
      this.consume(chunk);
      done();
    } catch (error) {
      done(error as Error);
    }
  }

  override _flush(done: TransformCallback): void {
    if (this.state.kind !== 'end') return done(invalidArchive('tar: truncated archive (no end-of-archive block)'));
    const trailer = Buffer.alloc(1024 + ((recordBytes - ((this.written + 1024) % recordBytes)) % recordBytes));
    this.send(trailer);
    done();
  }

  private send(piece: Buffer): void {
    if (!piece.length) return;
    this.written += piece.length;
    this.hash.update(piece);
    this.push(piece);
  }

  private consume(chunk: Buffer): void {
    let input = chunk;
    while (input.length) {
      const state = this.state;
      if (state.kind === 'end') return; // whatever follows the end blocks is ignored, as tar does
      if (state.kind === 'data' || state.kind === 'skip') {
        const take = Math.min(input.length, state.remaining);
        if (state.kind === 'data') this.send(input.subarray(0, take));
        state.remaining -= take;
        input = input.subarray(take);
        if (state.remaining === 0) {
          if (state.kind === 'data') {
            this.send(Buffer.alloc(state.padding));
            this.state = state.padding ? { kind: 'skip', remaining: state.padding } : { kind: 'header' };
          } else this.state = { kind: 'header' };
        }
        continue;
      }
      if (state.kind === 'extended') {
        const take = Math.min(input.length, state.size - state.got);
        state.chunks.push(input.subarray(0, take));
        state.got += take;
        input = input.subarray(take);
        if (state.got === state.size) {
          this.extendedHeader(state.typeflag, Buffer.concat(state.chunks));
          this.state = state.padding ? { kind: 'skip', remaining: state.padding } : { kind: 'header' };
        }
        continue;
      }
      // A header: gather 512 bytes.
      const need = 512 - this.pending.length;
      this.pending = Buffer.concat([this.pending, input.subarray(0, need)]);
      input = input.subarray(need);
      if (this.pending.length < 512) return;
      const header = this.pending;
      this.pending = Buffer.alloc(0);
      this.header(header);
    }
  }

  private extendedHeader(typeflag: string, data: Buffer): void {
    if (typeflag === 'L') this.longName = longText(data);
    else if (typeflag === 'K') this.longLink = longText(data);
    else if (typeflag === 'x') this.pax = readPax(data);
    // 'g' (global pax) carries nothing uploads use.
  }

  private header(header: Buffer): void {
    if (header.every((b) => b === 0)) {
      if (this.longName !== undefined || this.longLink !== undefined || this.pax !== undefined)
        throw invalidArchive('tar: truncated archive (an extended header has no entry)');
      this.state = { kind: 'end' };
      return;
    }
    if (!checksumMatches(header)) throw invalidArchive(`tar: header checksum mismatch at offset ${this.written} (corrupt or not a tar)`);
    const typeflag = String.fromCharCode(header[156]!);
    const paxSize = this.pax?.get('size');
    if (paxSize !== undefined && !/^[0-9]{1,15}$/.test(paxSize)) throw invalidArchive('tar: corrupt pax size');
    const size = paxSize !== undefined ? Number(paxSize) : readOctal(header, 124, 12, 'size');
    const padding = (512 - (size % 512)) % 512;
    if (typeflag === 'L' || typeflag === 'K' || typeflag === 'x' || typeflag === 'g') {
      if (size > maxExtendedHeaderBytes)
        throw invalidArchive(`tar: an extended header of ${size} bytes is larger than the ${maxExtendedHeaderBytes} allowed`);
      this.state = size ? { kind: 'extended', typeflag, size, padding, chunks: [], got: 0 } : { kind: 'header' };
      if (!size) this.extendedHeader(typeflag, Buffer.alloc(0));
      return;
    }
    const posixHeader = header.toString('latin1', 257, 263) === 'ustar\0';
    const prefix = posixHeader ? readString(header, 345, 155) : '';
    const name = prefix ? `${prefix}/${readString(header, 0, 100)}` : readString(header, 0, 100);
    const rawPath = this.pax?.get('path') ?? this.longName ?? name;
    const linkTarget = this.pax?.get('linkpath') ?? this.longLink ?? readString(header, 157, 100);
    this.longName = this.longLink = this.pax = undefined;
    const mode = readOctal(header, 100, 8, 'mode') & 0o777;
    const directory = typeflag === '5' || ((typeflag === '0' || typeflag === '\0') && rawPath.endsWith('/') && size === 0);
    let type: ArchiveEntry['type'];
    if (directory) type = 'directory';
    else if (typeflag === '0' || typeflag === '\0' || typeflag === '7') type = 'file';
    else if (typeflag === '2') type = 'symlink';
    else
      throw invalidArchive(
        `${quoted(rawPath)} is ${tarTypes[typeflag] ?? `an unsupported tar entry (type ${quoted(typeflag)})`}, which uploads do not support`,
      );

    const path = safeRelativePath(rawPath);
    const dataSize = type === 'file' ? size : 0;
    const isNew = path !== '' && this.check({ path, type, mode, data: Buffer.alloc(0), linkTarget }, dataSize);
    if (!isNew) {
      // The root itself (".") or a repeated directory: nothing to write; skip its data if any.
      this.state = size + padding ? { kind: 'skip', remaining: size + padding } : { kind: 'header' };
      return;
    }
    this.writeEntryHeader(
      path,
      type,
      type === 'directory' ? mode || 0o755 : type === 'file' ? mode || 0o644 : 0o777,
      dataSize,
      type === 'symlink' ? linkTarget : '',
    );
    if (type === 'file') {
      this.state = size ? { kind: 'data', remaining: size, padding } : { kind: 'header' };
    } else {
      // Directories and symlinks carry no data in a sane tar; skip whatever one claims to carry.
      this.state = size + padding ? { kind: 'skip', remaining: size + padding } : { kind: 'header' };
    }
  }

  /** Checks one entry against the rules and limits; false for a repeated directory (dropped, as validateEntries does). */
  private check(entry: ArchiveEntry, dataSize: number): boolean {
    const { path, type } = entry;
    const seen = this.types.get(path);
    if (seen) {
      if (seen === 'directory' && type === 'directory') return false;
      throw invalidArchive(`${quoted(path)} appears twice in the upload`);
    }
    if (type === 'symlink') checkSymlink(entry);
    if (type !== 'directory' && this.ancestors.has(path)) throw invalidArchive(`an entry lies below ${type} ${quoted(path)}`);
    for (let slash = path.indexOf('/'); slash !== -1; slash = path.indexOf('/', slash + 1)) {
      const parent = path.slice(0, slash);
      const parentType = this.types.get(parent);
      if (parentType && parentType !== 'directory') throw invalidArchive(`${quoted(path)} lies below ${parentType} ${quoted(parent)}`);
      this.ancestors.add(parent);
    }
    this.types.set(path, type);
    if (type !== 'directory') this.files++;
    this.bytes += dataSize;
    if (this.files > this.limits.maxFiles) throw uploadTooLarge(`more than ${this.limits.maxFiles} files`);
    if (this.bytes > this.limits.maxBytes) throw uploadTooLarge(`more than ${this.limits.maxBytes} bytes after unpacking`);
    return true;
  }

  private writeEntryHeader(path: string, type: ArchiveEntry['type'], mode: number, size: number, linkTarget: string): void {
    const name = type === 'directory' ? `${path}/` : path;
    for (const [typeflag, text] of [
      ['L', name],
      ['K', linkTarget],
    ] as const) {
      if (Buffer.byteLength(text) <= 99) continue;
      const record = Buffer.from(`${text}\0`, 'utf8');
      const block = Buffer.alloc(512);
      writeHeader(block, '././@LongLink', record.length, 0, typeflag);
      this.send(block);
      this.send(record);
      this.send(Buffer.alloc((512 - (record.length % 512)) % 512));
    }
    const block = Buffer.alloc(512);
    writeHeader(
      block,
      truncateUtf8(name, 99),
      size,
      mode,
      type === 'file' ? '0' : type === 'directory' ? '5' : '2',
      truncateUtf8(linkTarget, 99),
    );
    this.send(block);
  }
}

/** The long-name record carries the full name; the header field keeps a prefix that fits. */
function truncateUtf8(text: string, bytes: number): string {
  const buffer = Buffer.from(text, 'utf8');
  return buffer.length <= bytes
    ? text
    : buffer
        .subarray(0, bytes)
        .toString('utf8')
        .replace(/\uFFFD$/, '');
}

/**
 * `source` (a tar, or a tar.gz with `gzip`) through a TarSanitizer, for a store to consume. Not
 * stream.pipeline: it would destroy the source on a refusal, and when that is a request, the socket
 * the 400 goes back on. The source is only unpiped; the HTTP layer drains or closes it after the
 * reply. `refusal()` is the first error of the chain, as the user should see it (a corrupt gzip is a 400).
 */
export function sanitizedTar(
  source: Readable,
  options: { gzip: boolean; limits: UploadLimits },
): { tar: TarSanitizer; refusal: () => Error | undefined } {
  const sanitizer = new TarSanitizer(options.limits);
  let refused: Error | undefined;
  const head = options.gzip ? createGunzip() : sanitizer;
  const refuse = (error: Error) => {
    if (refused) return;
    // zlib's own errors are the user's corrupt gzip: a 400 like any other broken archive.
    refused =
      'code' in error && typeof error.code === 'string' && error.code.startsWith('Z_') ? invalidArchive(`gzip: ${error.message}`) : error;
    source.unpipe(head);
    if (head !== sanitizer) head.destroy();
    sanitizer.destroy(refused);
  };
  sanitizer.on('error', refuse);
  if (head !== sanitizer) {
    head.on('error', refuse);
    head.pipe(sanitizer);
  }
  source.on('error', refuse);
  source.pipe(head);
  return { tar: sanitizer, refusal: () => refused };
}
