import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { Readable, Transform, pipeline, type TransformCallback } from 'node:stream';
import { constants as bufferConstants } from 'node:buffer';
import { crc32, createInflateRaw, gunzipSync, inflateRawSync, deflateRawSync, constants as zlibConstants } from 'node:zlib';
import { invalidArchive, quoted, uploadTooLarge } from './errors.ts';

/*
 * Every archive reader here works on bytes a user sent: each offset and length it reads comes
 * from the archive itself, so every read goes through `BoundedReader` (a lying offset is an
 * InvalidArchive, never a RangeError), every zlib call is caught, and every problem is a 400
 * (reason InvalidArchive) or, for size and count limits, a 413 (reason UploadTooLarge).
 */

export interface ArchiveEntry {
  /** Normalised relative path inside /code, never absolute, never with `..`. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  /** May be a view into the uploaded archive (readers do not copy); do not mutate. Empty when `source` holds the bytes. */
  data: Buffer;
  linkTarget?: string;
  /** Contents not read yet (a spooled part, a zip member on disk): read whole only when small, else streamed. */
  source?: EntrySource;
}

/** A file's bytes that stay where they are (a temporary file, a zip member) until needed. */
export interface EntrySource {
  size: number;
  /** All of it, checked (a zip member's CRC and size); for small uploads only. */
  readAll(): Buffer;
  /** The same bytes as a stream, checked on the way: a lie is an InvalidArchive error of the stream. */
  open(): Readable;
}

/** Bytes of file data an entry carries. */
export function entrySize(entry: ArchiveEntry): number {
  return entry.source ? entry.source.size : entry.data.length;
}

/** The entry with its bytes in memory (sources read whole). */
export function materialize(entry: ArchiveEntry): ArchiveEntry {
  if (!entry.source) return entry;
  const { source, ...rest } = entry;
  const data = source.readAll();
  return entry.type === 'symlink' ? { ...rest, linkTarget: data.toString('utf8') } : { ...rest, data };
}

export interface UploadLimits {
  maxBytes: number;
  maxFiles: number;
}

/** Linux limits: a longer path or component would fail only later, inside the job's init container. */
const maxPathBytes = 4095;
const maxComponentBytes = 255;
// Newlines and CRs in names forge lines in listings and logs; other control characters have no use in code.
const controlCharacter = /[\u0000-\u001f\u007f]/;

/** Positioned reads of an archive held in memory or in a file. */
export interface RandomAccess {
  readonly length: number;
  /** `length` bytes at `offset`, already bounds-checked by the caller. A view when in memory. */
  read(offset: number, length: number): Buffer;
  /** The same range as a stream: large members are never read whole. */
  stream(offset: number, length: number): Readable;
}

export function bufferAccess(buffer: Buffer): RandomAccess {
  return {
    length: buffer.length,
    read: (offset, length) => buffer.subarray(offset, offset + length),
    stream: (offset, length) => Readable.from([buffer.subarray(offset, offset + length)]),
  };
}

/** Reads integers and slices from an untrusted archive, checking bounds before every read. */
class BoundedReader {
  constructor(
    readonly access: RandomAccess,
    private readonly format: string,
  ) {}

  get length(): number {
    return this.access.length;
  }

  check(offset: number, length: number, what: string): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > this.access.length
    ) {
      throw invalidArchive(
        `${this.format}: ${what} lies outside the archive (offset ${offset}, ${length} bytes, archive ${this.access.length} bytes)`,
      );
    }
  }

  u16(offset: number, what: string): number {
    this.check(offset, 2, what);
    return this.access.read(offset, 2).readUInt16LE(0);
  }

  u32(offset: number, what: string): number {
    this.check(offset, 4, what);
    return this.access.read(offset, 4).readUInt32LE(0);
  }

  /** In memory a view, not a copy: the upload's bytes are held once. */
  slice(offset: number, length: number, what: string): Buffer {
    this.check(offset, length, what);
    return this.access.read(offset, length);
  }
}

