import { Writable } from 'node:stream';
import type { Owner } from '../../k8s/builders.ts';
import { safeRelativePath } from '../../uploads/archive.ts';
import type { VolumeHelper } from './volume.ts';

/**
 * Reading files off the user's volume through the helper's exec, for job outputs (issue 7 part 2;
 * the API routes are not wired yet). Every command is an argv, never a shell line built from names,
 * and every path is relative to the helper's working directory (the volume), so it runs the same
 * under KWOK. Whatever a job wrote can be read only by its owner: the helper mounts only that
 * user's volume and holds no credentials, so a symlink a job made leads nowhere else.
 */

export interface VolumeFile {
  /** Relative to the listed directory. */
  name: string;
  size: number;
  /** Modification time, seconds since the epoch. */
  mtime: number;
}

/** Regular files below `dir` (relative to the volume), sorted by name; a missing dir is empty. */
export async function listFiles(helper: VolumeHelper, owner: Owner, dir: string): Promise<VolumeFile[]> {
  const root = volumePath(dir);
  const chunks: Buffer[] = [];
  const sink = collector(chunks, 16 * 1024 * 1024);
  // `stat -c` is in busybox and GNU coreutils; names with a newline cannot be told apart in its
  // output and are left out (a job that writes them can still hand them over in the tar).
  await helper.run(owner, ['sh', '-c', '[ -d "$1" ] || exit 0; cd "$1" && find . -type f -exec stat -c "%s %Y %n" {} +', 'list', root], {
    stdout: sink,
  });
  const files: VolumeFile[] = [];
  for (const line of Buffer.concat(chunks).toString('utf8').split('\n')) {
    const match = /^(\d+) (\d+) \.\/(.+)$/.exec(line);
    if (match) files.push({ size: Number(match[1]), mtime: Number(match[2]), name: match[3]! });
  }
  return files.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Streams bytes [start, start + length) of one file into `out` (all of it from `start` without length). */
export async function readFile(
  helper: VolumeHelper,
  owner: Owner,
  file: string,
  out: Writable,
  range: { start?: number; length?: number } = {},
): Promise<void> {
  const path = volumePath(file);
  const start = range.start ?? 0;
  if (
    !Number.isSafeInteger(start) ||
    start < 0 ||
    (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0))
  )
    throw new RangeError('bad range');
  const command = range.length === undefined ? 'tail -c +"$2" "$1"' : 'tail -c +"$2" "$1" | head -c "$3"';
  await helper.run(owner, ['sh', '-c', `set -e; [ -f "$1" ]; ${command}`, 'read', path, String(start + 1), String(range.length ?? 0)], {
    stdout: out,
  });
}

/** Streams a tar.gz of everything below `dir` into `out`. */
export async function tarDirectory(helper: VolumeHelper, owner: Owner, dir: string, out: Writable): Promise<void> {
  await helper.run(owner, ['tar', '-czf', '-', '-C', volumePath(dir), '.'], { stdout: out });
}

/** A user-named path inside the volume, refused if it could leave it. */
function volumePath(raw: string): string {
  const path = safeRelativePath(raw);
  if (!path) throw new RangeError('the volume root itself is not a file');
  return `./${path}`;
}

function collector(chunks: Buffer[], limit: number): Writable {
  let size = 0;
  return new Writable({
    write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error) => void) {
      size += chunk.length;
      if (size > limit) return done(new RangeError(`listing larger than ${limit} bytes`));
      chunks.push(chunk);
      done();
    },
  });
}
