import busboy from 'busboy';
import { BadRequest, PayloadTooLarge } from '../http/errors.ts';
import type { IncomingRequest } from '../http/router.ts';
import { detectArchive, readArchive, type ArchiveEntry, type UploadLimits } from './archive.ts';

export interface MultipartUpload {
  fields: Record<string, string>;
  entries: ArchiveEntry[];
  /** How many file parts arrived; 0 means the request carried a spec only. */
  fileParts: number;
}

const archiveName = /\.(zip|tar|tgz|tar\.gz)$/i;

export function isMultipart(req: IncomingRequest): boolean {
  return /^multipart\/form-data/i.test(req.headers['content-type'] ?? '');
}

/**
 * Parses a multipart body as it streams in. A part named `archive` (or a lone file named *.zip,
 * *.tar, *.tar.gz) is unpacked; every other file part is one file whose name is its path under /code.
 */
export function parseMultipart(req: IncomingRequest, limits: UploadLimits): Promise<MultipartUpload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        preservePath: true,
        limits: { fileSize: limits.maxBytes, files: limits.maxFiles, fields: 32, fieldSize: 1024 * 1024 },
      });
    } catch (error) {
      reject(new BadRequest(`Malformed multipart request: ${(error as Error).message}`));
      return;
    }
    const fields: Record<string, string> = {};
    const files: { field: string; name: string; data: Buffer }[] = [];
    let total = 0;
    let failed = false;
    const fail = (error: Error) => {
      if (failed) return;
      failed = true;
      req.unpipe(parser);
      req.resume();
      reject(error);
    };
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) return fail(new PayloadTooLarge(`Field "${name}" is larger than 1 MiB`));
      fields[name] = value;
    });
    parser.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > limits.maxBytes) {
          stream.resume();
          return fail(new PayloadTooLarge(`Upload is larger than ${limits.maxBytes} bytes`));
        }
        chunks.push(chunk);
      });
      stream.on('limit', () => fail(new PayloadTooLarge(`Upload is larger than ${limits.maxBytes} bytes`)));
      stream.on('close', () => files.push({ field, name: info.filename ?? field, data: Buffer.concat(chunks) }));
    });
    parser.on('filesLimit', () => fail(new PayloadTooLarge(`Upload has more than ${limits.maxFiles} files`)));
    parser.on('fieldsLimit', () => fail(new BadRequest('Too many form fields')));
    parser.on('error', (error: Error) => fail(new BadRequest(`Malformed multipart request: ${error.message}`)));
    parser.on('close', () => {
      if (failed) return;
      try {
        resolve({ fields, entries: toEntries(files, limits), fileParts: files.length });
      } catch (error) {
        reject(error);
      }
    });
    if (Buffer.isBuffer(req.rawBody)) parser.end(req.rawBody);
    else req.pipe(parser);
  });
}

function toEntries(files: { field: string; name: string; data: Buffer }[], limits: UploadLimits): ArchiveEntry[] {
  const archives = files.filter((f) => f.field === 'archive' || (files.length === 1 && archiveName.test(f.name) && detectArchive(f.data)));
  if (archives.length > 1) throw new BadRequest('code: send one archive per upload', 'code');
  if (archives.length === 1) {
    if (files.length > 1) throw new BadRequest('code: send either one archive or individual files, not both', 'code');
    return readArchive(archives[0]!.data, limits);
  }
  return files.map((f) => ({ path: f.name, type: 'file' as const, mode: 0o644, data: f.data }));
}
