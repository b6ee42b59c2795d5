/**
 * Hostile archives: every malformed, lying, unsafe or oversized zip, tar and tar.gz is refused with
 * a 4xx HttpError carrying the right contract reason, never another exception (a RangeError from a
 * lying offset, a zlib error) that would become a 500.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { HttpError } from '../../lib/http/errors.ts';
import {
  normalizeUpload,
  readArchive,
  validateEntries,
  writeTar,
  type ArchiveEntry,
  type UploadLimits,
} from '../../lib/uploads/archive.ts';

const limits: UploadLimits = { maxBytes: 1024 * 1024, maxFiles: 50 };

/** The contract reason, wherever this branch's HttpError keeps it. */
function reasonOf(error: HttpError): unknown {
  const shaped = error as unknown as { reason?: unknown; details?: { reason?: unknown } };
  return shaped.reason ?? shaped.details?.reason;
}

/** Reads and validates as the upload route does; returns the refusal. */
function refusal(bytes: Buffer, uploadLimits = limits): HttpError {
  try {
    normalizeUpload(readArchive(bytes, uploadLimits), uploadLimits);
  } catch (error) {
    if (error instanceof HttpError) return error;
    throw new Error(`expected an HttpError, got ${(error as Error)?.constructor?.name}: ${(error as Error)?.message}`);
  }
  throw new Error('expected the archive to be refused');
}

// ---- a zip writer whose every field can lie ----

interface ZipEntrySpec {
  name: string | Buffer;
  data?: Buffer;
  method?: number;
  /** Overrides of what the headers declare. */
  size?: number;
  compressedSize?: number;
  crc?: number;
  flags?: number;
  unixMode?: number;
  localOffset?: number;
}

