import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BadRequest, PayloadTooLarge } from '../../lib/http/errors.ts';
import {
  normalizeUpload,
  readArchive,
  readTar,
  safeRelativePath,
  validateEntries,
  writeTar,
  type ArchiveEntry,
} from '../../lib/uploads/archive.ts';

const limits = { maxBytes: 10 * 1024 * 1024, maxFiles: 1000 };
const file = (path: string, text = 'x'): ArchiveEntry => ({ path, type: 'file', mode: 0o644, data: Buffer.from(text) });

const paths = suite('upload paths');
paths('normalises harmless paths', () => {
  assert.is(safeRelativePath('./a/b.py'), 'a/b.py');
  assert.is(safeRelativePath('a//b/'), 'a/b');
});
for (const bad of ['../etc/passwd', '/etc/passwd', 'a/../../x', 'C:/windows', '..']) {
  paths(`rejects ${bad}`, () =>
    assert.throws(
      () => safeRelativePath(bad),
      (e: unknown) => e instanceof BadRequest,
    ),
  );
}
paths('rejects symlinks that leave the root', () => {
  assert.throws(
    () => validateEntries([{ path: 'link', type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: '../../etc' }], limits),
    /points outside/,
  );
  assert.throws(
    () => validateEntries([{ path: 'link', type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: '/etc/passwd' }], limits),
    /points outside/,
  );
  assert.is(
    validateEntries([{ path: 'a/link', type: 'symlink', mode: 0o777, data: Buffer.alloc(0), linkTarget: '../b' }], limits).length,
    1,
  );
});
paths('enforces size and file-count limits', () => {
  assert.throws(
    () => validateEntries([file('a', 'x'.repeat(11))], { maxBytes: 10, maxFiles: 5 }),
    (e: unknown) => e instanceof PayloadTooLarge,
  );
  assert.throws(
    () => validateEntries([file('a'), file('b'), file('c')], { maxBytes: 100, maxFiles: 2 }),
    (e: unknown) => e instanceof PayloadTooLarge,
  );
});
paths.run();

const formats = suite('archive formats');
formats('our tar round-trips, long names included', () => {
  const long = `${'d'.repeat(80)}/${'f'.repeat(60)}.py`;
  const entries = [file('main.py', 'print(1)'), file(long, 'long')];
  const back = readTar(writeTar(entries), limits);
  assert.equal(
    back.map((e) => [e.path, e.data.toString()]),
    [
      ['main.py', 'print(1)'],
      [long, 'long'],
    ],
  );
});
formats('GNU tar reads what we write', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-tar-'));
  const { archive } = normalizeUpload(
    [file('pkg/mod.py', 'x = 1'), { path: 'run.sh', type: 'file', mode: 0o755, data: Buffer.from('echo hi') }],
    limits,
  );
  writeFileSync(join(dir, 'code.tgz'), archive);
  mkdirSync(join(dir, 'out'));
  execFileSync('tar', ['-xzf', join(dir, 'code.tgz'), '-C', join(dir, 'out')]);
  assert.is(readFileSync(join(dir, 'out/pkg/mod.py'), 'utf8'), 'x = 1');
  assert.is(
    execFileSync('stat', ['-c', '%a', join(dir, 'out/run.sh')])
      .toString()
      .trim(),
    '755',
  );
});
formats('reads tar.gz made by GNU tar, with a symlink', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-tar-'));
  mkdirSync(join(dir, 'src/sub'), { recursive: true });
  writeFileSync(join(dir, 'src/sub/a.txt'), 'hello');
  symlinkSync('sub/a.txt', join(dir, 'src/link'));
  execFileSync('tar', ['-czf', join(dir, 'x.tgz'), '-C', join(dir, 'src'), '.']);
  const entries = validateEntries(readArchive(readFileSync(join(dir, 'x.tgz')), limits), limits);
  assert.ok(entries.some((e) => e.path === 'sub/a.txt' && e.data.toString() === 'hello'));
  assert.ok(entries.some((e) => e.path === 'link' && e.type === 'symlink'));
});
formats('reads zip archives as the upstream CLI makes them (python zipfile)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-zip-'));
  execFileSync('python3', [
    '-c',
    `
import zipfile
with zipfile.ZipFile("${dir}/c.zip", "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("main.py", "print('hi')\\n" * 100)
    z.writestr("pkg/", "")
    z.writestr("pkg/x.txt", "x")
`,
  ]);
  const entries = readArchive(readFileSync(join(dir, 'c.zip')), limits);
  assert.equal(entries.map((e) => e.path).sort(), ['main.py', 'pkg/', 'pkg/x.txt']);
  assert.is(entries.find((e) => e.path === 'main.py')!.data.toString(), "print('hi')\n".repeat(100));
});
formats('refuses a zip with path traversal', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-zip-'));
  execFileSync('python3', [
    '-c',
    `
import zipfile
with zipfile.ZipFile("${dir}/evil.zip", "w") as z:
    z.writestr("../../evil.sh", "rm -rf /")
`,
  ]);
  assert.throws(() => normalizeUpload(readArchive(readFileSync(join(dir, 'evil.zip')), limits), limits), /escapes the upload root/);
});
formats('a gzip bomb stops at the limit', () => {
  const bomb = gzipSync(Buffer.alloc(50 * 1024 * 1024));
  assert.throws(
    () => readArchive(bomb, { maxBytes: 1024 * 1024, maxFiles: 10 }),
    (e: unknown) => e instanceof PayloadTooLarge,
  );
});
formats('normalizeUpload yields a gzip tar and a digest', () => {
  const result = normalizeUpload([file('a.py', 'print(1)')], limits);
  assert.is(result.files, 1);
  assert.is(result.sha256.length, 64);
  assert.ok(gunzipSync(result.archive).length >= 1024);
});
formats.run();
