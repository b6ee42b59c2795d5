import { CliError } from './errors.ts';

/**
 * A pull-based reader of a tar stream (already gunzipped), for `kbatch job outputs NAME`: it yields
 * one entry at a time with its data as an async iterable, holding at most one header (plus a GNU
 * long name or pax record) in memory. It only parses; deciding what may be written where is
 * cli/extract.ts's job.
 *
 * Why not lib/uploads/tar-stream.ts (TarSanitizer): it is a server-side Transform that rewrites the
 * tar and fails the whole stream, with a 400 for the uploader, on the first entry it dislikes, and
 * refuses GNU base-256 sizes. A download must instead skip what it will not write, say so, keep the
 * rest, and take files of 8 GiB and more (which GNU tar writes with base-256 sizes).
 */

export type TarEntryType = 'file' | 'directory' | 'symlink' | 'hardlink' | 'character device' | 'block device' | 'FIFO' | 'other';

export interface TarEntry {
  /** As written in the archive (pax path, GNU long name or ustar prefix/name): unchecked. */
  path: string;
  type: TarEntryType;
  /** Bytes of data that follow (files only; zero for everything else). */
  size: number;
  mode: number;
  /** The entry's bytes; read them or not, the reader skips what is left before the next entry. */
  data: AsyncIterable<Buffer>;
}

/** GNU long names and pax records are small; a larger one is a broken or hostile archive, not a path. */
const maxExtendedHeaderBytes = 1024 * 1024;

const typeflags: Record<string, TarEntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'character device',
  '4': 'block device',
  '5': 'directory',
  '6': 'FIFO',
};

export class CorruptArchive extends CliError {}

/** Exact reads and bounded streams over an async iterable of chunks. */
class ChunkReader {
  private pending: Buffer = Buffer.alloc(0);
  private readonly source: AsyncIterator<Uint8Array>;
  private done = false;

  constructor(source: AsyncIterable<Uint8Array>) {
    this.source = source[Symbol.asyncIterator]();
  }

  /** The next chunk from the source, or undefined at its end. */
  private async more(): Promise<Buffer | undefined> {
    if (this.done) return undefined;
    const next = await this.source.next();
    if (next.done) {
      this.done = true;
      return undefined;
    }
    return Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
  }

  /** Exactly n bytes, or undefined when the stream ends first (with what was read discarded). */
  async exact(n: number): Promise<Buffer | undefined> {
    const parts = [this.pending];
    let have = this.pending.length;
    while (have < n) {
      const chunk = await this.more();
      if (!chunk) return undefined;
      parts.push(chunk);
      have += chunk.length;
    }
    const joined = parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
    this.pending = joined.subarray(n);
    return joined.subarray(0, n);
  }

  /** Up to `max` bytes, as they arrive (never joined); throws when the stream ends first. */
  async next(max: number): Promise<Buffer> {
    let chunk: Buffer | undefined = this.pending;
    this.pending = Buffer.alloc(0);
    if (!chunk.length) chunk = await this.more();
    if (!chunk) throw new CorruptArchive('the archive ends in the middle of a file (truncated download?)');
    if (chunk.length > max) {
      this.pending = chunk.subarray(max);
      chunk = chunk.subarray(0, max);
    }
    return chunk;
  }

  async skip(n: number): Promise<void> {
    for (let remaining = n; remaining > 0;) remaining -= (await this.next(remaining)).length;
  }
}

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

/** Octal, or GNU base-256 (high bit set) for values that do not fit: sizes of 8 GiB and more. */
function number(block: Buffer, offset: number, length: number, what: string): number {
  const first = block[offset]!;
  if (first & 0x80) {
    if (first === 0xff) throw new CorruptArchive(`tar: negative ${what}`);
    let value = first & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + block[offset + i]!;
    if (!Number.isSafeInteger(value)) throw new CorruptArchive(`tar: ${what} too large`);
    return value;
  }
  const text = field(block, offset, length).trim();
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new CorruptArchive(`tar: the ${what} field is not a number (corrupt archive)`);
  return parseInt(text, 8);
}

