import { Transform, Writable, type Readable } from 'node:stream';
import { BadRequest, NotFound } from '../../http/errors.ts';
import type { Owner } from '../../k8s/builders.ts';
import { safeRelativePath } from '../../uploads/archive.ts';
import { ExecFailed, type VolumeHelper } from './volume.ts';

/**
 * Reading files off the user's volume through the helper's exec, for job outputs. Every command is
 * an argv whose names arrive as positional parameters ("$1"), never a shell line built from names,
 * and every path is relative to the helper's working directory (the volume), so it runs the same
 * under KWOK. Whatever a job wrote can be read only by its owner: the helper mounts only that
 * user's volume and holds no credentials. A symlink a job made is listed as nothing, refused on
 * download and archived as a link, never followed.
 */

export interface VolumeFile {
  /** Relative to the listed directory. */
  name: string;
  size: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
}

/** Exit statuses of the scripts below, mapped to answers by `fileError`. */
const exitMissing = 4;
const exitDirectory = 5;
const exitThroughLink = 6;

/**
 * `$1` is a directory (relative to the volume) and not a symlink to one; cd into it. Its parent
 * directories are made by the kubelet (subPathExpr) or by us, never by a job, so they are no links.
 */
function enterDirectory(exitIfMissing = exitMissing): string {
  return `[ -d "$1" ] && [ ! -L "$1" ] || exit ${exitIfMissing}; cd "$1" || exit ${exitIfMissing}`;
}

/**
 * `./$2` (inside the entered directory) is a regular file reached without any symlink: its real
 * path must be exactly the directory's real path plus `$2` (which is normalized: no ".", "..", "//").
 */
const checkRegularFile = [
  'here=$(pwd -P)',
  `[ -e "./$2" ] || exit ${exitMissing}`,
  `real=$(realpath "./$2") || exit ${exitMissing}`,
  `[ "$real" = "$here/$2" ] || exit ${exitThroughLink}`,
  `[ -d "$real" ] && exit ${exitDirectory}`,
  `[ -f "$real" ] || exit ${exitMissing}`,
].join('; ');

/**
 * Regular files below `dir` (relative to the volume), sorted by name; `undefined` when `dir` is no
 * directory. Names with a control character (a newline would split the `stat` line) are left out:
 * they could not be asked for by path anyway.
 */
