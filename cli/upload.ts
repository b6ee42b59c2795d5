import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, lstatSync, readdirSync, readFileSync, readlinkSync, statSync, type Stats } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, posix, relative, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, gzipSync } from 'node:zlib';
import { entrySize, materialize, tarStream, writeTar, type ArchiveEntry } from '../lib/uploads/archive.ts';
import { UsageError } from './errors.ts';

/** Never worth shipping to a job: version control, caches, dependency trees that belong in the image. */
export const ignoredDirectories = new Set(['.git', '__pycache__', '.ipynb_checkpoints', 'node_modules']);

export interface CodeArchive {
  /** gzip'd tar, the server's canonical upload format. */
  archive: Buffer;
  files: number;
  /** Bytes before compression. */
  bytes: number;
  skipped: string[];
}

export interface CollectResult {
  entries: ArchiveEntry[];
  /** Paths left out (ignored directories, special files, symlinks to directories outside), for a notice. */
  skipped: string[];
}

/** A file read only when packed, so `--code` of any size never sits in memory whole. */
function fileEntry(path: string, absolute: string, stat: Stats): ArchiveEntry {
  return {
    path,
    type: 'file',
    mode: stat.mode & 0o777 || 0o644,
    data: Buffer.alloc(0),
    source: {
      size: stat.size,
      readAll: () => readFileSync(absolute),
      open: () => createReadStream(absolute, { highWaterMark: 64 * 1024 }),
    },
  };
}

/** True when a relative symlink target stays inside the upload, so it can travel as a link. */
function linkStaysInside(entryPath: string, target: string): boolean {
  if (posix.isAbsolute(target)) return false;
  const resolved = posix.normalize(posix.join(posix.dirname(entryPath), target));
  return resolved !== '..' && !resolved.startsWith('../');
}

/**
 * Entries for `--code`, laid out as the founding notes promise: a file `script.sh` is at
 * /code/script.sh, a directory `my-dir` at /code/my-dir/ (so `python my-dir/main.py` runs from the
 * working directory /code). Upstream's Python CLI puts a directory's contents at the top instead;
 * code it sends keeps that layout, since it builds its archive itself. Paths use `/`, sorted, so
 * archives are reproducible.
 */
export function collectCodeEntries(codePath: string): CollectResult {
  const root = resolve(codePath);
  let rootStat;
  try {
    rootStat = statSync(root);
  } catch {
    throw new UsageError(`--code: ${codePath}: no such file or directory`);
  }
  if (rootStat.isFile()) return { entries: [fileEntry(basename(root), root, rootStat)], skipped: [] };
  if (!rootStat.isDirectory()) throw new UsageError(`--code: ${codePath} is neither a file nor a directory`);

  const entries: ArchiveEntry[] = [];
  const skipped: string[] = [];
  // The filesystem root has no name of its own to put on top.
  const top = basename(root);
  if (top) entries.push({ path: top, type: 'directory', mode: rootStat.mode & 0o777 || 0o755, data: Buffer.alloc(0) });
  const walk = (dir: string) => {
    for (const name of readdirSync(dir).sort()) {
      const absolute = join(dir, name);
      const inside = relative(root, absolute).split(/[\\/]/).join('/');
      const path = top ? `${top}/${inside}` : inside;
      const stat = lstatSync(absolute);
      if (stat.isDirectory()) {
        if (ignoredDirectories.has(name)) {
          skipped.push(`${path}/`);
          continue;
        }
        entries.push({ path, type: 'directory', mode: stat.mode & 0o777 || 0o755, data: Buffer.alloc(0) });
        walk(absolute);
      } else if (stat.isFile()) {
        entries.push(fileEntry(path, absolute, stat));
      } else if (stat.isSymbolicLink()) {
        const target = readlinkSync(absolute);
        if (linkStaysInside(inside, target)) {
          entries.push({ path, type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: target });
          continue;
        }
        // The server refuses links that leave the upload; a linked file is copied instead.
        const targetStat = statSync(absolute, { throwIfNoEntry: false });
        if (targetStat?.isFile()) entries.push(fileEntry(path, absolute, targetStat));
        else skipped.push(path);
      } else {
        skipped.push(path);
      }
    }
  };
  walk(root);
  return { entries, skipped };
}

