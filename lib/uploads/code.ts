import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import {
  bufferAccess,
  detectArchive,
  entrySize,
  listZip,
  materialize,
  normalizeUpload,
  readTar,
  tarStream,
  validateEntries,
  type ArchiveEntry,
  type NormalizedUpload,
  type RandomAccess,
  type UploadLimits,
} from './archive.ts';
import { BadRequest } from '../http/errors.ts';
import { invalidArchive } from './errors.ts';
import type { MultipartUpload, UploadPart } from './multipart.ts';

/**
 * Code whose files come to at most this many bytes is normalised in memory (a gzip'd tar, small
 * enough for a ConfigMap when it compresses well); larger code is streamed from the spool into the
 * backend's storage. Normalising holds about three times this, inside issue 10's 32 MB per upload.
 */
export const inMemoryCodeBytes = 4 * 1024 * 1024;

const archiveName = /\.(zip|tar|tgz|tar\.gz)$/i;

/**
 * The code of a multipart request: one part named `archive` (or a lone file named *.zip, *.tar,
 * *.tar.gz) is unpacked; every other file part is one file whose name is its path under /code.
 * Every check that needs only the archive's directory (paths, types, limits, a zip's offsets)
 * runs here, before anything is stored; a streamed upload's data is checked again as it streams.
 */
export function codeFromMultipart(upload: MultipartUpload, limits: UploadLimits): NormalizedUpload {
  const { parts } = upload;
  const archives = parts.filter((p) => p.field === 'archive' || (parts.length === 1 && archiveName.test(p.name) && detectArchive(p.head)));
  if (archives.length > 1) throw invalidArchive('send one archive per upload');
  if (archives.length === 1) {
    if (parts.length > 1) throw invalidArchive('send either one archive or individual files, not both');
    return codeFromArchive(upload, archives[0]!, limits);
  }
  const entries = parts.map((part): ArchiveEntry => ({
    path: part.name,
    type: 'file',
    mode: 0o644,
    data: part.data ?? Buffer.alloc(0),
    ...(part.data ? {} : { source: spooledSource(upload, part) }),
  }));
  return codeFromEntries(entries, limits, upload.sha256);
}

/** Entries that may still be on disk: normalised in memory when small, else a tar made as it streams. */
export function codeFromEntries(entries: ArchiveEntry[], limits: UploadLimits, sha256: string): NormalizedUpload {
  if (!entries.length) throw new BadRequest('code: the upload contains no files', 'code');
  const valid = validateEntries(entries, limits);
  const bytes = valid.reduce((sum, entry) => sum + entrySize(entry), 0);
  if (bytes <= inMemoryCodeBytes) return normalizeUpload(valid.map(materialize), limits);
  return { kind: 'stream', open: () => tarStream(valid), gzip: false, sha256 };
}

/** A zip held in memory (upstream's inline code): members are inflated only as they are needed. */
export function codeFromZip(zip: Buffer, limits: UploadLimits): NormalizedUpload {
  return codeFromEntries(listZip(bufferAccess(zip), limits), limits, createHash('sha256').update(zip).digest('hex'));
}

function codeFromArchive(upload: MultipartUpload, part: UploadPart, limits: UploadLimits): NormalizedUpload {
  const format = detectArchive(part.head);
  if (format === 'zip') return codeFromEntries(listZip(accessTo(upload, part), limits), limits, upload.sha256);
  if (format !== 'tar' && format !== 'tar.gz')
    throw invalidArchive('unrecognised archive; send a zip, tar or tar.gz, or the files themselves');
  // A tar is read in memory only when its contents are known to be small; a gzip is inflated up to that bound.
  const streamed = (): NormalizedUpload => ({
    kind: 'stream',
    open: () => (part.data ? bufferAccess(part.data).stream(0, part.size) : upload.spool.stream(part.path!)),
    gzip: format === 'tar.gz',
    sha256: upload.sha256,
  });
  if (part.size > inMemoryCodeBytes) return streamed();
  const bytes = part.data ?? upload.spool.readAll(part.path!);
  let tar = bytes;
  if (format === 'tar.gz') {
    try {
      tar = gunzipSync(bytes, { maxOutputLength: inMemoryCodeBytes + 1024 * 1024 });
    } catch (error) {
      if ((error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') return streamed();
      throw invalidArchive(`corrupt gzip data (${(error as Error).message})`);
    }
  }
  return codeFromEntries(readTar(tar, limits), limits, upload.sha256);
}

function accessTo(upload: MultipartUpload, part: UploadPart): RandomAccess {
  return part.data ? bufferAccess(part.data) : upload.spool.access(part.path!, part.size);
}

function spooledSource(upload: MultipartUpload, part: UploadPart) {
  return {
    size: part.size,
    readAll: () => upload.spool.readAll(part.path!),
    open: () => upload.spool.stream(part.path!),
  };
}
