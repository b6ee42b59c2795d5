import { randomBytes } from 'node:crypto';
import { constants, unlinkSync, type Stats } from 'node:fs';
import { lstat, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { readTarEntries, type TarEntry } from './tar-reader.ts';

/**
 * Unpacks a job's outputs archive into a directory, trusting nothing in it: the files were written
 * by the job, so a name may be anything the job chose. Only regular files and directories are
 * written; links, devices and FIFOs are skipped with a warning; a path that is absolute, climbs
 * with `..`, is too long or holds control characters is refused; nothing is written through a
 * symlink or a file, whether the archive made it or it was already in DEST. Files are written to a
 * temporary name beside their target and renamed when complete, so an interrupted download never
 * leaves a truncated file under a real name.
 */

/** Linux limits (PATH_MAX, NAME_MAX): a longer name would fail half-way or be cut. */
const maxPathBytes = 4095;
const maxComponentBytes = 255;
// Newlines forge lines in listings and terminals; escapes drive the terminal.
const controlCharacter = /[\u0000-\u001f\u007f]/;
// Not available on Windows; there, the lstat checks stand alone.
const noFollow = constants.O_NOFOLLOW ?? 0;

/** A name from the archive, quoted and cut short, safe to print. */
export function shown(name: string): string {
  return JSON.stringify(name.length > 200 ? `${name.slice(0, 200)}…` : name);
}

/**
 * The relative, normalized path an entry may take inside DEST, or why it may not. `unsafe` marks
 * a name that would land outside DEST (absolute, `..`) or could not be written as named (too
 * long): refused, and the command fails. A name with control characters is only skipped: a job
 * may well write one (the server's listing leaves such names out), it just never reaches a terminal.
 */
export function safeOutputPath(raw: string, platform = process.platform): { path: string } | { problem: string; unsafe: boolean } {
  if (controlCharacter.test(raw)) return { problem: 'its name contains a control character (newline, escape...)', unsafe: false };
  // A backslash is a separator on Windows (so "..\\x" climbs); elsewhere it is an ordinary character.
  if (platform === 'win32' && raw.includes('\\')) return { problem: 'contains a backslash, a separator on Windows', unsafe: true };
  if (raw.startsWith('/') || /^[a-zA-Z]:/.test(raw)) return { problem: 'is an absolute path', unsafe: true };
  const parts = raw.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) return { problem: 'climbs out of the destination with ".."', unsafe: true };
  const path = parts.join('/');
  if (Buffer.byteLength(path) > maxPathBytes) return { problem: `is longer than ${maxPathBytes} bytes`, unsafe: true };
  if (parts.some((part) => Buffer.byteLength(part) > maxComponentBytes))
    return { problem: `has a name longer than ${maxComponentBytes} bytes`, unsafe: true };
  return { path };
}

export interface ExtractOptions {
  /** One line per entry skipped or refused (no trailing newline). */
  warn(message: string): void;
  /** Bytes of file data written so far, after each chunk. */
  progress?(bytes: number): void;
  /**
   * Files completed by an earlier attempt of the same download (path → size): skipped this time,
   * so a retried archive does not rewrite them. Completed files are added to it.
   */
  completed?: Map<string, number>;
}

export interface ExtractSummary {
  files: number;
  bytes: number;
  /** Links, devices, FIFOs, names with control characters: skipped with a warning. */
  skipped: number;
  /** Unsafe names, or names that would pass through a symlink: refused. */
  refused: number;
}