function collectFiles(codePath: string) {
  const { entries, skipped } = collectCodeEntries(codePath);
  const files = entries.filter((e) => e.type !== 'directory');
  if (!files.length) throw new UsageError(`--code: ${codePath} contains no files to upload`);
  return { entries, skipped, files: files.length, bytes: files.reduce((sum, e) => sum + entrySize(e), 0) };
}

/** The code archive in memory (small code, tests). */
export function buildCodeArchive(codePath: string): CodeArchive {
  const { entries, ...counts } = collectFiles(codePath);
  return { archive: gzipSync(writeTar(entries.map(materialize))), ...counts };
}

export interface PackedCode {
  /** The gzip'd tar, in a private temporary directory; `dispose` removes it. */
  path: string;
  size: number;
  files: number;
  bytes: number;
  skipped: string[];
  dispose(): Promise<void>;
}

/**
 * The code archive written to a temporary file as it is made, one file at a time: memory stays a
 * few chunks whatever the size of `--code`, and every retry of the upload reads the same bytes again.
 */
export async function packCodeArchive(codePath: string): Promise<PackedCode> {
  const { entries, ...counts } = collectFiles(codePath);
  const dir = await mkdtemp(join(tmpdir(), 'kbatch-code-'));
  const dispose = () => rm(dir, { recursive: true, force: true });
  const path = join(dir, 'code.tar.gz');
  try {
    await pipeline(tarStream(entries), createGzip(), createWriteStream(path, { mode: 0o600 }));
    return { path, size: (await stat(path)).size, ...counts, dispose };
  } catch (error) {
    await dispose();
    // A file that changed size while packed, or vanished: say which, as a usage problem.
    throw new UsageError(`--code: packing ${codePath} failed: ${(error as Error).message}`);
  }
}

/** A part's bytes that stay in a file until sent. */
export interface FileBody {
  path: string;
  size: number;
}

export type BodyPart = Buffer | FileBody;

const partLength = (part: BodyPart) => (Buffer.isBuffer(part) ? part.length : part.size);

export interface MultipartBody {
  contentType: string;
  parts: BodyPart[];
  length: number;
}

function quoteHeader(value: string): string {
  return value.replace(/[\r\n"\\]/g, (c) => encodeURIComponent(c));
}

/** `multipart/form-data` with text fields and one file part, built by hand so its length is known up front. */
export function multipartBody(
  fields: Record<string, string>,
  file?: { field: string; filename: string; contentType: string; data: BodyPart },
): MultipartBody {
  const boundary = `----kbatch${randomBytes(12).toString('hex')}`;
  const parts: BodyPart[] = [];
  for (const [name, value] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${quoteHeader(name)}"\r\n\r\n${value}\r\n`));
  }
  if (file) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${quoteHeader(file.field)}"; filename="${quoteHeader(file.filename)}"\r\nContent-Type: ${file.contentType}\r\n\r\n`,
      ),
      file.data,
      Buffer.from('\r\n'),
    );
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { contentType: `multipart/form-data; boundary=${boundary}`, parts, length: parts.reduce((n, p) => n + partLength(p), 0) };
}

/** 64 KiB: small enough for smooth progress, large enough not to matter for throughput. */
const uploadChunkBytes = 64 * 1024;

/**
 * Streams the parts (buffers, and files read as they go) in chunks and reports how many bytes the
 * HTTP client has taken so far. A chunk is counted when the next one is pulled, i.e. once the
 * socket accepted it.
 */
export function progressStream(parts: BodyPart[], onProgress: (sent: number) => void): Readable {
  async function* pieces(part: BodyPart): AsyncGenerator<Buffer> {
    if (!Buffer.isBuffer(part)) {
      let read = 0;
      for await (const chunk of createReadStream(part.path, { highWaterMark: uploadChunkBytes })) {
        read += (chunk as Buffer).length;
        yield chunk as Buffer;
      }
      // The length was announced up front: a file that changed meanwhile would corrupt the body.
      if (read !== part.size) throw new Error(`${part.path} changed while it was being sent`);
      return;
    }
    for (let offset = 0; offset < part.length; offset += uploadChunkBytes) yield part.subarray(offset, offset + uploadChunkBytes);
  }
  async function* chunks() {
    let sent = 0;
    for (const part of parts) {
      for await (const chunk of pieces(part)) {
        yield chunk;
        sent += chunk.length;
        onProgress(sent);
      }
    }
  }
  return Readable.from(chunks(), { objectMode: false, highWaterMark: uploadChunkBytes });
}
