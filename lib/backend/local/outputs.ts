import { spawn } from 'node:child_process';
import { constants, createReadStream } from 'node:fs';
import { lstat, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { OutputFile } from '../../contract.ts';
import { BadRequest, NotFound } from '../../http/errors.ts';
import { resolveRange, type ByteRange } from '../../jobs/outputs.ts';
import type { OutputRead } from '../types.ts';

/**
 * Job outputs on the local backend, read from `<root>/namespaces/<ns>/outputs/<job>/` (store.ts).
 * A job may leave symlinks there (to /etc/passwd, say): nothing here follows one. Listing shows
 * regular files only, a read refuses any path with a link on the way (each part is checked with
 * lstat, and the file is opened with O_NOFOLLOW and checked to be the one found), and the archive
 * stores links as links.
 */

/** True when `dir` is a directory itself, not a link to one. */
async function isDirectory(dir: string): Promise<boolean> {
  return lstat(dir).then(
    (stats) => stats.isDirectory(),
    () => false,
  );
}

/** Regular files below `dir`, sorted by path; `undefined` when `dir` is no directory. */
export async function listOutputFiles(dir: string): Promise<OutputFile[] | undefined> {
  if (!(await isDirectory(dir))) return undefined;
  const files: OutputFile[] = [];
  const walk = async (relative: string): Promise<void> => {
    const entries = await readdir(join(dir, relative), { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      // A name no request could ask for (a control character) is not listed either.
      if (/[\x00-\x1f\x7f]/.test(entry.name)) continue;
      const path = relative ? `${relative}/${entry.name}` : entry.name;
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const stats = await lstat(join(dir, path)).catch(() => undefined);
        if (stats?.isFile()) files.push({ path, size: stats.size, modified: stats.mtime.toISOString() });
      }
    }
  };
  await walk('');
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Opens `path` (checked by outputFilePath) below `dir` for reading, without following any link. */
export async function readOutputFile(dir: string, path: string, range: ByteRange | undefined, signal: AbortSignal): Promise<OutputRead> {
  const shown = JSON.stringify(path);
  const missing = () => new NotFound(`output ${shown} not found`);
  if (!(await isDirectory(dir))) throw missing();
  const parts = path.split('/');
  let current = dir;
  for (const [i, part] of parts.entries()) {
    current = join(current, part);
    const stats = await lstat(current).catch(() => undefined);
    if (!stats) throw missing();
    if (stats.isSymbolicLink()) throw new NotFound(`output ${shown} is reached through a symbolic link; only regular files are served`);
    const last = i === parts.length - 1;
    if (!last && !stats.isDirectory()) throw missing();
    if (last && stats.isDirectory()) throw new BadRequest(`path: ${shown} is a directory; ask for a file, or for the archive`, 'path');
    if (last && !stats.isFile()) throw missing();
  }
  // O_NOFOLLOW: a link swapped in since the check is refused by the kernel; O_NONBLOCK: a FIFO
  // swapped in does not hang the open (fstat then says it is no regular file).
  const handle = await open(current, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => {
    throw missing();
  });
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw missing();
    const resolved = range ? resolveRange(range, stats.size) : undefined;
    if (stats.size === 0) {
      await handle.close();
      return { size: 0, stream: Readable.from([]) };
    }
    const stream = createReadStream('', {
      fd: handle,
      start: resolved?.start ?? 0,
      // Never past the size announced in Content-Length, should the file grow meanwhile.
      end: resolved?.end ?? stats.size - 1,
      signal,
    });
    stream.on('error', () => undefined);
    return { size: stats.size, ...(resolved ? { range: resolved } : {}), stream };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** The outputs as a tar.gz (the system `tar`, which stores links as links); NotFound when there are none. */
export async function archiveOutputDir(dir: string, signal: AbortSignal): Promise<Readable> {
  if (!(await isDirectory(dir))) throw new NotFound('this job has no outputs');
  const child = spawn('tar', ['-czf', '-', '-C', dir, '.'], { stdio: ['ignore', 'pipe', 'pipe'], signal });
  const output = new PassThrough();
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
  child.stdout.pipe(output, { end: false });
  // The archive is complete only if tar says so: a failure cuts the stream instead of ending it.
  child.on('close', (code) => {
    if (code === 0) output.end();
    else output.destroy(new Error(`tar failed (${code}): ${stderr.trim()}`));
  });
  child.on('error', (error) => output.destroy(error));
  output.once('close', () => child.kill('SIGKILL'));
  return output;
}

/** Removes `dir`; answers how many regular files it held, `undefined` when there was none. */
export async function removeOutputDir(dir: string): Promise<number | undefined> {
  const files = await listOutputFiles(dir);
  if (!files) {
    // A job that replaced its outputs directory with a link: the link goes, not what it points to.
    const link = await lstat(dir).then(
      (stats) => stats.isSymbolicLink(),
      () => false,
    );
    if (link) await rm(dir, { force: true });
    return link ? 0 : undefined;
  }
  // rm removes links, never what they point to.
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  return files.length;
}

/** The job directories below `outputsRoot` with their modification times, for the retention sweep. */
export async function outputDirectories(outputsRoot: string): Promise<{ job: string; modifiedMs: number }[]> {
  const entries = await readdir(outputsRoot, { withFileTypes: true }).catch(() => []);
  const found: { job: string; modifiedMs: number }[] = [];
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    const stats = await lstat(join(outputsRoot, entry.name)).catch(() => undefined);
    if (stats) found.push({ job: entry.name, modifiedMs: stats.mtimeMs });
  }
  return found;
}