async function lstatOrMissing(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function kindOf(stats: Stats): string {
  return stats.isSymbolicLink() ? 'a symlink' : stats.isDirectory() ? 'a directory' : stats.isFile() ? 'a file' : 'a special file';
}

export class Extractor {
  private readonly summary: ExtractSummary = { files: 0, bytes: 0, skipped: 0, refused: 0 };
  /** Directories checked (or made) during this run, relative to DEST. */
  private readonly directories = new Set<string>(['']);

  constructor(
    /** Absolute; must exist. */
    private readonly dest: string,
    private readonly options: ExtractOptions,
  ) {}

  async extract(source: AsyncIterable<Uint8Array>): Promise<ExtractSummary> {
    for await (const entry of readTarEntries(source)) await this.entry(entry);
    return { ...this.summary };
  }

  private refuse(raw: string, why: string): void {
    this.summary.refused++;
    this.options.warn(`refused ${shown(raw)}: ${why}`);
  }

  /** What was written (or found complete) so far. */
  result(): ExtractSummary {
    return { ...this.summary };
  }

  /**
   * Where a listed file may be written, with the same checks as an archive entry (for the
   * file-by-file fallback of cli/download.ts); undefined, the refusal told and counted, when it may
   * not. `complete` when an earlier attempt already wrote it.
   */
  async targetFor(raw: string, size: number): Promise<{ target: string; path: string; complete: boolean } | undefined> {
    const checked = safeOutputPath(raw);
    if ('problem' in checked) {
      if (checked.unsafe) this.refuse(raw, checked.problem);
      else {
        this.summary.skipped++;
        this.options.warn(`skipped ${shown(raw)}: ${checked.problem}`);
      }
      return undefined;
    }
    const { path } = checked;
    if (path === '') {
      this.refuse(raw, 'names no file');
      return undefined;
    }
    const parts = path.split('/');
    const parentProblem = await this.directory(parts.slice(0, -1));
    if (parentProblem) {
      this.refuse(raw, parentProblem);
      return undefined;
    }
    const target = join(this.dest, ...parts);
    this.inside(target);
    if (this.options.completed?.get(path) === size) return { target, path, complete: true };
    const existing = await lstatOrMissing(target);
    if (existing && !existing.isFile()) {
      this.refuse(raw, `${kindOf(existing)} of that name is already in the destination; not replaced`);
      return undefined;
    }
    return { target, path, complete: false };
  }

  /** A file written by other means (the fallback), counted as if unpacked. */
  written(path: string, size: number): void {
    this.options.completed?.set(path, size);
    this.summary.files++;
    this.summary.bytes += size;
  }

  private async entry(entry: TarEntry): Promise<void> {
    if (entry.type === 'directory') return this.directoryEntry(entry.path);
    if (entry.type !== 'file') {
      this.summary.skipped++;
      this.options.warn(
        `skipped ${shown(entry.path)}: ${entry.type === 'other' ? 'an unsupported entry' : `a ${entry.type}`}; only files and directories are extracted`,
      );
      return;
    }
    const place = await this.targetFor(entry.path, entry.size);
    if (!place) return;
    if (place.complete) {
      this.summary.files++;
      this.summary.bytes += entry.size;
      this.options.progress?.(this.summary.bytes);
      return;
    }
    await this.writeFile(place.target, entry);
    this.options.completed?.set(place.path, entry.size);
    this.summary.files++;
  }

  private async directoryEntry(raw: string): Promise<void> {
    const checked = safeOutputPath(raw);
    if ('problem' in checked) {
      if (checked.unsafe) return this.refuse(raw, checked.problem);
      this.summary.skipped++;
      return this.options.warn(`skipped ${shown(raw)}: ${checked.problem}`);
    }
    if (checked.path === '') return; // the archive's root directory
    const problem = await this.directory(checked.path.split('/'));
    if (problem) this.refuse(raw, problem);
  }

  /** Makes (or checks) each directory of `parts` below DEST; the problem when one is not a real directory. */
  private async directory(parts: string[]): Promise<string | undefined> {
    for (let depth = 1; depth <= parts.length; depth++) {
      const relativePath = parts.slice(0, depth).join('/');
      if (this.directories.has(relativePath)) continue;
      const absolute = join(this.dest, ...parts.slice(0, depth));
      this.inside(absolute);
      let stats = await lstatOrMissing(absolute);
      if (!stats) {
        try {
          await mkdir(absolute);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        }
        stats = await lstat(absolute);
      }
      if (!stats.isDirectory()) return `${shown(relativePath)} is ${kindOf(stats)} in the destination, not a directory`;
      this.directories.add(relativePath);
    }
    return undefined;
  }

  /** A last guard on the joined path itself, whatever the checks before it concluded. */
  private inside(absolute: string): void {
    const rel = relative(this.dest, absolute);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) throw new Error(`internal: ${absolute} is not inside ${this.dest}`);
  }

  private async writeFile(target: string, entry: TarEntry): Promise<void> {
    // Beside the target (same directory, same filesystem) so the rename is atomic; O_EXCL and
    // O_NOFOLLOW so a name planted in the meantime is never opened.
    const temporary = join(dirname(target), `.kbatch-${randomBytes(6).toString('hex')}.part`);
    const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | noFollow, entry.mode & 0o777 || 0o644);
    let renamed = false;
    // Ctrl-C exits at once (cli/main.ts): the half-written file goes with the process.
    const removeOnExit = () => {
      try {
        unlinkSync(temporary);
      } catch {
        /* already renamed or removed */
      }
    };
    process.once('exit', removeOnExit);
    let counted = 0;
    try {
      for await (const chunk of entry.data) {
        await handle.write(chunk);
        counted += chunk.length;
        this.summary.bytes += chunk.length;
        this.options.progress?.(this.summary.bytes);
      }
      await handle.close();
      await rename(temporary, target);
      renamed = true;
    } finally {
      process.removeListener('exit', removeOnExit);
      if (!renamed) {
        // Not written after all: its bytes are not in the summary either.
        this.summary.bytes -= counted;
        await handle.close().catch(() => {});
        await unlink(temporary).catch(() => {});
      }
    }
  }
}