function zip(specs: ZipEntrySpec[], eocd: { count?: number; directoryOffset?: number; disk?: number } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const spec of specs) {
    const name = Buffer.isBuffer(spec.name) ? spec.name : Buffer.from(spec.name);
    const data = spec.data ?? Buffer.alloc(0);
    const method = spec.method ?? 0;
    const stored = method === 8 ? deflateRawSync(data) : data;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(spec.flags ?? 0x800, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(spec.crc ?? crc32(data), 14);
    local.writeUInt32LE(spec.compressedSize ?? stored.length, 18);
    local.writeUInt32LE(spec.size ?? data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(spec.flags ?? 0x800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(spec.crc ?? crc32(data), 16);
    central.writeUInt32LE(spec.compressedSize ?? stored.length, 20);
    central.writeUInt32LE(spec.size ?? data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((spec.unixMode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(spec.localOffset ?? offset, 42);
    locals.push(local, name, stored);
    centrals.push(central, name);
    offset += 30 + name.length + stored.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(eocd.disk ?? 0, 4);
  end.writeUInt16LE(eocd.count ?? specs.length, 8);
  end.writeUInt16LE(eocd.count ?? specs.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(eocd.directoryOffset ?? offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

const file = (path: string, text = 'x'): ArchiveEntry => ({ path, type: 'file', mode: 0o644, data: Buffer.from(text) });

/** A tar header block with its checksum recomputed after `edit`. */
function tarWith(entries: ArchiveEntry[], edit: (tar: Buffer) => void, fixChecksum = true): Buffer {
  const tar = writeTar(entries);
  edit(tar);
  if (fixChecksum) {
    tar.fill(' ', 148, 156);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += tar[i]!;
    tar.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  }
  return tar;
}

/** A raw tar entry (header + data), for types and fields writeTar never produces. */
function rawTarEntry(name: string, typeflag: string, data = Buffer.alloc(0), linkTarget = ''): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 100);
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
  header.write('00000000000\0', 136);
  header.write(typeflag, 156);
  header.write(linkTarget, 157, 100);
  header.write('ustar\0' + '00', 257);
  header.fill(' ', 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += header[i]!;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return Buffer.concat([header, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}
const tarOf = (...parts: Buffer[]) => Buffer.concat([...parts, Buffer.alloc(1024)]);
const pax = (records: Record<string, string>) =>
  Buffer.from(
    Object.entries(records)
      .map(([k, v]) => {
        const body = ` ${k}=${v}\n`;
        let length = body.length + 1;
        if (String(length).length + body.length !== length) length = String(length + 1).length + body.length;
        return `${length}${body}`;
      })
      .join(''),
  );

const good = Buffer.from('print("hello")\n'.repeat(50));
const validZip = zip([{ name: 'main.py', data: good, method: 8 }]);
const validTar = writeTar([file('main.py', 'print(1)'), { path: 'pkg', type: 'directory', mode: 0o755, data: Buffer.alloc(0) }]);
const validTgz = gzipSync(validTar);
const truncatedTgz = validTgz.subarray(0, validTgz.length - 20);
const flippedTgz = Buffer.from(validTgz);
flippedTgz[20] = flippedTgz[20]! ^ 0xff;
const lyingTrailerTgz = Buffer.from(validTgz);
lyingTrailerTgz.writeUInt32LE(0xfffffff0, lyingTrailerTgz.length - 4);

type Case = [name: string, bytes: () => Buffer, status: 400 | 413, reason: 'InvalidArchive' | 'UploadTooLarge', message?: RegExp];

const zipCases: Case[] = [
  [
    'a corrupt deflate stream',
    () => zip([{ name: 'main.py', data: good, method: 8 }]).fill(0xff, 30 + 7 + 3, 30 + 7 + 6),
    400,
    'InvalidArchive',
    /corrupt compressed data|CRC/,
  ],
  [
    'a zip bomb whose central directory lies about the size',
    () => zip([{ name: 'bomb.bin', data: Buffer.alloc(20 * 1024 * 1024), method: 8, size: 10 }]),
    400,
    'InvalidArchive',
    /more than the 10 bytes/,
  ],
  [
    'an honest bomb over the unpacked limit',
    () => zip([{ name: 'bomb.bin', data: Buffer.alloc(2 * 1024 * 1024), method: 8 }]),
    413,
    'UploadTooLarge',
  ],
  [
    'a local header offset out of range',
    () => zip([{ name: 'main.py', data: good, localOffset: 0x7ffffff0 }]),
    400,
    'InvalidArchive',
    /outside the archive/,
  ],
  [
    'a local header offset inside the archive but not at a header',
    () => zip([{ name: 'main.py', data: good, localOffset: 5 }]),
    400,
    'InvalidArchive',
    /corrupt local header/,
  ],
  [
    'declared sizes over the limit (refused before any read)',
    () => zip([{ name: 'main.py', data: good, compressedSize: 0x7fff0000, size: 0x7fff0000 }]),
    413,
    'UploadTooLarge',
  ],
  [
    'a data length past the end within the limits',
    () => zip([{ name: 'main.py', data: good, compressedSize: 900_000, size: 900_000 }]),
    400,
    'InvalidArchive',
    /outside the archive/,
  ],
  [
    'a central directory offset out of range',
    () => zip([{ name: 'main.py', data: good }], { directoryOffset: 0x7ffffff0 }),
    400,
    'InvalidArchive',
    /central directory lies outside/,
  ],
  ['an entry count larger than the directory', () => zip([{ name: 'main.py', data: good }], { count: 3 }), 400, 'InvalidArchive'],
  [
    'a zip cut in half (no end record)',
    () => validZip.subarray(0, validZip.length >> 1),
    400,
    'InvalidArchive',
    /no end of central directory/,
  ],
  [
    'a zip cut just before its end record',
    () => Buffer.concat([validZip.subarray(0, validZip.length - 22), validZip.subarray(validZip.length - 10)]),
    400,
    'InvalidArchive',
  ],
  ['an encrypted entry', () => zip([{ name: 'secret.py', data: good, flags: 0x801 }]), 400, 'InvalidArchive', /encrypted/],
  ['a zip64 archive', () => zip([{ name: 'main.py', data: good }], { count: 0xffff }), 400, 'InvalidArchive', /zip64/],
  ['a zip64 entry size', () => zip([{ name: 'main.py', data: good, size: 0xffffffff }]), 400, 'InvalidArchive', /zip64/],
  ['a multi-disk archive', () => zip([{ name: 'main.py', data: good }], { disk: 1 }), 400, 'InvalidArchive', /multi-disk/],
  [
    'an unsupported compression method (bzip2)',
    () => zip([{ name: 'main.py', data: good, method: 12 }]),
    400,
    'InvalidArchive',
    /compression method 12/,
  ],
  ['a CRC mismatch', () => zip([{ name: 'main.py', data: good, crc: 1234 }]), 400, 'InvalidArchive', /CRC/],
  [
    'a stored entry with two sizes',
    () => zip([{ name: 'main.py', data: good, size: good.length - 1 }]),
    400,
    'InvalidArchive',
    /two different sizes/,
  ],
  ['a name that is not UTF-8', () => zip([{ name: Buffer.from([0x61, 0xff, 0xfe]), data: good }]), 400, 'InvalidArchive', /not UTF-8/],
  [
    'duplicate paths',
    () =>
      zip([
        { name: 'a.py', data: good },
        { name: './a.py', data: good },
      ]),
    400,
    'InvalidArchive',
    /appears twice/,
  ],
  [
    'a file and a directory at one path',
    () =>
      zip([
        { name: 'a', data: good },
        { name: 'a/', unixMode: 0o040755 },
      ]),
    400,
    'InvalidArchive',
    /appears twice/,
  ],
  ['a name with a NUL', () => zip([{ name: 'a\0.py', data: good }]), 400, 'InvalidArchive', /NUL/],
  ['a name with a newline', () => zip([{ name: 'a\nb.py', data: good }]), 400, 'InvalidArchive', /control character/],
  ['a name with a CR', () => zip([{ name: 'a\rb.py', data: good }]), 400, 'InvalidArchive', /control character/],
  ['path traversal', () => zip([{ name: '../../evil.sh', data: good }]), 400, 'InvalidArchive', /escapes the upload root/],
  ['an absolute path', () => zip([{ name: '/etc/cron.d/x', data: good }]), 400, 'InvalidArchive', /absolute path/],
  [
    'a symlink out of the upload',
    () => zip([{ name: 'link', data: Buffer.from('../../etc/passwd'), unixMode: 0o120777 }]),
    400,
    'InvalidArchive',
    /points outside/,
  ],
  [
    'a file below a symlink',
    () =>
      zip([
        { name: 'link', data: Buffer.from('sub'), unixMode: 0o120777 },
        { name: 'link/x.py', data: good },
      ]),
    400,
    'InvalidArchive',
    /lies below symlink/,
  ],
  ['a character device', () => zip([{ name: 'tty', data: Buffer.alloc(0), unixMode: 0o020666 }]), 400, 'InvalidArchive', /special file/],
  [
    'more files than allowed',
    () => zip(Array.from({ length: 51 }, (_, i) => ({ name: `f${i}.py`, data: good }))),
    413,
    'UploadTooLarge',
    /more than 50 files/,
  ],
];

const tarCases: Case[] = [
  [
    'a tar cut inside an entry',
    () => writeTar([file('big.py', 'x'.repeat(5000))]).subarray(0, 2048),
    400,
    'InvalidArchive',
    /outside the archive|truncated/,
  ],
  [
    'a tar cut at a block boundary (no end blocks)',
    () => writeTar([file('a.py'), file('b.py')]).subarray(0, 1024),
    400,
    'InvalidArchive',
    /truncated/,
  ],
  ['a bad header checksum', () => tarWith([file('a.py')], (t) => t.write('b', 0), false), 400, 'InvalidArchive', /checksum/],
  [
    'a size field that is not octal',
    () => tarWith([file('a.py')], (t) => t.write('0000000009x\0', 124)),
    400,
    'InvalidArchive',
    /not an octal number/,
  ],
  [
    'a base-256 size field',
    () =>
      tarWith([file('a.py')], (t) => {
        t[124] = 0x80;
      }),
    400,
    'InvalidArchive',
    /base-256/,
  ],
  [
    'a size larger than the archive',
    () => tarWith([file('a.py')], (t) => t.write('77777777777\0', 124)),
    400,
    'InvalidArchive',
    /outside the archive/,
  ],
  ['a mode field that is not octal', () => tarWith([file('a.py')], (t) => t.write('rwxr-xr\0', 100)), 400, 'InvalidArchive', /mode/],
  [
    'a hard link',
    () => tarOf(rawTarEntry('a.py', '0', Buffer.from('x')), rawTarEntry('b.py', '1', Buffer.alloc(0), 'a.py')),
    400,
    'InvalidArchive',
    /hard link/,
  ],
  ['a character device', () => tarOf(rawTarEntry('tty', '3')), 400, 'InvalidArchive', /character device/],
  ['a block device', () => tarOf(rawTarEntry('sda', '4')), 400, 'InvalidArchive', /block device/],
  ['a FIFO', () => tarOf(rawTarEntry('pipe', '6')), 400, 'InvalidArchive', /FIFO/],
  ['a GNU sparse file', () => tarOf(rawTarEntry('sparse', 'S', Buffer.alloc(512))), 400, 'InvalidArchive', /unsupported tar entry/],
  [
    'a pax sparse file',
    () => tarOf(rawTarEntry('PaxHeader', 'x', pax({ 'GNU.sparse.major': '1' })), rawTarEntry('a', '0')),
    400,
    'InvalidArchive',
    /sparse/,
  ],
  [
    'a corrupt pax record',
    () => tarOf(rawTarEntry('PaxHeader', 'x', Buffer.from('99 path=a\n')), rawTarEntry('a', '0')),
    400,
    'InvalidArchive',
    /pax/,
  ],
  [
    'traversal in a pax path',
    () => tarOf(rawTarEntry('PaxHeader', 'x', pax({ path: '../../etc/passwd' })), rawTarEntry('a', '0')),
    400,
    'InvalidArchive',
    /escapes/,
  ],
  [
    'traversal in a GNU long name',
    () => tarOf(rawTarEntry('././@LongLink', 'L', Buffer.from(`${'../'.repeat(40)}etc/passwd\0`)), rawTarEntry('a', '0')),
    400,
    'InvalidArchive',
    /escapes/,
  ],
  [
    'a long name with no entry after it',
    () => tarOf(rawTarEntry('././@LongLink', 'L', Buffer.from('a.py\0'))),
    400,
    'InvalidArchive',
    /extended header has no entry/,
  ],
  ['an absolute path', () => tarOf(rawTarEntry('/etc/passwd', '0', Buffer.from('x'))), 400, 'InvalidArchive', /absolute/],
  [
    'a symlink out of the upload',
    () => tarOf(rawTarEntry('link', '2', Buffer.alloc(0), '../../../etc')),
    400,
    'InvalidArchive',
    /points outside/,
  ],
  ['an absolute symlink', () => tarOf(rawTarEntry('link', '2', Buffer.alloc(0), '/etc/shadow')), 400, 'InvalidArchive', /points outside/],
  [
    'a file written through an archive symlink',
    () => tarOf(rawTarEntry('d', '2', Buffer.alloc(0), '.'), rawTarEntry('d/x.py', '0', Buffer.from('x'))),
    400,
    'InvalidArchive',
    /lies below symlink/,
  ],
  [
    'a file below a file',
    () => tarOf(rawTarEntry('a', '0', Buffer.from('x')), rawTarEntry('a/b', '0', Buffer.from('y'))),
    400,
    'InvalidArchive',
    /lies below file/,
  ],
  ['a name with a newline', () => writeTar([file('evil\nname.py')]), 400, 'InvalidArchive', /control character/],
  ['a name with a CR', () => writeTar([file('evil\rname.py')]), 400, 'InvalidArchive', /control character/],
  [
    'a symlink target with a newline',
    () => writeTar([{ path: 'l', type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: 'a\nb' }]),
    400,
    'InvalidArchive',
    /unusable target/,
  ],
  ['duplicate files', () => writeTar([file('a.py'), file('a.py')]), 400, 'InvalidArchive', /appears twice/],
  ['a path component over 255 bytes', () => writeTar([file(`${'n'.repeat(300)}.py`)]), 400, 'InvalidArchive', /longer than 255/],
  ['more bytes than allowed', () => writeTar([file('big.bin', 'x'.repeat(limits.maxBytes + 1))]), 413, 'UploadTooLarge'],
  ['more files than allowed', () => writeTar(Array.from({ length: 51 }, (_, i) => file(`f${i}.py`))), 413, 'UploadTooLarge'],
];

const gzipCases: Case[] = [
  ['a truncated gzip', () => truncatedTgz, 400, 'InvalidArchive', /corrupt gzip/],
  ['a gzip with a flipped byte', () => flippedTgz, 400, 'InvalidArchive'],
  ['a gzip whose trailer lies about the size', () => lyingTrailerTgz, 400, 'InvalidArchive', /corrupt gzip/],
  ['a gzip of something that is not a tar', () => gzipSync(Buffer.from('hello '.repeat(200))), 400, 'InvalidArchive'],
  ['a gzip bomb', () => gzipSync(Buffer.alloc(50 * 1024 * 1024)), 413, 'UploadTooLarge'],
  ['a gzip of a tar over the limit', () => gzipSync(writeTar([file('big.bin', 'x'.repeat(limits.maxBytes + 1))])), 413, 'UploadTooLarge'],
  ['bytes that are no archive at all', () => Buffer.from('just some text, not an archive'), 400, 'InvalidArchive', /unrecognised archive/],
  ['an empty zip (end record only)', () => zip([]), 400, 'InvalidArchive', /unrecognised archive/],
];

for (const [title, cases] of [
  ['hostile zip archives', zipCases],
  ['hostile tar archives', tarCases],
  ['hostile gzip streams', gzipCases],
] as const) {
  const test = suite(title);
  for (const [name, bytes, status, reason, message] of cases) {
    test(`${name}: ${status} ${reason}`, () => {
      const error = refusal(bytes());
      assert.is(error.status, status, error.message);
      assert.is(reasonOf(error), reason, error.message);
      if (message) assert.match(error.message, message);
      assert.not.match(error.message, /[\n\r]/, 'messages never carry raw newlines from names');
    });
  }
  test.run();
}

const sound = suite('sound archives still pass');
sound('a deflated zip, a tar and a tar.gz', () => {
  assert.is(readArchive(validZip, limits)[0]!.data.toString(), good.toString());
  assert.equal(
    readArchive(validTar, limits).map((e) => e.path),
    ['main.py', 'pkg/'],
  );
  assert.equal(
    readArchive(validTgz, limits).map((e) => e.path),
    ['main.py', 'pkg/'],
  );
});
sound('a symlink inside the upload and a long link target survive normalisation', () => {
  const target = `${'deep/'.repeat(30)}main.py`;
  const entries: ArchiveEntry[] = [
    file('main.py'),
    { path: 'a/link', type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: `../${target}` },
  ];
  const back = readArchive(normalizeUpload(entries, limits).archive, limits);
  assert.is(back.find((e) => e.path === 'a/link')!.linkTarget, `../${target}`);
});
sound('pax paths and GNU long names are read', () => {
  const long = `${'d'.repeat(120)}/f.py`;
  const tar = tarOf(
    rawTarEntry('PaxHeader', 'x', pax({ path: 'from-pax.py' })),
    rawTarEntry('ignored', '0', Buffer.from('p')),
    rawTarEntry('././@LongLink', 'L', Buffer.from(`${long}\0`)),
    rawTarEntry('cut', '0', Buffer.from('l')),
  );
  assert.equal(
    readArchive(tar, limits).map((e) => [e.path, e.data.toString()]),
    [
      ['from-pax.py', 'p'],
      [long, 'l'],
    ],
  );
});
sound('a large upload deflated in segments is one valid gzip member', () => {
  const big = Buffer.alloc(20 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  const upload = normalizeUpload([file('big.bin'), { ...file('big.bin'), path: 'data.bin', data: big }], {
    maxBytes: 64 * 1024 * 1024,
    maxFiles: 10,
  });
  const back = readArchive(upload.archive, { maxBytes: 64 * 1024 * 1024, maxFiles: 10 });
  assert.ok(back.find((e) => e.path === 'data.bin')!.data.equals(big));
});
sound('tars made by GNU tar (gnu, oldgnu, posix) and Python (gnu, pax) read the same, long names and links included', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-formats-'));
  try {
    const deep = 'd'.repeat(120);
    mkdirSync(join(dir, 'src', 'dir', 'sub'), { recursive: true });
    mkdirSync(join(dir, 'src', deep));
    writeFileSync(join(dir, 'src', 'dir', 'sub', 'a.txt'), 'hi');
    writeFileSync(join(dir, 'src', deep, 'f.txt'), 'deep');
    symlinkSync('dir/sub/a.txt', join(dir, 'src', 'link'));
    const archives: Buffer[] = ['gnu', 'oldgnu', 'posix'].map((format) =>
      execFileSync('tar', [`--format=${format}`, '-cf', '-', '-C', join(dir, 'src'), '.']),
    );
    for (const format of ['GNU_FORMAT', 'PAX_FORMAT']) {
      archives.push(
        execFileSync('python3', [
          '-c',
          `import io,sys,tarfile\nb=io.BytesIO()\nwith tarfile.open(fileobj=b,mode="w:gz",format=tarfile.${format}) as t: t.add(sys.argv[1], arcname=".")\nsys.stdout.buffer.write(b.getvalue())`,
          join(dir, 'src'),
        ]),
      );
    }
    for (const archive of archives) {
      const entries = validateEntries(readArchive(archive, limits), limits);
      const byPath = new Map(entries.map((e) => [e.path, e]));
      assert.is(byPath.get(`${deep}/f.txt`)?.data.toString(), 'deep');
      assert.is(byPath.get('dir/sub/a.txt')?.data.toString(), 'hi');
      assert.is(byPath.get('link')?.linkTarget, 'dir/sub/a.txt');
      assert.is(byPath.get('dir/sub')?.type, 'directory');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
sound.run();