export async function listFiles(helper: VolumeHelper, owner: Owner, dir: string): Promise<VolumeFile[] | undefined> {
  const { sink, text } = collector(16 * 1024 * 1024);
  // `stat -c` is in busybox and GNU coreutils; the first line says the directory exists.
  const script = `${enterDirectory(0)}; echo dir; find . -type f ! -path "$2" -exec stat -c "%s %Y %n" {} +`;
  await helper.run(owner, ['sh', '-c', script, 'list', volumePath(dir), '*[[:cntrl:]]*'], { stdout: sink });
  const lines = text().split('\n');
  if (lines[0] !== 'dir') return undefined;
  const files: VolumeFile[] = [];
  for (const line of lines.slice(1)) {
    const match = /^(\d+) (\d+) \.\/(.+)$/.exec(line);
    if (match) files.push({ size: Number(match[1]), mtime: Number(match[2]), name: match[3]! });
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Size and modification time of the regular file `file` below `dir`; NotFound / BadRequest as `fileError` says. */
export async function statFile(helper: VolumeHelper, owner: Owner, dir: string, file: string): Promise<{ size: number; mtime: number }> {
  const { sink, text } = collector(4096);
  try {
    await helper.run(
      owner,
      ['sh', '-c', `${enterDirectory()}; ${checkRegularFile}; stat -c "%s %Y" "./$2"`, 'stat', volumePath(dir), relative(file)],
      { stdout: sink },
    );
  } catch (error) {
    throw fileError(error, file);
  }
  const match = /^(\d+) (\d+)\s*$/.exec(text());
  if (!match) throw new NotFound(`output ${JSON.stringify(file)} not found`);
  return { size: Number(match[1]), mtime: Number(match[2]) };
}

/**
 * Streams bytes [start, start + length) of `file` below `dir` (all of it from `start` without a
 * length), checked as statFile does. Resolves once the bytes begin (or the file proved empty), so a
 * missing file is still an error the caller can answer with a status; destroying the stream, or
 * `signal`, ends the command.
 */
export function readFile(
  helper: VolumeHelper,
  owner: Owner,
  dir: string,
  file: string,
  range: { start?: number; length?: number },
  signal: AbortSignal,
): Promise<Readable> {
  const start = range.start ?? 0;
  if (
    !Number.isSafeInteger(start) ||
    start < 0 ||
    (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0))
  )
    throw new RangeError('bad range');
  // One process where one does: no pipe for a whole file or a range from its start.
  let read: string;
  if (start === 0) read = range.length === undefined ? 'cat "./$2"' : 'head -c "$4" "./$2"';
  else read = range.length === undefined ? 'tail -c +"$3" "./$2"' : 'tail -c +"$3" "./$2" | head -c "$4"';
  const script = `${enterDirectory()}; ${checkRegularFile}; ${read}`;
  const command = ['sh', '-c', script, 'read', volumePath(dir), relative(file), String(start + 1), String(range.length ?? 0)];
  return commandOutput(helper, owner, command, signal, (error) => fileError(error, file));
}

/** A tar.gz of everything below `dir` (symlinks stored as links); NotFound when `dir` is no directory. */
export function tarDirectory(helper: VolumeHelper, owner: Owner, dir: string, signal: AbortSignal): Promise<Readable> {
  const command = ['sh', '-c', `${enterDirectory()}; exec tar -czf - .`, 'tar', volumePath(dir)];
  return commandOutput(helper, owner, command, signal, (error) => fileError(error, dir));
}

/** Removes `dir` and everything below it; answers how many regular files it held, `undefined` when it did not exist. */
export async function removeDirectory(helper: VolumeHelper, owner: Owner, dir: string): Promise<number | undefined> {
  const { sink, text } = collector(4096);
  // rm -rf removes links, never what they point to.
  const script = `[ -d "$1" ] && [ ! -L "$1" ] || exit 0; n=$(find "$1" -type f -print0 | tr -cd '\\000' | wc -c); rm -rf "$1"; echo "$n"`;
  await helper.run(owner, ['sh', '-c', script, 'remove', volumePath(dir)], { stdout: sink });
  const count = text().trim();
  return count === '' ? undefined : Number(count);
}

/** Subdirectories of `dir` with their modification times (seconds); none when `dir` does not exist. */
export async function listDirectories(helper: VolumeHelper, owner: Owner, dir: string): Promise<{ name: string; mtime: number }[]> {
  const { sink, text } = collector(16 * 1024 * 1024);
  const script = `${enterDirectory(0)}; find . -mindepth 1 -maxdepth 1 -type d ! -name "$2" -exec stat -c "%Y %n" {} +`;
  await helper.run(owner, ['sh', '-c', script, 'dirs', volumePath(dir), '*[[:cntrl:]]*'], { stdout: sink });
  const found: { name: string; mtime: number }[] = [];
  for (const line of text().split('\n')) {
    const match = /^(\d+) \.\/([^/]+)$/.exec(line);
    if (match) found.push({ mtime: Number(match[1]), name: match[2]! });
  }
  return found;
}

/** Removes the named subdirectories of `dir` (plain names, no "/"). */
export async function removeSubdirectories(helper: VolumeHelper, owner: Owner, dir: string, names: string[]): Promise<void> {
  if (!names.length) return;
  for (const name of names) if (name.includes('/') || name === '.' || name === '..' || !name) throw new RangeError(`bad name ${name}`);
  await helper.run(owner, [
    'sh',
    '-c',
    `${enterDirectory(0)}; shift; rm -rf "$@"`,
    'sweep',
    volumePath(dir),
    ...names.map((name) => `./${name}`),
  ]);
}

/**
 * The command's stdout as a stream, handed over once its first bytes arrive or it ended well: a
 * command that fails before writing anything rejects instead (mapped by `mapError`), so the caller
 * can still answer with a status. A failure later destroys the stream with the error; destroying
 * the stream (the client left) or aborting `signal` ends the exec.
 */
function commandOutput(
  helper: VolumeHelper,
  owner: Owner,
  command: string[],
  signal: AbortSignal,
  mapError: (error: unknown) => unknown,
): Promise<Readable> {
  const stop = new AbortController();
  return new Promise((resolve, reject) => {
    let started = false;
    const begin = () => {
      if (started) return;
      started = true;
      resolve(output);
    };
    const output = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        begin();
        done(null, chunk);
      },
    });
    output.once('close', () => stop.abort(new Error('the reader went away')));
    helper.run(owner, command, { stdout: output, signal: AbortSignal.any([signal, stop.signal]) }).then(
      () => {
        begin();
        output.end();
      },
      (error: unknown) => {
        if (!started) {
          output.destroy();
          reject(mapError(error));
        } else output.destroy(error as Error);
      },
    );
  });
}

/** A script's exit status as the answer: no such file, a directory, a path through a symlink. */
function fileError(error: unknown, file: string): unknown {
  if (!(error instanceof ExecFailed)) return error;
  const shown = JSON.stringify(file);
  switch (error.exitCode) {
    case exitMissing:
      return new NotFound(`output ${shown} not found`);
    case exitDirectory:
      return new BadRequest(`path: ${shown} is a directory; ask for a file, or for the archive`, 'path');
    case exitThroughLink:
      return new NotFound(`output ${shown} is reached through a symbolic link; only regular files are served`);
    default:
      return error;
  }
}

/** A user-named path inside the volume, refused if it could leave it. */
function volumePath(raw: string): string {
  return `./${relative(raw)}`;
}

function relative(raw: string): string {
  const path = safeRelativePath(raw);
  if (!path) throw new RangeError('the volume root itself is not a file');
  return path;
}

/** Collects a command's (small) stdout; past `limit` bytes it keeps nothing more and says so. */
function collector(limit: number): { sink: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding: BufferEncoding, done: () => void) {
      size += chunk.length;
      if (size <= limit) chunks.push(chunk);
      done();
    },
  });
  return {
    sink,
    text() {
      if (size > limit) throw new RangeError(`the command wrote more than ${limit} bytes`);
      return Buffer.concat(chunks).toString('utf8');
    },
  };
}
