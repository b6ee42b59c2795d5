import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { KbatchApi } from '../../cli/api.ts';
import { runCli } from '../../cli/app.ts';
import { outputsTable, progressText } from '../../cli/commands/outputs.ts';
import { downloadArchive, downloadFile, PartFile } from '../../cli/download.ts';
import { safeOutputPath } from '../../cli/extract.ts';
import type { FetchLike } from '../../cli/http.ts';
import { readTarEntries } from '../../cli/tar-reader.ts';
import type { OutputList } from '../../lib/contract.ts';
import { writeHeader } from '../../lib/uploads/archive.ts';
import { answer, bytes, scripted } from './cli-fakes.ts';

const scratch = mkdtempSync(join(tmpdir(), 'kbatch-cli-outputs-'));
process.once('exit', () => rmSync(scratch, { recursive: true, force: true }));
const base = 'http://kbatch.test/services/kbatch/';
const noSleep = async () => {};

async function kbatch(argv: string[], fetch?: FetchLike) {
  let stdout = '';
  let stderr = '';
  const binary: Buffer[] = [];
  const stream = new PassThrough();
  stream.on('data', (chunk: Buffer) => binary.push(chunk));
  const code = await runCli(argv, {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env: { XDG_CONFIG_HOME: mkdtempSync(join(scratch, 'config-')), KBATCH_URL: base },
    fetch,
    stdoutStream: stream,
  });
  return { code, stdout, stderr, binary: () => Buffer.concat(binary) };
}

const dir = (name: string) => mkdtempSync(join(scratch, `${name}-`));

const list: OutputList = {
  job: 'sweep-x7k2p',
  files: [
    { path: 'output-0.ipynb', size: 2048, modified: '2026-11-26T03:10:05.123Z' },
    { path: 'results/metrics.csv', size: 5 * 1024 * 1024, modified: '2026-11-26T03:11:00.000Z' },
  ],
  totalBytes: 2048 + 5 * 1024 * 1024,
};

