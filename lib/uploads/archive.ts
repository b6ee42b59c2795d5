import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import { BadRequest, PayloadTooLarge } from '../http/errors.ts';

export interface ArchiveEntry {
  /** Normalised relative path inside /code, never absolute, never with `..`. */
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  data: Buffer;
  linkTarget?: string;
}

export interface UploadLimits {
  maxBytes: number;
  maxFiles: number;
}

/** Rejects absolute paths and any path that would land outside the upload root. */
export function safeRelativePath(raw: string): string {
  const path = raw.replace(/\\/g, '/');
  if (path.startsWith('/') || /^[a-zA-Z]:/.test(path)) throw new BadRequest(`code: absolute path "${raw}" is not allowed in an upload`, 'code');
  const normalized = posix.normalize(path).replace(/\/+$/, '');
  if (normalized === '..' || normalized.startsWith('../') || path.split('/').includes('..')) {
    throw new BadRequest(`code: path "${raw}" escapes the upload root`, 'code');
  }
  if (normalized.includes('\0')) throw new BadRequest(`code: path "${raw}" contains a NUL byte`, 'code');
  return normalized === '.' ? '' : normalized;
}

function checkSymlink(entry: ArchiveEntry): void {
  const target = entry.linkTarget ?? '';
  const resolved = target.startsWith('/') ? target : posix.normalize(posix.join(posix.dirname(entry.path), target));
  if (target.startsWith('/') || resolved === '..' || resolved.startsWith('../')) {
    throw new BadRequest(`code: symlink "${entry.path}" points outside the upload ("${target}")`, 'code');
  }
}

/** Validates entries (paths, symlinks, limits) and drops duplicate directories. */
export function validateEntries(entries: ArchiveEntry[], limits: UploadLimits): ArchiveEntry[] {
  let bytes = 0;
  let files = 0;
  const seen = new Set<string>();
  const result: ArchiveEntry[] = [];
  for (const entry of entries) {
    const path = safeRelativePath(entry.path);
    if (!path) continue;
    if (seen.has(path)) {
      if (entry.type === 'directory') continue;
      throw new BadRequest(`code: "${path}" appears twice in the upload`, 'code');
    }
    seen.add(path);
    const normalized = { ...entry, path };
    if (entry.type === 'symlink') checkSymlink(normalized);
    if (entry.type !== 'directory') files++;
    bytes += entry.data.length;
    if (files > limits.maxFiles) throw new PayloadTooLarge(`code: more than ${limits.maxFiles} files`);
    if (bytes > limits.maxBytes) throw new PayloadTooLarge(`code: more than ${limits.maxBytes} bytes after unpacking`);
    result.push(normalized);
  }
  return result;
}

// ---- tar (ustar, with GNU long names and pax paths on read) ----

function readOctal(block: Buffer, offset: number, length: number): number {
  const text = block.subarray(offset, offset + length).toString('ascii').replace(/\0.*$/, '').trim();
  return text ? parseInt(text, 8) : 0;
}

function readString(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

export function readTar(buffer: Buffer, limits: UploadLimits): ArchiveEntry[] {
  const entries: ArchiveEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  let total = 0;
  while (offset + 512 <= buffer.length) {
    const header = buffer.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    const size = readOctal(header, 124, 12);
    const typeflag = String.fromCharCode(header[156] ?? 48);
    const prefix = readString(header, 345, 155);
    let name = readString(header, 0, 100);
    if (prefix) name = `${prefix}/${name}`;
    const dataStart = offset + 512;
    if (dataStart + size > buffer.length) throw new BadRequest('code: truncated tar archive', 'code');
    const data = buffer.subarray(dataStart, dataStart + size);
    offset = dataStart + Math.ceil(size / 512) * 512;
    total += size;
    if (total > limits.maxBytes) throw new PayloadTooLarge(`code: more than ${limits.maxBytes} bytes after unpacking`);
    if (typeflag === 'L') {
      longName = data.toString('utf8').replace(/\0+$/, '');
      continue;
    }
    if (typeflag === 'x') {
      const match = /\d+ path=([^\n]*)\n/.exec(data.toString('utf8'));
      paxPath = match?.[1];
      continue;
    }
    if (typeflag === 'g') continue;
    const path = paxPath ?? longName ?? name;
    longName = paxPath = undefined;
    const mode = readOctal(header, 100, 8) & 0o777;
    if (typeflag === '0' || typeflag === '\0' || typeflag === '7') entries.push({ path, type: 'file', mode: mode || 0o644, data: Buffer.from(data) });
    else if (typeflag === '5') entries.push({ path, type: 'directory', mode: mode || 0o755, data: Buffer.alloc(0) });
    else if (typeflag === '2') entries.push({ path, type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: readString(header, 157, 100) });
    else throw new BadRequest(`code: "${path}" is a ${typeflag === '1' ? 'hard link' : 'special file'}, which uploads do not support`, 'code');
    if (entries.length > limits.maxFiles) throw new PayloadTooLarge(`code: more than ${limits.maxFiles} files`);
  }
  return entries;
}

function writeOctal(block: Buffer, value: number, offset: number, length: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}

function tarHeader(name: string, size: number, mode: number, typeflag: string, linkTarget = ''): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100, 'utf8');
  writeOctal(header, mode, 100, 8);
  writeOctal(header, 0, 108, 8);
  writeOctal(header, 0, 116, 8);
  writeOctal(header, size, 124, 12);
  writeOctal(header, 0, 136, 12);
  header.fill(' ', 148, 156);
  header.write(typeflag, 156, 1, 'ascii');
  header.write(linkTarget, 157, 100, 'utf8');
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(checksum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return header;
}