/** Rejects absolute paths, paths that would land outside the upload root, and unusable names. */
export function safeRelativePath(raw: string): string {
  if (raw.includes('\0')) throw invalidArchive(`path ${quoted(raw)} contains a NUL byte`);
  if (controlCharacter.test(raw)) throw invalidArchive(`path ${quoted(raw)} contains a control character (newline, CR, tab...)`);
  const path = raw.replace(/\\/g, '/');
  if (path.startsWith('/') || /^[a-zA-Z]:/.test(path)) throw invalidArchive(`absolute path ${quoted(raw)} is not allowed in an upload`);
  if (path.split('/').includes('..')) throw invalidArchive(`path ${quoted(raw)} escapes the upload root`);
  const normalized = posix.normalize(path).replace(/\/+$/, '');
  if (normalized === '..' || normalized.startsWith('../')) throw invalidArchive(`path ${quoted(raw)} escapes the upload root`);
  if (Buffer.byteLength(normalized) > maxPathBytes) throw invalidArchive(`path ${quoted(raw)} is longer than ${maxPathBytes} bytes`);
  if (normalized.split('/').some((part) => Buffer.byteLength(part) > maxComponentBytes))
    throw invalidArchive(`path ${quoted(raw)} has a name longer than ${maxComponentBytes} bytes`);
  return normalized === '.' ? '' : normalized;
}

export function checkSymlink(entry: ArchiveEntry): void {
  const target = entry.linkTarget ?? '';
  if (!target || target.includes('\0') || controlCharacter.test(target) || Buffer.byteLength(target) > maxPathBytes) {
    throw invalidArchive(`symlink ${quoted(entry.path)} has an unusable target ${quoted(target)}`);
  }
  const resolved = target.startsWith('/') ? target : posix.normalize(posix.join(posix.dirname(entry.path), target));
  if (target.startsWith('/') || resolved === '..' || resolved.startsWith('../')) {
    throw invalidArchive(`symlink ${quoted(entry.path)} points outside the upload (${quoted(target)})`);
  }
}

/**
 * Validates entries (paths, types, symlinks, limits) and drops repeated directories. An entry may
 * not sit below a symlink or a file of the same upload: unpacking would otherwise write through
 * the link (possibly out of /code) or fail half-way in the init container.
 */
export function validateEntries(entries: ArchiveEntry[], limits: UploadLimits): ArchiveEntry[] {
  let bytes = 0;
  let files = 0;
  const types = new Map<string, ArchiveEntry['type']>();
  const result: ArchiveEntry[] = [];
  for (const entry of entries) {
    const path = safeRelativePath(entry.path);
    if (!path) continue;
    const seen = types.get(path);
    if (seen) {
      if (seen === 'directory' && entry.type === 'directory') continue;
      throw invalidArchive(`${quoted(path)} appears twice in the upload`);
    }
    types.set(path, entry.type);
    const normalized = { ...entry, path };
    if (entry.type === 'symlink') checkSymlink(normalized);
    if (entry.type !== 'directory') files++;
    bytes += entrySize(entry);
    if (files > limits.maxFiles) throw uploadTooLarge(`more than ${limits.maxFiles} files`);
    if (bytes > limits.maxBytes) throw uploadTooLarge(`more than ${limits.maxBytes} bytes after unpacking`);
    result.push(normalized);
  }
  for (const entry of result) {
    for (let slash = entry.path.indexOf('/'); slash !== -1; slash = entry.path.indexOf('/', slash + 1)) {
      const parent = types.get(entry.path.slice(0, slash));
      if (parent && parent !== 'directory')
        throw invalidArchive(`${quoted(entry.path)} lies below ${parent} ${quoted(entry.path.slice(0, slash))}`);
    }
  }
  return result;
}

// ---- tar (ustar and GNU, with GNU long names/links and pax paths on read) ----

function fieldText(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('latin1');
}