// ---------------------------------------------------------------------------------------------
const listing = suite('kbatch job outputs NAME --list');
listing('a table of PATH, SIZE and MODIFIED with human sizes, then the count and total', () => {
  assert.is(
    outputsTable(list),
    [
      'PATH                 SIZE     MODIFIED',
      'output-0.ipynb       2.0 KiB  2026-11-26T03:10:05Z',
      'results/metrics.csv  5.0 MiB  2026-11-26T03:11:00Z',
      '2 files, 5.0 MiB',
      '',
    ].join('\n'),
  );
});
listing('asks the outputs path of the contract and prints the table', async () => {
  const { fetch, urls, methods } = scripted([answer(200, list)]);
  const r = await kbatch(['job', 'outputs', 'sweep-x7k2p', '--list'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.equal(methods, ['GET']);
  assert.is(urls[0], `${base}api/v1/jobs/sweep-x7k2p/outputs`);
  assert.match(r.stdout, /^results\/metrics\.csv\s+5\.0 MiB/m);
});
listing('-o json prints the OutputList as the server sent it', async () => {
  const { fetch } = scripted([answer(200, list)]);
  const r = await kbatch(['job', 'outputs', 'sweep-x7k2p', '-o', 'json'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout), list);
});
listing('a job with no outputs says so (on stderr, exit 0)', async () => {
  const { fetch } = scripted([answer(200, { job: 'j', files: [], totalBytes: 0 })]);
  const r = await kbatch(['job', 'outputs', 'j', '--list'], fetch);
  assert.is(r.code, 0);
  assert.is(r.stdout, '');
  assert.is(r.stderr, 'Job j has no outputs.\n');
});
listing('a 404 names the job and exits 1', async () => {
  const { fetch } = scripted([answer(404, { detail: 'job gone not found', status: 404, reason: 'NotFound' })]);
  const r = await kbatch(['job', 'outputs', 'gone', '--list'], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^kbatch: outputs of job gone not found \(HTTP 404: job gone not found\)/);
});
listing('--list with a PATH or --dest is a usage error', async () => {
  assert.is((await kbatch(['job', 'outputs', 'j', 'a.txt', '--list'])).code, 2);
  assert.is((await kbatch(['job', 'outputs', 'j', '--list', '--dest', 'x'])).code, 2);
});

// ---------------------------------------------------------------------------------------------
const single = suite('kbatch job outputs NAME PATH: one file, resumable');
const content = Buffer.from('0123456789');
single('saves DEST/<basename of PATH> via a .part renamed at the end', async () => {
  const dest = dir('single');
  const { fetch, urls, headers } = scripted([bytes(200, [content.subarray(0, 4), content.subarray(4)], { 'content-length': '10' })]);
  const r = await kbatch(['job', 'outputs', 'j', 'results/a b.csv', '--dest', dest], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(urls[0], `${base}api/v1/jobs/j/outputs/file?path=results%2Fa%20b.csv`);
  assert.not.ok(headers[0]!.range, 'a fresh download asks for the whole file');
  assert.equal(readFileSync(join(dest, 'a b.csv')), content);
  assert.equal(readdirSync(dest), ['a b.csv']);
  assert.is(r.stdout, `downloaded results/a b.csv (10 B) to ${join(dest, 'a b.csv')}\n`);
});
/** A download through the API with fakes; `overlapBytes` 2 so the Range headers stay readable. */
function fileDownload(fetch: FetchLike, dest: string, extra: { notices?: string[]; reasons?: string[] } = {}) {
  return downloadFile(KbatchApi.at(base, 't', fetch), 'j', 'a.bin', new PartFile(join(dest, 'a.bin')), {
    sleep: noSleep,
    overlapBytes: 2,
    notice: (text) => extra.notices?.push(text),
    onReconnect: (_, reason) => extra.reasons?.push(reason),
  });
}
single(
  'a connection dropped mid-body resumes with a Range (from a little before the end, checked) and the file comes out whole',
  async () => {
    const dest = dir('resume');
    const { fetch, headers } = scripted([
      bytes(200, [content.subarray(0, 4)], { 'content-length': '10' }, { cut: true }),
      bytes(206, [content.subarray(2)], { 'content-range': 'bytes 2-9/10', 'content-length': '8' }),
    ]);
    const reasons: string[] = [];
    assert.is(await fileDownload(fetch, dest, { reasons }), 10);
    assert.is(headers[1]!.range, 'bytes=2-', 'the 2 overlapping bytes are asked again');
    assert.equal(readFileSync(join(dest, 'a.bin')), content);
    assert.not.ok(existsSync(join(dest, 'a.bin.part')));
    assert.is(reasons.length, 1);
  },
);
single('a rerun finding a .part resumes from it', async () => {
  const dest = dir('rerun');
  writeFileSync(join(dest, 'a.bin.part'), content.subarray(0, 6));
  const { fetch, headers } = scripted([bytes(206, [content.subarray(4)], { 'content-range': 'bytes 4-9/10' })]);
  await fileDownload(fetch, dest);
  assert.is(headers[0]!.range, 'bytes=4-');
  assert.equal(readFileSync(join(dest, 'a.bin')), content);
  assert.equal(readdirSync(dest), ['a.bin']);
});
single('the command resumes a .part with the default overlap of 64 KiB', async () => {
  const dest = dir('rerun-cli');
  const file = randomBytes(200 * 1024);
  writeFileSync(join(dest, 'a.bin.part'), file.subarray(0, 100 * 1024));
  const from = 100 * 1024 - 64 * 1024;
  const { fetch, headers } = scripted([
    bytes(206, [file.subarray(from)], { 'content-range': `bytes ${from}-${file.length - 1}/${file.length}` }),
  ]);
  const r = await kbatch(['job', 'outputs', 'j', 'a.bin', '--dest', dest], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(headers[0]!.range, `bytes=${from}-`);
  assert.equal(readFileSync(join(dest, 'a.bin')), file);
});
single("a .part from another file of that name (another job's) is caught and started over", async () => {
  const dest = dir('other');
  writeFileSync(join(dest, 'a.bin.part'), Buffer.from('abcdef'));
  const { fetch, headers } = scripted([
    bytes(206, [content.subarray(4)], { 'content-range': 'bytes 4-9/10' }),
    bytes(200, [content], { 'content-length': '10' }),
  ]);
  const notices: string[] = [];
  await fileDownload(fetch, dest, { notices });
  assert.is(headers[0]!.range, 'bytes=4-');
  assert.not.ok(headers[1]!.range);
  assert.equal(readFileSync(join(dest, 'a.bin')), content);
  assert.match(notices[0]!, /does not match a\.bin on the server/);
});
single('a server that ignores the Range (200, whole file) starts the file over', async () => {
  const dest = dir('norange');
  writeFileSync(join(dest, 'a.bin.part'), Buffer.from('stale!'));
  const { fetch } = scripted([bytes(200, [content], { 'content-length': '10' })]);
  const notices: string[] = [];
  await fileDownload(fetch, dest, { notices });
  assert.equal(readFileSync(join(dest, 'a.bin')), content);
  assert.match(notices[0]!, /did not resume the download; starting over/);
});
single('a 416 (the .part is longer than the file, which changed) starts over', async () => {
  const dest = dir('416');
  writeFileSync(join(dest, 'a.bin.part'), Buffer.alloc(20));
  const { fetch, headers } = scripted([
    answer(416, { detail: 'a.bin has 10 bytes', status: 416, reason: 'RangeNotSatisfiable' }),
    bytes(200, [content], { 'content-length': '10' }),
  ]);
  await fileDownload(fetch, dest);
  assert.is(headers[0]!.range, 'bytes=18-');
  assert.not.ok(headers[1]!.range);
  assert.equal(readFileSync(join(dest, 'a.bin')), content);
});
single('a body shorter than its length is not taken as complete: the rest is fetched', async () => {
  const dest = dir('short');
  const { fetch, headers } = scripted([
    bytes(200, [content.subarray(0, 7)], { 'content-length': '10' }),
    bytes(206, [content.subarray(5)], { 'content-range': 'bytes 5-9/10' }),
  ]);
  await fileDownload(fetch, dest);
  assert.is(headers[1]!.range, 'bytes=5-');
  assert.equal(readFileSync(join(dest, 'a.bin')), content);
});
single('no length in the answer: the size is checked against the listing, and a mismatch keeps the .part', async () => {
  const dest = dir('verify');
  const { fetch } = scripted([
    bytes(200, [content.subarray(0, 8)]),
    answer(200, { job: 'j', files: [{ path: 'a.bin', size: 10, modified: '2026-11-26T00:00:00Z' }], totalBytes: 10 }),
  ]);
  const r = await kbatch(['job', 'outputs', 'j', 'a.bin', '--dest', dest], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /downloaded 8 bytes of a\.bin, but the file has 10/);
  assert.equal(readdirSync(dest), ['a.bin.part']);
});
single('--dest - writes the bytes to stdout and no file', async () => {
  const cwd = process.cwd();
  const here = dir('stdout');
  process.chdir(here);
  try {
    const payload = randomBytes(100_000);
    const { fetch } = scripted([bytes(200, [payload.subarray(0, 50_000), payload.subarray(50_000)], { 'content-length': '100000' })]);
    const r = await kbatch(['job', 'outputs', 'j', 'blob.bin', '--dest', '-'], fetch);
    assert.is(r.code, 0, r.stderr);
    assert.equal(r.binary(), payload);
    assert.is(r.stdout, '');
    assert.equal(readdirSync(here), []);
  } finally {
    process.chdir(cwd);
  }
});
single('a 404 for the file names it and leaves nothing behind', async () => {
  const dest = dir('404');
  const { fetch } = scripted([answer(404, { detail: 'no output a.bin', status: 404, reason: 'NotFound' })]);
  const r = await kbatch(['job', 'outputs', 'j', 'a.bin', '--dest', dest], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /output "a\.bin" of job j not found/);
  assert.equal(readdirSync(dest), []);
});
single('a .part that is a symlink is refused, not followed', async () => {
  const dest = dir('partlink');
  const elsewhere = join(dir('elsewhere'), 'victim');
  writeFileSync(elsewhere, 'keep');
  symlinkSync(elsewhere, join(dest, 'a.bin.part'));
  const { fetch } = scripted([bytes(200, [content], { 'content-length': '10' })]);
  const r = await kbatch(['job', 'outputs', 'j', 'a.bin', '--dest', dest], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /a\.bin\.part exists and is not a regular file/);
  assert.is(readFileSync(elsewhere, 'utf8'), 'keep');
});

/** A real server cutting the socket mid-body: the real transport must surface it as a drop, and the resume must work. */
single('through the real transport: a socket cut mid-file is resumed with a Range', async () => {
  const file = randomBytes(3 * 1024 * 1024);
  const ranges: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    ranges.push(req.headers.range);
    const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    if (from)
      res.writeHead(206, { 'content-range': `bytes ${from}-${file.length - 1}/${file.length}`, 'content-length': file.length - from });
    else res.writeHead(200, { 'content-length': file.length });
    if (ranges.length === 1) res.write(file.subarray(0, 1024 * 1024), () => setTimeout(() => req.socket.destroy(), 50));
    else res.end(file.subarray(from));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const dest = dir('real');
    const api = KbatchApi.at(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, 't');
    await downloadFile(api, 'j', 'big.bin', new PartFile(join(dest, 'big.bin')), { sleep: noSleep });
    assert.equal(readFileSync(join(dest, 'big.bin')), file);
    assert.is(ranges[0], undefined);
    assert.match(ranges[1] ?? '', /^bytes=[1-9]\d*-$/);
  } finally {
    server.close();
  }
});

single('through the real transport: a connection that stalls (no byte, no close) is given up and resumed', async () => {
  const file = randomBytes(256 * 1024);
  const ranges: (string | undefined)[] = [];
  const server: Server = createServer((req, res) => {
    ranges.push(req.headers.range);
    const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    if (from)
      res.writeHead(206, { 'content-range': `bytes ${from}-${file.length - 1}/${file.length}`, 'content-length': file.length - from });
    else res.writeHead(200, { 'content-length': file.length });
    // The first answer sends half, then nothing more, and keeps the connection open.
    if (ranges.length === 1) res.write(file.subarray(0, file.length / 2));
    else res.end(file.subarray(from));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const dest = dir('stall');
    const api = KbatchApi.at(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, 't');
    const reasons: string[] = [];
    await downloadFile(api, 'j', 'f.bin', new PartFile(join(dest, 'f.bin')), {
      sleep: noSleep,
      stallMs: 300,
      onReconnect: (_, reason) => reasons.push(reason),
    });
    assert.equal(reasons, ['no data for 0.3 s']);
    assert.is(ranges[1], `bytes=${file.length / 2 - 64 * 1024}-`, 'from 64 KiB before the end of what arrived');
    assert.equal(readFileSync(join(dest, 'f.bin')), file);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

// ---------------------------------------------------------------------------------------------
interface Entry {
  name: string;
  /** tar typeflag: 0 file, 1 hard link, 2 symlink, 3 char device, 5 directory, 6 FIFO */
  type?: string;
  data?: Buffer | string;
  link?: string;
}
const pad = (data: Buffer) => Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
function tar(entries: Entry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = Buffer.from(entry.data ?? '');
    if (Buffer.byteLength(entry.name) > 99) {
      const record = Buffer.from(`${entry.name}\0`);
      const long = Buffer.alloc(512);
      writeHeader(long, '././@LongLink', record.length, 0, 'L');
      blocks.push(long, pad(record));
    }
    const header = Buffer.alloc(512);
    writeHeader(header, entry.name.slice(0, 99), data.length, 0o644, entry.type ?? '0', entry.link ?? '');
    blocks.push(header, pad(data));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}
const tgz = (entries: Entry[]) => gzipSync(tar(entries));
const listOf = (files: [string, number][]): OutputList => ({
  job: 'j',
  files: files.map(([path, size]) => ({ path, size, modified: '2026-11-26T00:00:00Z' })),
  totalBytes: files.reduce((n, [, size]) => n + size, 0),
});

const all = suite('kbatch job outputs NAME: the archive, unpacked as it streams');
all('lists first, then unpacks every file into --dest', async () => {
  const dest = dir('all');
  const archive = tgz([
    { name: 'results/', type: '5' },
    { name: 'results/metrics.csv', data: 'a,b\n1,2\n' },
    { name: 'output-0.ipynb', data: '{}' },
  ]);
  const { fetch, urls } = scripted([
    answer(
      200,
      listOf([
        ['output-0.ipynb', 2],
        ['results/metrics.csv', 8],
      ]),
    ),
    bytes(200, [archive.subarray(0, 20), archive.subarray(20)]),
  ]);
  const r = await kbatch(['job', 'outputs', 'j', '--dest', dest], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.equal(urls, [`${base}api/v1/jobs/j/outputs`, `${base}api/v1/jobs/j/outputs/archive`]);
  assert.is(readFileSync(join(dest, 'results', 'metrics.csv'), 'utf8'), 'a,b\n1,2\n');
  assert.is(readFileSync(join(dest, 'output-0.ipynb'), 'utf8'), '{}');
  assert.is(r.stdout, `downloaded 2 files (10 B) to ${dest}\n`);
  assert.is(r.stderr, '');
});
all('the default destination is ./NAME/', async () => {
  const cwd = process.cwd();
  const here = dir('default');
  process.chdir(here);
  try {
    const { fetch } = scripted([answer(200, listOf([['a.txt', 1]])), bytes(200, [tgz([{ name: 'a.txt', data: 'x' }])])]);
    const r = await kbatch(['job', 'outputs', 'sweep-x7k2p'], fetch);
    assert.is(r.code, 0, r.stderr);
    assert.is(readFileSync(join(here, 'sweep-x7k2p', 'a.txt'), 'utf8'), 'x');
  } finally {
    process.chdir(cwd);
  }
});
all('a job with no outputs says so and downloads nothing', async () => {
  const dest = join(dir('none'), 'out');
  const { fetch, urls } = scripted([answer(200, listOf([]))]);
  const r = await kbatch(['job', 'outputs', 'j', '--dest', dest], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^kbatch: job j has no outputs\nhint: .*KBATCH_OUTPUTS_DIR/);
  assert.is(urls.length, 1);
  assert.not.ok(existsSync(dest));
});
all('hostile entries are refused or skipped, the rest is written, nothing lands outside DEST', async () => {
  const root = dir('hostile');
  const dest = join(root, 'dest');
  const outside = join(root, 'outside');
  mkdirSync(dest);
  mkdirSync(outside);
  // Already in DEST: a symlink to outside, which no entry may write through or replace.
  symlinkSync(outside, join(dest, 'planted'));
  const archive = tgz([
    { name: '../escape.txt', data: 'x' },
    { name: 'a/../../escape2.txt', data: 'x' },
    { name: '/abs.txt', data: 'x' },
    { name: 'link', type: '2', link: outside },
    { name: 'link/through.txt', data: 'lands in DEST/link/, a real directory' },
    { name: 'hard', type: '1', link: 'ok.txt' },
    { name: 'dev', type: '3' },
    { name: 'fifo', type: '6' },
    { name: 'planted/evil.txt', data: 'x' },
    { name: 'planted', data: 'replace the link?' },
    { name: `${'d/'.repeat(2100)}deep.txt`, data: 'x' },
    { name: `${'n'.repeat(300)}.txt`, data: 'x' },
    { name: 'bad\nname.txt', data: 'x' },
    { name: 'ok.txt', data: 'fine' },
  ]);
  const { fetch } = scripted([answer(200, listOf([['ok.txt', 4]])), bytes(200, [archive])]);
  const r = await kbatch(['job', 'outputs', 'j', '--dest', dest], fetch);
  assert.is(r.code, 1, r.stderr);
  assert.equal(readdirSync(outside), [], 'nothing was written outside DEST');
  assert.not.ok(existsSync(join(root, 'escape.txt')));
  assert.not.ok(existsSync(join(root, 'escape2.txt')));
  assert.is(readFileSync(join(dest, 'ok.txt'), 'utf8'), 'fine');
  assert.ok(lstatSync(join(dest, 'planted')).isSymbolicLink(), 'the planted symlink is left as it was');
  assert.ok(lstatSync(join(dest, 'link')).isDirectory(), 'the archive symlink was never made');
  assert.equal(readdirSync(dest).sort(), ['link', 'ok.txt', 'planted']);
  for (const refused of ['../escape.txt', 'a/../../escape2.txt', '/abs.txt', 'planted/evil.txt'])
    assert.ok(r.stderr.includes(`refused ${JSON.stringify(refused).slice(0, -1)}`), `${refused} refused\n${r.stderr}`);
  assert.match(r.stderr, /refused "planted": a symlink of that name is already in the destination; not replaced/);
  assert.match(r.stderr, /is longer than 4095 bytes/);
  assert.match(r.stderr, /has a name longer than 255 bytes/);
  assert.match(r.stderr, /skipped "link": a symlink/);
  assert.match(r.stderr, /skipped "hard": a hardlink/);
  assert.match(r.stderr, /skipped "dev": a character device/);
  assert.match(r.stderr, /skipped "fifo": a FIFO/);
  assert.match(r.stderr, /skipped "bad\\nname\.txt": its name contains a control character/);
  assert.match(r.stderr, /kbatch: 7 entries were refused/);
  assert.not.ok(/\.kbatch-[0-9a-f]+\.part/.test(readdirSync(dest, { recursive: true }).join('\n')), 'no temporary file left');
});
all('a dropped archive starts again and skips the files already complete', async () => {
  const dest = dir('retry');
  const big = randomBytes(200_000);
  const archive = tgz([
    { name: 'first.bin', data: big },
    { name: 'second.txt', data: 'two' },
  ]);
  // Enough of the gzip to hold the first file whole, not the end of the archive.
  const cutAt = archive.length - 40;
  const { fetch } = scripted([bytes(200, [archive.subarray(0, cutAt)], {}, { cut: true }), bytes(200, [archive])]);
  const warnings: string[] = [];
  const summary = await downloadArchive(KbatchApi.at(base, 't', fetch), 'j', dest, { warn: (w) => warnings.push(w), sleep: noSleep });
  assert.equal(summary, { files: 2, bytes: 200_003, skipped: 0, refused: 0 });
  assert.equal(readFileSync(join(dest, 'first.bin')), big);
  assert.is(readFileSync(join(dest, 'second.txt'), 'utf8'), 'two');
  assert.equal(warnings, []);
});
all('an archive cut mid-way continues file by file: only the files it had not delivered whole, each resumable', async () => {
  const dest = dir('fallback');
  const first = randomBytes(200_000);
  const second = randomBytes(100_000);
  // Stored, not compressed: the cut lands where the bytes say, inside the second file's data.
  const archive = gzipSync(
    tar([
      { name: './', type: '5' },
      { name: './first.bin', data: first },
      { name: './second.bin', data: second },
    ]),
    { level: 0 },
  );
  const { fetch, urls } = scripted([
    answer(
      200,
      listOf([
        ['first.bin', first.length],
        ['second.bin', second.length],
      ]),
    ),
    bytes(200, [archive.subarray(0, Math.floor(archive.length * 0.8))], {}, { cut: true }),
    bytes(200, [second], { 'content-length': String(second.length) }),
  ]);
  const r = await kbatch(['job', 'outputs', 'j', '--dest', dest], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(urls[2], `${base}api/v1/jobs/j/outputs/file?path=second.bin`);
  assert.is(urls.length, 3, 'first.bin came whole in the archive and is not fetched again');
  assert.equal(readFileSync(join(dest, 'first.bin')), first);
  assert.equal(readFileSync(join(dest, 'second.bin')), second);
  assert.equal(readdirSync(dest).sort(), ['first.bin', 'second.bin'], 'no temporary or .part file left');
  assert.match(
    r.stderr,
    /kbatch: the archive was cut after 1 file \(Premature close\); downloading the rest one file at a time, each resumable/,
  );
  assert.is(r.stdout, `downloaded 2 files (293 KiB) to ${dest}\n`);
});
all('a truncated archive (no end block) is an error, not a silent partial success', async () => {
  const dest = dir('truncated');
  const archive = gzipSync(tar([{ name: 'a.txt', data: 'x' }]).subarray(0, 1024));
  const { fetch } = scripted([answer(200, listOf([['a.txt', 1]])), bytes(200, [archive])]);
  const r = await kbatch(['job', 'outputs', 'j', '--dest', dest], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /truncated/);
});
all('a corrupt gzip is reported as such', async () => {
  const dest = dir('corrupt');
  const { fetch } = scripted([answer(200, listOf([['a.txt', 1]])), bytes(200, [Buffer.from('not gzip at all')])]);
  const r = await kbatch(['job', 'outputs', 'j', '--dest', dest], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /the outputs archive of job j is corrupt/);
});
all('a --dest that is a file is a usage error', async () => {
  const file = join(dir('destfile'), 'x');
  writeFileSync(file, 'x');
  const { fetch } = scripted([answer(200, listOf([['a.txt', 1]]))]);
  const r = await kbatch(['job', 'outputs', 'j', '--dest', file], fetch);
  assert.is(r.code, 2);
  assert.match(r.stderr, /--dest .* is not a directory/);
});
all('--dest - needs a PATH', async () => {
  const r = await kbatch(['job', 'outputs', 'j', '--dest', '-']);
  assert.is(r.code, 2);
});

// ---------------------------------------------------------------------------------------------
const names = suite('what an archive entry may be called');
names('relative paths are normalized; unsafe ones carry their reason', () => {
  assert.equal(safeOutputPath('./a//b/./c.txt'), { path: 'a/b/c.txt' });
  assert.equal(safeOutputPath('a/b/'), { path: 'a/b' });
  assert.equal(safeOutputPath('..'), { problem: 'climbs out of the destination with ".."', unsafe: true });
  assert.equal(safeOutputPath('C:/x'), { problem: 'is an absolute path', unsafe: true });
  assert.equal(safeOutputPath('\u001b[31mred'), { problem: 'its name contains a control character (newline, escape...)', unsafe: false });
});
names('a backslash is a separator only on Windows', () => {
  assert.equal(safeOutputPath('a\\..\\..\\x', 'win32'), { problem: 'contains a backslash, a separator on Windows', unsafe: true });
  assert.equal(safeOutputPath('a\\b.txt', 'linux'), { path: 'a\\b.txt' });
});

const reader = suite('the streaming tar reader');
reader('reads pax paths and GNU base-256 sizes, one byte at a time', async () => {
  // "<length> key=value\n", the length counting its own digits, in bytes.
  const paxRecord = (key: string, value: string) => {
    const body = ` ${key}=${value}\n`;
    const bytes = Buffer.byteLength(body);
    let length = bytes + String(bytes).length;
    if (String(length).length !== String(bytes).length) length = bytes + String(length).length;
    return `${length}${body}`;
  };
  const record = Buffer.from(paxRecord('path', 'pax/ünïcode name.txt'));
  const paxHeader = Buffer.alloc(512);
  writeHeader(paxHeader, 'PaxHeader', record.length, 0, 'x');
  const header = Buffer.alloc(512);
  writeHeader(header, 'short', 3, 0o644, '0');
  // The same size (3) in GNU base-256: high bit set, big-endian; the checksum is recomputed.
  header.fill(0, 124, 136);
  header[124] = 0x80;
  header[135] = 3;
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  const archive = Buffer.concat([paxHeader, pad(record), header, pad(Buffer.from('abc')), Buffer.alloc(1024)]);
  const entries: { path: string; data: string }[] = [];
  const oneByOne = (async function* () {
    for (let i = 0; i < archive.length; i++) yield archive.subarray(i, i + 1);
  })();
  for await (const entry of readTarEntries(oneByOne)) {
    const parts: Buffer[] = [];
    for await (const chunk of entry.data) parts.push(chunk);
    entries.push({ path: entry.path, data: Buffer.concat(parts).toString() });
  }
  assert.equal(entries, [{ path: 'pax/ünïcode name.txt', data: 'abc' }]);
});
reader('an entry whose data is not read is skipped, and the next one is intact', async () => {
  const archive = tar([
    { name: 'skip.bin', data: randomBytes(1500) },
    { name: 'keep.txt', data: 'kept' },
  ]);
  const seen: string[] = [];
  for await (const entry of readTarEntries(
    (async function* () {
      yield archive;
    })(),
  )) {
    if (entry.path === 'keep.txt') for await (const chunk of entry.data) seen.push(chunk.toString());
    else {
      // Read a little, then stop: the reader must skip the rest.
      for await (const _ of entry.data) break;
    }
  }
  assert.equal(seen, ['kept']);
});

// ---------------------------------------------------------------------------------------------
const progress = suite('the progress line');
progress('bytes, total and percentage when known, and the rate of this run', () => {
  assert.is(progressText('downloading a', 5 * 1024 * 1024, 10 * 1024 * 1024, 0, 2), 'downloading a: 5.0 MiB of 10.0 MiB (50%), 2.5 MiB/s');
  assert.is(progressText('downloading a', 2048, undefined, 1024, 0.1), 'downloading a: 2.0 KiB');
});
progress('on a terminal, a line redrawn in place and cleared before the result', async () => {
  const dest = dir('tty');
  const { fetch } = scripted([bytes(200, [content], { 'content-length': '10' })]);
  let stderr = '';
  let stdout = '';
  const code = await runCli(['job', 'outputs', 'j', 'a.bin', '--dest', dest], {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: true },
    env: { XDG_CONFIG_HOME: mkdtempSync(join(scratch, 'config-')), KBATCH_URL: base },
    fetch,
  });
  assert.is(code, 0, stderr);
  assert.is(stderr, '\r\x1b[Kdownloading a.bin: 10 B of 10 B (100%)\r\x1b[K');
  assert.match(stdout, /^downloaded a\.bin \(10 B\)/);
});
progress('nothing on stderr when it is not a terminal', async () => {
  const dest = dir('quiet');
  const { fetch } = scripted([bytes(200, [content], { 'content-length': '10' })]);
  const r = await kbatch(['job', 'outputs', 'j', 'a.bin', '--dest', dest], fetch);
  assert.is(r.stderr, '');
});

// ---------------------------------------------------------------------------------------------
const deleting = suite('kbatch job delete --outputs');
deleting('sends ?outputs=true and says the outputs went too', async () => {
  const { fetch, urls, methods } = scripted([answer(200, { deleted: 'j' })]);
  const r = await kbatch(['job', 'delete', 'j', '--outputs'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.equal(methods, ['DELETE']);
  assert.is(urls[0], `${base}api/v1/jobs/j?outputs=true`);
  assert.is(r.stdout, 'deleted job j and its outputs\n');
});
deleting('without --outputs the outputs are left alone', async () => {
  const { fetch, urls } = scripted([answer(200, { deleted: 'j' })]);
  await kbatch(['job', 'delete', 'j'], fetch);
  assert.is(urls[0], `${base}api/v1/jobs/j`);
});
deleting('the server deleting only the outputs (job: null) is told as such', async () => {
  const { fetch } = scripted([answer(200, { deleted: 'j', propagation: 'Foreground', job: null, outputs: 3 })]);
  const r = await kbatch(['job', 'delete', 'j', '--outputs'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, 'deleted the outputs of job j (the job itself was already gone)\n');
});
deleting('a server that 404s a gone job is asked for the outputs alone', async () => {
  const { fetch, urls, methods } = scripted([answer(404, { detail: 'job j not found', status: 404, reason: 'NotFound' }), answer(200, {})]);
  const r = await kbatch(['job', 'delete', 'j', '--outputs'], fetch);
  assert.is(r.code, 0, r.stderr);
  assert.equal(methods, ['DELETE', 'DELETE']);
  assert.is(urls[1], `${base}api/v1/jobs/j/outputs`);
  assert.is(r.stdout, 'deleted the outputs of job j (the job itself was already gone)\n');
});
deleting('neither the job nor outputs: the job 404 is what is reported', async () => {
  const { fetch } = scripted([
    answer(404, { detail: 'job j not found', status: 404, reason: 'NotFound' }),
    answer(404, { detail: 'no outputs', status: 404, reason: 'NotFound' }),
  ]);
  const r = await kbatch(['job', 'delete', 'j', '--outputs'], fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /job j not found/);
});
deleting('the help says outputs otherwise stay', async () => {
  const r = await kbatch(['job', 'delete', '--help']);
  assert.match(r.stdout, /outputs stay after it is deleted/);
  assert.match(r.stdout, /--outputs/);
});

listing.run();
single.run();
all.run();
names.run();
reader.run();
progress.run();
deleting.run();