function padding(size: number): Buffer {
  return Buffer.alloc((512 - (size % 512)) % 512);
}

/** Writes a tar; names longer than 100 bytes use a GNU long-name record, which busybox and GNU tar read. */
export function writeTar(entries: ArchiveEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const name = entry.type === 'directory' ? `${entry.path}/` : entry.path;
    if (Buffer.byteLength(name) > 99) {
      const longName = Buffer.from(name + '\0', 'utf8');
      parts.push(tarHeader('././@LongLink', longName.length, 0, 'L'), longName, padding(longName.length));
    }
    const typeflag = entry.type === 'file' ? '0' : entry.type === 'directory' ? '5' : '2';
    const size = entry.type === 'file' ? entry.data.length : 0;
    parts.push(tarHeader(name.slice(0, 99), size, entry.mode, typeflag, entry.linkTarget ?? ''));
    if (size) parts.push(entry.data, padding(size));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

// ---- zip (what the upstream CLI sends) ----

export function readZip(buffer: Buffer, limits: UploadLimits): ArchiveEntry[] {
  const minEocd = 22;
  let eocd = -1;
  for (let i = buffer.length - minEocd; i >= Math.max(0, buffer.length - minEocd - 65535); i--) {
    if (buffer.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new BadRequest('code: not a zip archive (no end of central directory)', 'code');
  const count = buffer.readUInt16LE(eocd + 10);
  let offset = buffer.readUInt32LE(eocd + 16);
  const entries: ArchiveEntry[] = [];
  let total = 0;
  for (let i = 0; i < count; i++) {
    if (offset + 46 > buffer.length || buffer.readUInt32LE(offset) !== 0x02014b50) throw new BadRequest('code: corrupt zip central directory', 'code');
    const method = buffer.readUInt16LE(offset + 10);
    const compressedSize = buffer.readUInt32LE(offset + 20);
    const size = buffer.readUInt32LE(offset + 24);
    const nameLength = buffer.readUInt16LE(offset + 28);
    const extraLength = buffer.readUInt16LE(offset + 30);
    const commentLength = buffer.readUInt16LE(offset + 32);
    const externalAttributes = buffer.readUInt32LE(offset + 38);
    const localOffset = buffer.readUInt32LE(offset + 42);
    const name = buffer.subarray(offset + 46, offset + 46 + nameLength).toString('utf8');
    offset += 46 + nameLength + extraLength + commentLength;
    total += size;
    if (total > limits.maxBytes) throw new PayloadTooLarge(`code: more than ${limits.maxBytes} bytes after unpacking`);
    if (entries.length >= limits.maxFiles) throw new PayloadTooLarge(`code: more than ${limits.maxFiles} files`);
    const unixMode = externalAttributes >>> 16;
    const isDirectory = name.endsWith('/');
    const isSymlink = (unixMode & 0o170000) === 0o120000;
    if (buffer.readUInt32LE(localOffset) !== 0x04034b50) throw new BadRequest('code: corrupt zip entry', 'code');
    const dataStart = localOffset + 30 + buffer.readUInt16LE(localOffset + 26) + buffer.readUInt16LE(localOffset + 28);
    const raw = buffer.subarray(dataStart, dataStart + compressedSize);
    let data: Buffer;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) data = inflateRawSync(raw, { maxOutputLength: Math.max(size, 1) });
    else throw new BadRequest(`code: zip entry "${name}" uses unsupported compression method ${method}`, 'code');
    if (isDirectory) entries.push({ path: name, type: 'directory', mode: 0o755, data: Buffer.alloc(0) });
    else if (isSymlink) entries.push({ path: name, type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: data.toString('utf8') });
    else entries.push({ path: name, type: 'file', mode: unixMode & 0o777 || 0o644, data });
  }
  return entries;
}

export type ArchiveFormat = 'zip' | 'tar' | 'tar.gz';

export function detectArchive(buffer: Buffer): ArchiveFormat | undefined {
  if (buffer.length >= 4 && buffer.readUInt32LE(0) === 0x04034b50) return 'zip';
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
      // Cap the inflated size: a small gzip can expand without bound.
      tar = gunzipSync(buffer, { maxOutputLength: limits.maxBytes + limits.maxFiles * 1024 + 1024 * 1024 });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new PayloadTooLarge(`code: more than ${limits.maxBytes} bytes after unpacking`);
      throw new BadRequest('code: corrupt gzip data', 'code');
    }
    return readTar(tar, limits);
  }
  throw new BadRequest('code: unrecognised archive; send a zip, tar or tar.gz, or the files themselves', 'code');
}

export interface NormalizedUpload {
  archive: Buffer;
  sha256: string;
  files: number;
  bytes: number;
}

/** One canonical form for every upload: a gzip'd tar, unpacked by busybox `tar` in the init container. */
export function normalizeUpload(entries: ArchiveEntry[], limits: UploadLimits): NormalizedUpload {
  const valid = validateEntries(entries, limits);
  const archive = gzipSync(writeTar(valid));
  return {
    archive,
    sha256: createHash('sha256').update(archive).digest('hex'),
    files: valid.filter((e) => e.type !== 'directory').length,
    bytes: valid.reduce((sum, e) => sum + e.data.length, 0),
  };
}