/** A numeric header field: octal digits, optionally space-padded and NUL-terminated. */
export function readOctal(block: Buffer, offset: number, length: number, what: string): number {
  if ((block[offset] ?? 0) & 0x80) throw invalidArchive(`tar: the ${what} field uses GNU base-256 numbers, which uploads do not support`);
  const text = fieldText(block, offset, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw invalidArchive(`tar: the ${what} field ${quoted(text)} is not an octal number`);
  return parseInt(text, 8);
}

export function readString(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

/** The header checksum treats its own field as spaces; old tars summed signed bytes. */
export function checksumMatches(header: Buffer): boolean {
  const stored = readOctal(header, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : header[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

/** A GNU long name/link record: the bytes up to the first NUL. */
export function longText(data: Buffer): string {
  const end = data.indexOf(0);
  return data.subarray(0, end === -1 ? data.length : end).toString('utf8');
}

/** pax extended header records: `<length> <key>=<value>\n`, length counting the whole record. */
export function readPax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  while (position < data.length) {
    if (data[position] === 0) break; // some writers pad the record block with NULs
    const space = data.indexOf(0x20, position);
    const lengthText = space === -1 ? '' : data.toString('latin1', position, space);
    const length = /^[0-9]{1,12}$/.test(lengthText) ? Number(lengthText) : NaN;
    if (!(length > space - position + 1) || position + length > data.length || data[position + length - 1] !== 0x0a) {
      throw invalidArchive('tar: corrupt pax extended header');
    }
    const record = data.toString('utf8', space + 1, position + length - 1);
    const equals = record.indexOf('=');
    if (equals <= 0) throw invalidArchive('tar: corrupt pax extended header');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    position += length;
  }
  for (const key of records.keys()) {
    if (key.startsWith('GNU.sparse.')) throw invalidArchive('tar: sparse files are not supported in uploads');
  }
  return records;
}

export const tarTypes: Record<string, string> = { '1': 'a hard link', '3': 'a character device', '4': 'a block device', '6': 'a FIFO' };

/**
 * Reads a tar. Entries' data are views into `buffer`. The end-of-archive block is required, so a
 * tar cut at a block boundary is reported as truncated rather than silently shortened.
 */
export function readTar(buffer: Buffer, limits: UploadLimits): ArchiveEntry[] {
  const tar = new BoundedReader(bufferAccess(buffer), 'tar');
  const entries: ArchiveEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  let longLink: string | undefined;
  let pax: Map<string, string> | undefined;
  let total = 0;
  for (;;) {
    if (offset + 512 > tar.length) throw invalidArchive('tar: truncated archive (no end-of-archive block)');
    const header = tar.slice(offset, 512, 'header');
    if (header.every((b) => b === 0)) break;
    if (!checksumMatches(header)) throw invalidArchive(`tar: header checksum mismatch at offset ${offset} (corrupt or not a tar)`);
    const typeflag = String.fromCharCode(header[156]!);
    const paxSize = pax?.get('size');
    if (paxSize !== undefined && !/^[0-9]{1,15}$/.test(paxSize)) throw invalidArchive('tar: corrupt pax size');
    const size = paxSize !== undefined ? Number(paxSize) : readOctal(header, 124, 12, 'size');
    const data = tar.slice(offset + 512, size, 'entry data (truncated archive?)');
    offset += 512 + Math.ceil(size / 512) * 512;
    total += size;
    if (total > limits.maxBytes) throw uploadTooLarge(`more than ${limits.maxBytes} bytes after unpacking`);
    if (typeflag === 'L') {
      longName = longText(data);
      continue;
    }
    if (typeflag === 'K') {
      longLink = longText(data);
      continue;
    }
    if (typeflag === 'x') {
      pax = readPax(data);
      continue;
    }
    if (typeflag === 'g') continue;
    // The ustar prefix field exists only in POSIX headers; GNU headers keep times there.
    const posixHeader = header.toString('latin1', 257, 263) === 'ustar\0';
    const prefix = posixHeader ? readString(header, 345, 155) : '';
    const name = prefix ? `${prefix}/${readString(header, 0, 100)}` : readString(header, 0, 100);
    const path = pax?.get('path') ?? longName ?? name;
    const linkTarget = pax?.get('linkpath') ?? longLink ?? readString(header, 157, 100);
    longName = longLink = pax = undefined;
    const mode = readOctal(header, 100, 8, 'mode') & 0o777;
    // Pre-POSIX tars mark a directory only by the trailing slash of its name.
    const directory = typeflag === '5' || ((typeflag === '0' || typeflag === '\0') && path.endsWith('/') && size === 0);
    if (directory) entries.push({ path, type: 'directory', mode: mode || 0o755, data: Buffer.alloc(0) });
    else if (typeflag === '0' || typeflag === '\0' || typeflag === '7') entries.push({ path, type: 'file', mode: mode || 0o644, data });
    else if (typeflag === '2') entries.push({ path, type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget });
    else
      throw invalidArchive(
        `${quoted(path)} is ${tarTypes[typeflag] ?? `an unsupported tar entry (type ${quoted(typeflag)})`}, which uploads do not support`,
      );
    if (entries.length > limits.maxFiles) throw uploadTooLarge(`more than ${limits.maxFiles} files`);
  }
  if (longName !== undefined || longLink !== undefined || pax !== undefined)
    throw invalidArchive('tar: truncated archive (an extended header has no entry)');
  return entries;
}

function writeOctal(block: Buffer, value: number, offset: number, length: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}

export function writeHeader(block: Buffer, name: string, size: number, mode: number, typeflag: string, linkTarget = ''): void {
  block.write(name, 0, 100, 'utf8');
  writeOctal(block, mode, 100, 8);
  writeOctal(block, 0, 108, 8);
  writeOctal(block, 0, 116, 8);
  writeOctal(block, size, 124, 12);
  writeOctal(block, 0, 136, 12);
  block.fill(' ', 148, 156);
  block.write(typeflag, 156, 1, 'ascii');
  block.write(linkTarget, 157, 100, 'utf8');
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  let checksum = 0;
  for (let i = 0; i < 512; i++) checksum += block[i]!;
  block.write(checksum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
}

const padded = (size: number) => Math.ceil(size / 512) * 512;
const zeroBlocks = Buffer.alloc(1024);

/**
 * The header blocks of one entry (with GNU long-name/long-link records for names and link targets
 * longer than 100 bytes, which busybox and GNU tar read), and the size of the data that follows.
 */
function entryHeaderPieces(entry: ArchiveEntry): { pieces: Buffer[]; dataSize: number } {
  const pieces: Buffer[] = [];
  const header = (name: string, dataSize: number, mode: number, typeflag: string, linkTarget = '') => {
    const block = Buffer.alloc(512);
    writeHeader(block, name, dataSize, mode, typeflag, linkTarget);
    pieces.push(block);
  };
  const name = entry.type === 'directory' ? `${entry.path}/` : entry.path;
  const linkTarget = entry.type === 'symlink' ? (entry.linkTarget ?? '') : '';
  for (const [typeflag, text] of [
    ['L', name],
    ['K', linkTarget],
  ] as const) {
    if (Buffer.byteLength(text) <= 99) continue;
    const record = Buffer.from(`${text}\0`, 'utf8');
    header('././@LongLink', record.length, 0, typeflag);
    pieces.push(record);
    if (padded(record.length) > record.length) pieces.push(zeroBlocks.subarray(0, padded(record.length) - record.length));
  }
  const typeflag = entry.type === 'file' ? '0' : entry.type === 'directory' ? '5' : '2';
  const dataSize = entry.type === 'file' ? entrySize(entry) : 0;
  header(name.slice(0, 99), dataSize, entry.mode, typeflag, linkTarget.slice(0, 99));
  return { pieces, dataSize };
}

const paddingFor = (size: number) => zeroBlocks.subarray(0, padded(size) - size);

/** The tar of `entries` as a list of pieces (headers, data, padding) and its size. Data pieces are the entries' own buffers, not copies. */
function tarPieces(entries: ArchiveEntry[]): { pieces: Buffer[]; size: number } {
  const pieces: Buffer[] = [];
  for (const entry of entries) {
    const { pieces: headers, dataSize } = entryHeaderPieces(entry);
    pieces.push(...headers);
    if (dataSize) pieces.push(materialize(entry).data, paddingFor(dataSize));
  }
  pieces.push(zeroBlocks);
  return { pieces: pieces.filter((piece) => piece.length), size: pieces.reduce((sum, piece) => sum + piece.length, 0) };
}

/**
 * The tar of `entries` as a stream, reading each entry's source only when its turn comes: memory is
 * one chunk of one file, whatever the upload's size. A source that fails (a zip member's CRC) fails the stream.
 */
export function tarStream(entries: ArchiveEntry[]): Readable {
  async function* pieces(): AsyncGenerator<Buffer> {
    for (const entry of entries) {
      const { pieces: headers, dataSize } = entryHeaderPieces(entry);
      yield* headers;
      if (!dataSize) continue;
      if (entry.source) {
        let sent = 0;
        for await (const chunk of entry.source.open()) {
          sent += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        if (sent !== dataSize) throw invalidArchive(`${quoted(entry.path)} holds ${sent} bytes, not the ${dataSize} it declared`);
      } else yield entry.data;
      if (padded(dataSize) > dataSize) yield paddingFor(dataSize);
    }
    yield zeroBlocks;
  }
  return Readable.from(pieces(), { objectMode: false });
}

/** Writes a tar into one buffer: each entry's bytes are copied once. */
export function writeTar(entries: ArchiveEntry[]): Buffer {
  const { pieces, size } = tarPieces(entries);
  return Buffer.concat(pieces, size);
}

/** zlib's deflateBound, plus the 5-byte empty block a sync flush ends with and some slack. */
const deflateBound = (n: number) => n + (n >>> 12) + (n >>> 14) + (n >>> 25) + 13 + 5 + 64;
const gzipSegmentBytes = 8 * 1024 * 1024;

/**
 * Gzips the pieces without joining them first. Each segment of about 8 MiB is deflated on its
 * own, ending with a sync flush (byte-aligned, not final), and the raw deflate segments are
 * written one after the other into a single buffer between a gzip header and trailer: one valid
 * gzip member, as pigz makes. Peak memory is the output plus one segment, instead of the joined
 * input, zlib's output chunks and their concatenation.
 */
function gzipPieces(pieces: Buffer[], size: number): Buffer {
  let out = Buffer.allocUnsafe(10 + deflateBound(size) + 64 * Math.ceil(size / gzipSegmentBytes) + 8);
  // Header as gzipSync writes it: no name, no time, OS "Unix".
  Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]).copy(out, 0);
  let written = 10;
  let crc = 0;
  let staged: Buffer[] = [];
  let stagedBytes = 0;
  const emit = (final: boolean) => {
    const input = staged.length === 1 ? staged[0]! : Buffer.concat(staged, stagedBytes);
    staged = [];
    stagedBytes = 0;
    crc = crc32(input, crc);
    const segment = deflateRawSync(input, {
      finishFlush: final ? zlibConstants.Z_FINISH : zlibConstants.Z_SYNC_FLUSH,
      chunkSize: deflateBound(input.length),
    });
    if (written + segment.length + 8 > out.length) {
      // Cannot happen within deflateBound; kept so a wrong bound costs a copy, never a corrupt archive.
      const bigger = Buffer.allocUnsafe(Math.max(out.length * 2, written + segment.length + 8));
      out.copy(bigger, 0, 0, written);
      out = bigger;
    }
    segment.copy(out, written);
    written += segment.length;
  };
  for (const piece of pieces) {
    for (let start = 0; start < piece.length; start += gzipSegmentBytes) {
      const part = piece.subarray(start, start + gzipSegmentBytes);
      staged.push(part);
      stagedBytes += part.length;
      if (stagedBytes >= gzipSegmentBytes) emit(false);
    }
  }
  emit(true);
  out.writeUInt32LE(crc >>> 0, written);
  out.writeUInt32LE(size % 0x100000000, written + 4);
  written += 8;
  // Code compresses well: keep an exact-size copy rather than pin the bound-sized buffer.
  return written < out.length * 0.75 ? Buffer.from(out.subarray(0, written)) : out.subarray(0, written);
}

// ---- zip (what the upstream CLI sends) ----

const zipSignatures = { local: 0x04034b50, central: 0x02014b50, end: 0x06054b50, zip64Locator: 0x07064b50 };
const utf8Name = new TextDecoder('utf-8', { fatal: true });

/** Where the end-of-central-directory record starts, relative to `tail` (the archive's last bytes). */
function findEndOfCentralDirectory(tail: Buffer): number {
  // The record is 22 bytes followed by a comment of at most 65535 bytes.
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === zipSignatures.end) return i;
  }
  return -1;
}

function inflateEntry(raw: Buffer, size: number, name: string): Buffer {
  let data: Buffer;
  try {
    // A central directory can lie about the size: never inflate past what it declared.
    data = inflateRawSync(raw, { maxOutputLength: Math.max(size, 1) });
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
      throw invalidArchive(`zip entry ${quoted(name)} inflates to more than the ${size} bytes its header declares`);
    throw invalidArchive(`zip entry ${quoted(name)} has corrupt compressed data (${(error as Error).message})`);
  }
  if (data.length !== size)
    throw invalidArchive(`zip entry ${quoted(name)} inflates to ${data.length} bytes, not the ${size} its header declares`);
  return data;
}

/**
 * Deflate never grows data by more than a few bytes per 16 KiB block; a member that claims far
 * more compressed bytes than that is a lie, refused before anything is read (generous for odd encoders).
 */
const maxCompressedBytes = (size: number) => size + (size >>> 3) + 1024;

/** Counts and CRCs a member's bytes as they stream; a member longer, shorter or other than declared fails the stream. */
class ZipMemberCheck extends Transform {
  private crc = 0;
  private got = 0;
  constructor(
    private readonly name: string,
    private readonly size: number,
    private readonly expectedCrc: number,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.got += chunk.length;
    if (this.got > this.size)
      return done(invalidArchive(`zip entry ${quoted(this.name)} inflates to more than the ${this.size} bytes its header declares`));
    this.crc = crc32(chunk, this.crc);
    done(null, chunk);
  }
  override _flush(done: TransformCallback): void {
    if (this.got !== this.size)
      return done(invalidArchive(`zip entry ${quoted(this.name)} inflates to ${this.got} bytes, not the ${this.size} its header declares`));
    if (this.crc >>> 0 !== this.expectedCrc) return done(invalidArchive(`zip entry ${quoted(this.name)} fails its CRC check (corrupt)`));
    done();
  }
}

function zipMemberSource(
  access: RandomAccess,
  member: { name: string; method: number; crc: number; dataStart: number; compressedSize: number; size: number },
): EntrySource {
  const { name, method, crc, dataStart, compressedSize, size } = member;
  return {
    size,
    readAll() {
      const raw = access.read(dataStart, compressedSize);
      const data = method === 0 ? raw : inflateEntry(raw, size, name);
      if (crc32(data) !== crc) throw invalidArchive(`zip entry ${quoted(name)} fails its CRC check (corrupt)`);
      return data;
    },
    open() {
      const check = new ZipMemberCheck(name, size, crc);
      const raw = access.stream(dataStart, compressedSize);
      const stages = method === 0 ? [raw, check] : [raw, createInflateRaw(), check];
      pipeline(stages as [Readable, ...Transform[]], (error) => {
        if (!error || check.destroyed) return;
        // zlib's own errors are the archive's corrupt data: a 400 like any other lie.
        const code = (error as { code?: string }).code ?? '';
        check.destroy(
          code.startsWith('Z_') ? invalidArchive(`zip entry ${quoted(name)} has corrupt compressed data (${error.message})`) : error,
        );
      });
      return check;
    },
  };
}

/** Reads a zip held in memory (stored or deflated entries), every member inflated and checked. */
export function readZip(buffer: Buffer, limits: UploadLimits): ArchiveEntry[] {
  return listZip(bufferAccess(buffer), limits).map(materialize);
}

/**
 * Reads a zip's central directory with positioned reads, so a zip on disk is never held whole:
 * members become entries whose `source` inflates and checks them when read. Every offset and size
 * comes from the archive and is checked against it here, before any member is read.
 * Zip64, encryption, multi-disk and methods other than stored and deflated are refused.
 */
export function listZip(access: RandomAccess, limits: UploadLimits): ArchiveEntry[] {
  const zip = new BoundedReader(access, 'zip');
  const tailStart = Math.max(0, access.length - 22 - 65535);
  const tailOffset = access.length >= 22 ? findEndOfCentralDirectory(access.read(tailStart, access.length - tailStart)) : -1;
  if (tailOffset < 0) throw invalidArchive('not a zip archive (no end of central directory record)');
  const end = tailStart + tailOffset;
  if (end >= 20 && zip.u32(end - 20, 'zip64 locator') === zipSignatures.zip64Locator)
    throw invalidArchive('zip64 archives are not supported');
  const disk = zip.u16(end + 4, 'disk number');
  const directoryDisk = zip.u16(end + 6, 'central directory disk');
  const countOnDisk = zip.u16(end + 8, 'entry count');
  const count = zip.u16(end + 10, 'entry count');
  const directorySize = zip.u32(end + 12, 'central directory size');
  const directoryOffset = zip.u32(end + 16, 'central directory offset');
  if (count === 0xffff || directorySize === 0xffffffff || directoryOffset === 0xffffffff)
    throw invalidArchive('zip64 archives are not supported');
  if (disk !== 0 || directoryDisk !== 0 || countOnDisk !== count) throw invalidArchive('multi-disk zip archives are not supported');
  if (directoryOffset + directorySize > end) throw invalidArchive('zip: the central directory lies outside the archive');
  if (count > limits.maxFiles) throw uploadTooLarge(`more than ${limits.maxFiles} files`);
  const directoryEnd = directoryOffset + directorySize;
  const entries: ArchiveEntry[] = [];
  let total = 0;
  let offset = directoryOffset;
  for (let i = 0; i < count; i++) {
    // One read per fixed header: the directory is never held whole either.
    const fixed = zip.slice(offset, 46, 'central directory entry');
    if (fixed.readUInt32LE(0) !== zipSignatures.central) throw invalidArchive('zip: corrupt central directory');
    const madeBy = fixed.readUInt16LE(4) >> 8;
    const flags = fixed.readUInt16LE(8);
    const method = fixed.readUInt16LE(10);
    const crc = fixed.readUInt32LE(16);
    const compressedSize = fixed.readUInt32LE(20);
    const size = fixed.readUInt32LE(24);
    const nameLength = fixed.readUInt16LE(28);
    const extraLength = fixed.readUInt16LE(30);
    const commentLength = fixed.readUInt16LE(32);
    const externalAttributes = fixed.readUInt32LE(38);
    const localOffset = fixed.readUInt32LE(42);
    const nameBytes = zip.slice(offset + 46, nameLength, 'entry name');
    offset += 46 + nameLength + extraLength + commentLength;
    if (offset > directoryEnd) throw invalidArchive('zip: a central directory entry runs past the directory');
    let name: string;
    try {
      name = utf8Name.decode(nameBytes);
    } catch {
      throw invalidArchive(`zip entry name ${quoted(nameBytes.toString('latin1'))} is not UTF-8`);
    }
    if (flags & 0x41) throw invalidArchive(`zip entry ${quoted(name)} is encrypted`);
    if (compressedSize === 0xffffffff || size === 0xffffffff || localOffset === 0xffffffff)
      throw invalidArchive('zip64 archives are not supported');
    total += size;
    if (total > limits.maxBytes) throw uploadTooLarge(`more than ${limits.maxBytes} bytes after unpacking`);
    // Unix permissions live in the high half of the attributes, only when made on Unix (3) or macOS (19).
    const unixMode = madeBy === 3 || madeBy === 19 ? externalAttributes >>> 16 : 0;
    const fileType = unixMode & 0o170000;
    if (fileType !== 0 && fileType !== 0o100000 && fileType !== 0o040000 && fileType !== 0o120000) {
      throw invalidArchive(`zip entry ${quoted(name)} is a special file, which uploads do not support`);
    }
    if (name.endsWith('/') || fileType === 0o040000) {
      entries.push({ path: name, type: 'directory', mode: 0o755, data: Buffer.alloc(0) });
      continue;
    }
    const local = zip.slice(localOffset, 30, 'local header');
    if (local.readUInt32LE(0) !== zipSignatures.local) throw invalidArchive(`zip entry ${quoted(name)}: corrupt local header`);
    const dataStart = localOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
    zip.check(dataStart, compressedSize, `data of entry ${quoted(name)}`);
    if (method === 0) {
      if (compressedSize !== size) throw invalidArchive(`zip entry ${quoted(name)} is stored with two different sizes`);
    } else if (method === 8) {
      if (compressedSize > maxCompressedBytes(size))
        throw invalidArchive(
          `zip entry ${quoted(name)} inflates to more than the ${size} bytes its header declares (${compressedSize} compressed bytes)`,
        );
    } else throw invalidArchive(`zip entry ${quoted(name)} uses compression method ${method}; send stored or deflated entries`);
    const source = zipMemberSource(access, { name, method, crc, dataStart, compressedSize, size });
    if (fileType === 0o120000) {
      // A link target is a path: small, so read now (and checked like any member).
      if (size > maxPathBytes) throw invalidArchive(`symlink ${quoted(name)} has a target longer than ${maxPathBytes} bytes`);
      entries.push({ path: name, type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: source.readAll().toString('utf8') });
    } else entries.push({ path: name, type: 'file', mode: unixMode & 0o777 || 0o644, data: Buffer.alloc(0), source });
  }
  return entries;
}

export type ArchiveFormat = 'zip' | 'tar' | 'tar.gz';

export function detectArchive(buffer: Buffer): ArchiveFormat | undefined {
  if (buffer.length >= 4 && buffer.readUInt32LE(0) === zipSignatures.local) return 'zip';
  if (buffer.length >= 2 && buffer[0] === 0x1f && buffer[1] === 0x8b) return 'tar.gz';
  if (buffer.length >= 262 && buffer.subarray(257, 262).toString('ascii') === 'ustar') return 'tar';
  return undefined;
}

export function readArchive(buffer: Buffer, limits: UploadLimits, format = detectArchive(buffer)): ArchiveEntry[] {
  if (format === 'zip') return readZip(buffer, limits);
  if (format === 'tar') return readTar(buffer, limits);
  if (format === 'tar.gz') {
    let tar: Buffer;
    try {
      // Cap the inflated size: a small gzip can expand without bound. Headers and long names add per file.
      const cap = Math.min(limits.maxBytes + limits.maxFiles * 2048 + 1024 * 1024, bufferConstants.MAX_LENGTH);
      // The trailer's size (mod 2^32) sizes zlib's output buffer, so the tar comes out in one piece
      // rather than as 16 KiB chunks joined by a copy. Only a hint: a lie costs a copy, and the cap holds.
      const declared = buffer.length >= 18 ? buffer.readUInt32LE(buffer.length - 4) : 0;
      tar = gunzipSync(buffer, { maxOutputLength: cap, chunkSize: Math.min(Math.max(declared + 1, 64 * 1024), cap + 1) });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
        throw uploadTooLarge(`more than ${limits.maxBytes} bytes after unpacking`);
      throw invalidArchive(`corrupt gzip data (${(error as Error).message})`);
    }
    return readTar(tar, limits);
  }
  throw invalidArchive('unrecognised archive; send a zip, tar or tar.gz, or the files themselves');
}

/** Normalised code held in memory: a gzip'd tar small enough to keep (see lib/uploads/prepare.ts). */
export interface ArchiveUpload {
  kind: 'archive';
  archive: Buffer;
  sha256: string;
  files: number;
  bytes: number;
}

/**
 * Code too large to hold: a tar made on demand from spooled parts (or a spooled tar itself), which
 * the backend streams into storage, checking it again on the way (lib/uploads/tar-stream.ts).
 * File counts and sizes are known only once stored (the store's summary).
 */
export interface StreamedUpload {
  kind: 'stream';
  /** A new stream of the tar each call. */
  open(): Readable;
  gzip: boolean;
  /** Of what the client sent: stable across retries of one request (idempotency), known before storing. */
  sha256: string;
}

export type NormalizedUpload = ArchiveUpload | StreamedUpload;

/** One canonical form for every upload: a gzip'd tar, unpacked by busybox `tar` in the init container. */
export function normalizeUpload(entries: ArchiveEntry[], limits: UploadLimits): ArchiveUpload {
  const valid = validateEntries(entries, limits);
  const { pieces, size } = tarPieces(valid);
  const archive = gzipPieces(pieces, size);
  return {
    kind: 'archive',
    archive,
    sha256: createHash('sha256').update(archive).digest('hex'),
    files: valid.filter((e) => e.type !== 'directory').length,
    bytes: valid.reduce((sum, e) => sum + entrySize(e), 0),
  };
}
