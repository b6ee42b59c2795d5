import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BadRequest, PayloadTooLarge } from '../../lib/http/errors.ts';
import { readTar as readTarRaw, writeTar, type ArchiveEntry } from '../../lib/uploads/archive.ts';
import { TarSanitizer } from '../../lib/uploads/tar-stream.ts';

/** readTar keeps a directory's trailing slash; normalizeUpload drops it later. */
const readTar = (tar: Buffer, lim: typeof limits) => readTarRaw(tar, lim).map((e) => ({ ...e, path: e.path.replace(/\/$/, '') }));
const limits = { maxBytes: 10 * 1024 * 1024, maxFiles: 1000 };
const file = (path: string, text = 'x', mode = 0o644): ArchiveEntry => ({ path, type: 'file', mode, data: Buffer.from(text) });
const dir = (path: string): ArchiveEntry => ({ path, type: 'directory', mode: 0o755, data: Buffer.alloc(0) });
const link = (path: string, linkTarget: string): ArchiveEntry => ({
  path,
  type: 'symlink',
  mode: 0o777,
  data: Buffer.alloc(0),
  linkTarget,
});

/** Feeds `tar` in chunks of `chunk` bytes (headers and data split anywhere) and collects the output. */
async function sanitize(tar: Buffer, chunk = 7, lim = limits): Promise<{ out: Buffer; sanitizer: TarSanitizer }> {
  const sanitizer = new TarSanitizer(lim);
  const pieces: Buffer[] = [];
  const source = Readable.from(
    (function* () {
      for (let i = 0; i < tar.length; i += chunk) yield tar.subarray(i, i + chunk);
    })(),
  );
  await pipeline(source, sanitizer, async (output: AsyncIterable<Buffer>) => {
    for await (const piece of output) pieces.push(piece);
  });
  return { out: Buffer.concat(pieces), sanitizer };
}

const refusal = (kind: typeof BadRequest | typeof PayloadTooLarge, pattern: RegExp) => (error: unknown) =>
  error instanceof kind && pattern.test((error as Error).message);

const rewrite = suite('a streamed tar is rewritten from its checked fields');
rewrite('files, directories, symlinks and long names survive any chunking; the output is whole records', async () => {
  const long = `${'d'.repeat(120)}/${'f'.repeat(150)}.py`;
  const entries = [
    dir('src'),
    file('src/a.py', 'print(1)\n'),
    file('run.sh', '#!/bin/sh\n', 0o755),
    link('src/b', 'a.py'),
    file(long, 'y'.repeat(1000)),
    file('empty', ''),
  ];
  for (const chunk of [1, 7, 511, 512, 513, 65536]) {
    const { out, sanitizer } = await sanitize(writeTar(entries), chunk);
    assert.is(out.length % 10240, 0, 'padded to a whole tar record');
    const read = readTar(out, limits);
    assert.equal(
      read.map((e) => [e.path, e.type, e.mode, e.data.toString(), e.linkTarget || undefined]),
      entries.map((e) => [e.path, e.type, e.mode, e.data.toString(), e.linkTarget]),
    );
    const summary = sanitizer.summary();
    assert.is(summary.files, 5);
    assert.is(summary.bytes, 9 + 10 + 1000);
    assert.is(summary.archiveBytes, out.length);
  }
});
rewrite('what GNU tar writes (pax, owners, times, a ./ root) comes out clean', async () => {
  const root = mkdtempSync(join(tmpdir(), 'kbatch-tar-stream-'));
  try {
    mkdirSync(join(root, 'pkg'));
    writeFileSync(join(root, 'pkg', 'ünïcode.py'), 'x = 1\n');
    symlinkSync('pkg/ünïcode.py', join(root, 'alias.py'));
    const tar = execFileSync('tar', ['--format=pax', '-cf', '-', '-C', root, '.']);
    const { out } = await sanitize(tar, 1000);
    const read = readTar(out, limits);
    assert.equal(read.map((e) => e.path).sort(), ['alias.py', 'pkg', 'pkg/ünïcode.py']);
    assert.not.ok(out.includes(Buffer.from('mtime=')), 'no pax record is passed on');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
rewrite('a repeated directory is written once', async () => {
  const { out } = await sanitize(writeTar([dir('a'), file('a/x'), dir('a')]));
  assert.equal(
    readTar(out, limits).map((e) => e.path),
    ['a', 'a/x'],
  );
});
rewrite.run();

const refuse = suite('a streamed tar is refused at the first bad entry');
for (const [what, entries, pattern] of [
  ['a path climbing out', [file('ok'), file('../../etc/passwd')], /escapes the upload root/],
  ['an absolute path', [file('/etc/passwd')], /absolute path/],
  ['a symlink pointing out', [link('l', '../../etc')], /points outside/],
  ['a file below a symlink', [link('l', 'd'), file('l/x')], /lies below symlink/],
  ['a symlink over a directory already used', [file('d/x'), link('d', 'e')], /lies below symlink/],
  ['the same file twice', [file('a'), file('a')], /appears twice/],
] as [string, ArchiveEntry[], RegExp][]) {
  refuse(what, async () => {
    await sanitize(writeTar(entries)).then(
      () => assert.unreachable('accepted'),
      (error: unknown) => assert.ok(refusal(BadRequest, pattern)(error), String(error)),
    );
  });
}
refuse('a hard link', async () => {
  const tar = writeTar([file('a')]);
  // Turn the entry into a hard link (typeflag 1) and fix the checksum.
  tar[156] = '1'.charCodeAt(0);
  tar.fill(' ', 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += tar[i]!;
  tar.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  await sanitize(tar).then(
    () => assert.unreachable('accepted'),
    (error: unknown) => assert.ok(refusal(BadRequest, /hard link/)(error), String(error)),
  );
});
refuse('more bytes than allowed is a 413 before the rest is read', async () => {
  const big = writeTar([file('a', 'x'.repeat(600)), file('b', 'y'.repeat(600))]);
  await sanitize(big, 100, { maxBytes: 1000, maxFiles: 10 }).then(
    () => assert.unreachable('accepted'),
    (error: unknown) => assert.ok(refusal(PayloadTooLarge, /bytes/)(error), String(error)),
  );
});
refuse('more files than allowed is a 413', async () => {
  await sanitize(writeTar([file('a'), file('b'), file('c')]), 512, { maxBytes: 1000, maxFiles: 2 }).then(
    () => assert.unreachable('accepted'),
    (error: unknown) => assert.ok(refusal(PayloadTooLarge, /files/)(error), String(error)),
  );
});
refuse('a tar cut short', async () => {
  const tar = writeTar([file('a', 'x'.repeat(2000))]);
  await sanitize(tar.subarray(0, 1024)).then(
    () => assert.unreachable('accepted'),
    (error: unknown) => assert.ok(refusal(BadRequest, /truncated/)(error), String(error)),
  );
});
refuse('a huge GNU long-name record', async () => {
  const tar = writeTar([file('x'.repeat(100 * 1024))]);
  await sanitize(tar).then(
    () => assert.unreachable('accepted'),
    (error: unknown) => assert.ok(refusal(BadRequest, /extended header/)(error), String(error)),
  );
});
refuse('not a tar', async () => {
  await sanitize(Buffer.alloc(2048, 7)).then(
    () => assert.unreachable('accepted'),
    (error: unknown) => assert.ok(refusal(BadRequest, /checksum/)(error), String(error)),
  );
});
refuse.run();
