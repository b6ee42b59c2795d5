import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildCodeArchive, collectCodeEntries, multipartBody, packCodeArchive, progressStream } from '../../cli/upload.ts';
import { UsageError } from '../../cli/errors.ts';
import { materialize, readArchive } from '../../lib/uploads/archive.ts';
import { parseMultipart } from '../../lib/uploads/multipart.ts';
import type { IncomingRequest } from '../../lib/http/router.ts';

const limits = { maxBytes: 1e8, maxFiles: 1e4 };

function project(): string {
  const root = mkdtempSync(join(tmpdir(), 'kbatch-cli-code-'));
  const files: Record<string, string> = {
    'main.py': 'print(1)\n',
    'pkg/util.py': 'X = 1\n',
    'pkg/__pycache__/util.cpython-312.pyc': 'bytecode',
    '.git/HEAD': 'ref: refs/heads/main\n',
    'notebooks/.ipynb_checkpoints/a-checkpoint.ipynb': '{}',
    'notebooks/a.ipynb': '{}',
    'web/node_modules/left-pad/index.js': 'module.exports = 1',
    'web/app.js': 'console.log(1)',
    '.env.example': 'A=1\n',
    'data/deep/nested/file.csv': 'a,b\n1,2\n',
  };
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  mkdirSync(join(root, 'empty'));
  writeFileSync(join(root, 'run.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(join(root, 'run.sh'), 0o755);
  return root;
}

const collecting = suite('collecting --code');
collecting('a directory my-dir travels under its own name (at /code/my-dir/), sorted, without ignored directories', () => {
  const root = project();
  const top = basename(root);
  const { entries, skipped } = collectCodeEntries(root);
  assert.equal([entries[0]!.path, entries[0]!.type], [top, 'directory'], 'the directory itself is the top entry');
  const files = entries.filter((e) => e.type === 'file').map((e) => e.path);
  assert.equal(
    files,
    ['.env.example', 'data/deep/nested/file.csv', 'main.py', 'notebooks/a.ipynb', 'pkg/util.py', 'run.sh', 'web/app.js'].map(
      (f) => `${top}/${f}`,
    ),
  );
  assert.equal(
    skipped.sort(),
    ['.git/', 'notebooks/.ipynb_checkpoints/', 'pkg/__pycache__/', 'web/node_modules/'].map((f) => `${top}/${f}`),
  );
  assert.ok(
    entries.some((e) => e.type === 'directory' && e.path === `${top}/empty`),
    'empty directories are kept',
  );
  assert.is(entries.find((e) => e.path === `${top}/run.sh`)!.mode, 0o755, 'the executable bit survives');
});
collecting('a single file travels under its own name', () => {
  const root = project();
  const { entries } = collectCodeEntries(join(root, 'pkg', 'util.py'));
  assert.equal(
    entries.map((e) => [e.path, materialize(e).data.toString()]),
    [['util.py', 'X = 1\n']],
  );
});
collecting('symlinks inside the tree stay links; links to files outside are copied; others are skipped', () => {
  const root = project();
  const outside = mkdtempSync(join(tmpdir(), 'kbatch-cli-outside-'));
  writeFileSync(join(outside, 'shared.txt'), 'shared');
  mkdirSync(join(outside, 'dir'));
  symlinkSync('main.py', join(root, 'link.py'));
  symlinkSync(join(outside, 'shared.txt'), join(root, 'shared.txt'));
  symlinkSync(join(outside, 'dir'), join(root, 'outside-dir'));
  symlinkSync('../nowhere', join(root, 'dangling'));
  const top = basename(root);
  const { entries, skipped } = collectCodeEntries(root);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  assert.equal([byPath.get(`${top}/link.py`)!.type, byPath.get(`${top}/link.py`)!.linkTarget], ['symlink', 'main.py']);
  assert.equal([byPath.get(`${top}/shared.txt`)!.type, materialize(byPath.get(`${top}/shared.txt`)!).data.toString()], ['file', 'shared']);
  assert.ok(skipped.includes(`${top}/outside-dir`) && skipped.includes(`${top}/dangling`));
});
collecting('a missing path is a usage error', () => {
  assert.throws(
    () => collectCodeEntries('/no/such/kbatch/path'),
    (e: unknown) => e instanceof UsageError,
  );
});
collecting('a directory with nothing to upload is a usage error', () => {
  const root = mkdtempSync(join(tmpdir(), 'kbatch-cli-code-'));
  mkdirSync(join(root, '.git'));
  writeFileSync(join(root, '.git', 'HEAD'), 'x');
  assert.throws(() => buildCodeArchive(root), /contains no files/);
});
collecting.run();

const archives = suite('the code archive');
archives('is a tar.gz the server unpacks to the same tree', () => {
  const root = project();
  const code = buildCodeArchive(root);
  assert.is(code.archive[0], 0x1f);
  assert.is(code.files, 7);
  const back = readArchive(code.archive, limits);
  const files = Object.fromEntries(back.filter((e) => e.type === 'file').map((e) => [e.path, e.data.toString()]));
  assert.is(files[`${basename(root)}/data/deep/nested/file.csv`], 'a,b\n1,2\n');
  assert.is(files[`${basename(root)}/main.py`], 'print(1)\n');
  assert.not.ok(Object.keys(files).some((p) => p.includes('node_modules') || p.includes('.git/')));
});
archives('is reproducible', () => {
  const root = project();
  assert.ok(buildCodeArchive(root).archive.equals(buildCodeArchive(root).archive));
});
archives.run();

const multipart = suite('the multipart body');
multipart('is what the server parses: a spec field and an archive part', async () => {
  const root = project();
  const code = buildCodeArchive(root);
  const spec = { name: 'hello', image: 'python:3.12', command: ['python', 'main.py'] };
  const body = multipartBody(
    { spec: JSON.stringify(spec) },
    { field: 'archive', filename: 'code.tar.gz', contentType: 'application/gzip', data: code.archive },
  );
  let progress = 0;
  const stream = progressStream(body.parts, (sent) => (progress = sent));
  const req = new PassThrough() as unknown as IncomingRequest;
  req.headers = { 'content-type': body.contentType, 'content-length': String(body.length) };
  stream.pipe(req as unknown as PassThrough);
  const parsed = await parseMultipart(req, limits);
  const entries = readArchive(parsed.parts[0]!.data ?? readFileSync(parsed.parts[0]!.path!), limits);
  await parsed.spool.dispose();
  assert.equal(JSON.parse(parsed.fields.spec!), spec);
  assert.is(parsed.fileParts, 1);
  assert.ok(entries.some((e) => e.path === `${basename(root)}/pkg/util.py`));
  assert.is(progress, body.length, 'progress reaches the full length');
});
multipart('progress is reported in chunks as the body is read', async () => {
  const big = Buffer.alloc(300 * 1024, 7);
  const seen: number[] = [];
  let received = 0;
  for await (const chunk of progressStream([Buffer.from('head'), big], (sent) => seen.push(sent))) received += (chunk as Buffer).length;
  assert.is(received, big.length + 4);
  assert.ok(seen.length >= 5, `several progress steps (${seen.length})`);
  assert.is(seen[seen.length - 1], big.length + 4);
  assert.ok(
    seen.every((v, i) => i === 0 || v > seen[i - 1]!),
    'monotonic',
  );
});
multipart('code packed to a file is sent from the file: same tree, and the temporary file goes with dispose', async () => {
  const root = project();
  writeFileSync(join(root, 'weights.bin'), Buffer.alloc(3 * 1024 * 1024, 9));
  const packed = await packCodeArchive(root);
  assert.is(statSync(packed.path).mode & 0o777, 0o600);
  assert.is(packed.files, 8);
  assert.equal(
    readArchive(readFileSync(packed.path), limits).map((e) => e.path),
    readArchive(buildCodeArchive(root).archive, limits).map((e) => e.path),
  );
  const body = multipartBody({ spec: '{}' }, { field: 'archive', filename: 'code.tar.gz', contentType: 'application/gzip', data: packed });
  const sent: Buffer[] = [];
  for await (const chunk of progressStream(body.parts, () => undefined)) sent.push(chunk as Buffer);
  assert.is(Buffer.concat(sent).length, body.length);
  assert.ok(Buffer.concat(sent).includes(readFileSync(packed.path)));
  await packed.dispose();
  assert.not.ok(existsSync(dirname(packed.path)));
});
multipart.run();