function checksumMatches(header: Buffer): boolean {
  const stored = number(header, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < 512; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : header[i]!;
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

function readPax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let position = 0;
  while (position < data.length && data[position] !== 0) {
    const space = data.indexOf(0x20, position);
    const length = space === -1 ? NaN : Number(data.toString('latin1', position, space));
    if (!Number.isSafeInteger(length) || length <= space - position || position + length > data.length)
      throw new CorruptArchive('tar: corrupt pax header');
    const record = data.toString('utf8', space + 1, position + length - 1);
    const equals = record.indexOf('=');
    if (equals > 0) records.set(record.slice(0, equals), record.slice(equals + 1));
    position += length;
  }
  return records;
}

const padding = (size: number) => (512 - (size % 512)) % 512;

/**
 * The entries of a tar stream, in order. The end-of-archive block is required: a stream that stops
 * at an entry boundary without it was cut short, and says so instead of looking complete.
 */
export async function* readTarEntries(source: AsyncIterable<Uint8Array>): AsyncGenerator<TarEntry> {
  const reader = new ChunkReader(source);
  let longName: string | undefined;
  let pax: Map<string, string> | undefined;
  for (;;) {
    const header = await reader.exact(512);
    if (!header) throw new CorruptArchive('the archive ends without its end-of-archive block (truncated download?)');
    if (header.every((b) => b === 0)) return;
    if (!checksumMatches(header)) throw new CorruptArchive('tar: header checksum mismatch (corrupt archive, or not a tar)');
    const typeflag = String.fromCharCode(header[156]!);
    const paxSize = pax?.get('size');
    const size = paxSize !== undefined && /^[0-9]{1,15}$/.test(paxSize) ? Number(paxSize) : number(header, 124, 12, 'size');
    if (typeflag === 'L' || typeflag === 'K' || typeflag === 'x' || typeflag === 'g') {
      if (size > maxExtendedHeaderBytes) throw new CorruptArchive(`tar: an extended header of ${size} bytes (corrupt archive)`);
      const data = size ? await reader.exact(size + padding(size)) : Buffer.alloc(0);
      if (!data) throw new CorruptArchive('the archive ends in an extended header (truncated download?)');
      const body = data.subarray(0, size);
      if (typeflag === 'L') longName = field(body, 0, body.length);
      else if (typeflag === 'x') pax = readPax(body);
      // 'K' (long link target) and 'g' (global pax) say nothing a download uses.
      continue;
    }
    const ustar = header.toString('latin1', 257, 263) === 'ustar\0';
    const prefix = ustar ? field(header, 345, 155) : '';
    const name = prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100);
    const path = pax?.get('path') ?? longName ?? name;
    longName = pax = undefined;
    let type = typeflags[typeflag] ?? 'other';
    // Old tars mark a directory only by the trailing slash of its name.
    if (type === 'file' && path.endsWith('/') && size === 0) type = 'directory';
    // Only files carry data worth reading; whatever another entry claims to carry is skipped.
    const dataSize = type === 'file' ? size : 0;
    const skipAfter = size - dataSize + padding(size);
    // Shared with the data iterable, so a consumer that stops early (a refused file, an error)
    // leaves the reader knowing how much of the entry is still to skip.
    const position = { remaining: dataSize };
    const data: AsyncIterable<Buffer> = {
      async *[Symbol.asyncIterator]() {
        while (position.remaining > 0) {
          const chunk = await reader.next(position.remaining);
          position.remaining -= chunk.length;
          yield chunk;
        }
      },
    };
    yield { path, type, size: dataSize, mode: number(header, 100, 8, 'mode') & 0o7777, data };
    await reader.skip(position.remaining);
    await reader.skip(skipAfter);
  }
}
