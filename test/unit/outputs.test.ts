import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { archiveOutputDir, listOutputFiles, readOutputFile, removeOutputDir } from '../../lib/backend/local/outputs.ts';
import { LocalBackend } from '../../lib/backend/local/index.ts';
import { HttpError } from '../../lib/http/errors.ts';
import { outputFilePath, outputsToSweep, parseRange, resolveRange, SweepSchedule } from '../../lib/jobs/outputs.ts';

function statusOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (error) {
    return error instanceof HttpError ? error.status : -1;
  }
  return undefined;
}

const paths = suite('an output path names a file inside the job outputs, or is a 400');
paths('relative paths are kept, normalized', () => {
  assert.is(outputFilePath('result.csv'), 'result.csv');
  assert.is(outputFilePath('sub/dir/x.bin'), 'sub/dir/x.bin');
  assert.is(outputFilePath('./sub//x.bin'), 'sub/x.bin');
  assert.is(outputFilePath('caf\u00e9 r\u00e9sum\u00e9.txt'), 'caf\u00e9 r\u00e9sum\u00e9.txt');
});
paths('absent, empty, absolute, "..", NUL, newline and the directory itself are refused', () => {
  for (const raw of [null, '', '/etc/passwd', '../x', 'a/../../x', 'a/..', '..', 'a\0b', 'a\nb', '.', './', 'x\r']) {
    assert.is(
      statusOf(() => outputFilePath(raw)),
      400,
      JSON.stringify(raw),
    );
  }
});
paths.run();

const ranges = suite('Range headers: one byte range, or the whole file');
ranges('a-b, a- and -n are parsed; anything else is ignored (200 with the whole file)', () => {
  assert.equal(parseRange('bytes=0-99'), { start: 0, end: 99 });
  assert.equal(parseRange('bytes=100-'), { start: 100 });
  assert.equal(parseRange('bytes=-500'), { suffix: 500 });
  assert.equal(parseRange(' BYTES = 5 - 6 '), { start: 5, end: 6 });
  for (const ignored of [undefined, '', 'bytes=', 'bytes=-', 'items=0-1', 'bytes=0-1,5-6', 'bytes=9-3', 'bytes=a-b', 'bytes=1.5-2'])
    assert.is(parseRange(ignored), undefined, String(ignored));
});
ranges('resolved against the size: clipped at the end, 416 when it selects nothing', () => {
  assert.equal(resolveRange({ start: 0, end: 99 }, 1000), { start: 0, end: 99 });
  assert.equal(resolveRange({ start: 900, end: 5000 }, 1000), { start: 900, end: 999 });
  assert.equal(resolveRange({ start: 999 }, 1000), { start: 999, end: 999 });
  assert.equal(resolveRange({ suffix: 10 }, 1000), { start: 990, end: 999 });
  assert.equal(resolveRange({ suffix: 5000 }, 1000), { start: 0, end: 999 });
});
ranges('416 with reason RangeNotSatisfiable and the size', () => {
  for (const [range, size] of [
    [{ start: 1000 }, 1000],
    [{ start: 1000, end: 2000 }, 1000],
    [{ suffix: 0 }, 1000],
    [{ suffix: 10 }, 0],
    [{ start: 0 }, 0],
    [parseRange('bytes=99999999999999999999-')!, 10],
  ] as const) {
    try {
      resolveRange(range, size);
      assert.unreachable(JSON.stringify(range));
    } catch (error) {
      assert.is((error as HttpError).status, 416);
      assert.is((error as HttpError).reason, 'RangeNotSatisfiable');
      assert.match((error as HttpError).message, `${size} bytes`);
    }
  }
});
ranges.run();

const sweep = suite('retention: outputs of deleted jobs older than the retention are swept');
const day = 24 * 3600;
const now = Date.parse('2026-11-26T00:00:00Z');
sweep('old outputs of a job that is gone go; recent ones and those of existing jobs stay', () => {
  const entries = [
    { job: 'old-gone', modifiedMs: now - 31 * day * 1000 },
    { job: 'old-alive', modifiedMs: now - 365 * day * 1000 },
    { job: 'new-gone', modifiedMs: now - 1 * day * 1000 },
  ];
  assert.equal(outputsToSweep(entries, new Set(['old-alive']), now, 30 * day), ['old-gone']);
});
sweep('0 keeps everything forever', () => {
  assert.equal(outputsToSweep([{ job: 'ancient', modifiedMs: 0 }], new Set(), now, 0), []);
});
sweep('a schedule runs a namespace sweep at most once per interval, and a failing sweep fails nothing', async () => {
  const schedule = new SweepSchedule(1000);
  const runs: string[] = [];
  const ran = (name: string) => async () => void runs.push(name);
  schedule.maybeRun('a', ran('a1'), 0);
  schedule.maybeRun('a', ran('a2'), 999);
  schedule.maybeRun('b', ran('b1'), 999);
  schedule.maybeRun('a', ran('a3'), 1000);
  const errors: unknown[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void errors.push(args);
  try {
    schedule.maybeRun('c', () => Promise.reject(new Error('disk gone')), 0);
    await new Promise((resolve) => setTimeout(resolve, 10));
  } finally {
    console.error = original;
  }
  assert.equal(runs, ['a1', 'b1', 'a3']);
  assert.is(errors.length, 1);
});
sweep.run();

/** A job outputs directory as a hostile job may leave it: links out, a link to a directory, a FIFO. */
function hostileOutputs() {
  const root = mkdtempSync(join(tmpdir(), 'kbatch-outputs-'));
  const dir = join(root, 'job');
  mkdirSync(join(dir, 'sub'), { recursive: true });
  writeFileSync(join(dir, 'result.txt'), 'result\n');
  writeFileSync(join(dir, 'sub', 'data.bin'), Buffer.alloc(3000, 7));
  writeFileSync(join(root, 'secret'), 'not yours\n');
  symlinkSync('/etc/passwd', join(dir, 'passwd'));
  symlinkSync(root, join(dir, 'up'));
  symlinkSync('result.txt', join(dir, 'alias'));
  execFileSync('mkfifo', [join(dir, 'pipe')]);
  return { root, dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

async function bytesOf(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

const local = suite('local outputs never follow a link a job left');
const signal = new AbortController().signal;
local('listing shows regular files only', async () => {
  const { dir, cleanup } = hostileOutputs();
  try {
    const files = await listOutputFiles(dir);
    assert.equal(
      files!.map((f) => [f.path, f.size]),
      [
        ['result.txt', 7],
        ['sub/data.bin', 3000],
      ],
    );
    assert.ok(files!.every((f) => !Number.isNaN(Date.parse(f.modified))));
    assert.is(await listOutputFiles(join(dir, 'nothing')), undefined);
    assert.is(await listOutputFiles(join(dir, 'up')), undefined, 'a link to a directory is no outputs directory');
  } finally {
    cleanup();
  }
});
local('a download refuses links (to files, through directories), FIFOs and directories; serves ranges of files', async () => {
  const { dir, cleanup } = hostileOutputs();
  try {
    const refused = async (path: string, status: number) =>
      readOutputFile(dir, path, undefined, signal).then(
        () => assert.unreachable(path),
        (error: HttpError) => assert.is(error.status, status, `${path}: ${error.message}`),
      );
    await refused('passwd', 404);
    await refused('up/secret', 404);
    await refused('alias', 404);
    await refused('pipe', 404);
    await refused('missing', 404);
    await refused('sub', 400);
    const whole = await readOutputFile(dir, 'result.txt', undefined, signal);
    assert.is(whole.size, 7);
    assert.is((await bytesOf(whole.stream)).toString(), 'result\n');
    const part = await readOutputFile(dir, 'sub/data.bin', { suffix: 10 }, signal);
    assert.equal(part.range, { start: 2990, end: 2999 });
    assert.is((await bytesOf(part.stream)).length, 10);
    await readOutputFile(dir, 'result.txt', { start: 7 }, signal).then(
      () => assert.unreachable('range past the end'),
      (error: HttpError) => assert.is(error.status, 416),
    );
    writeFileSync(join(dir, 'empty'), '');
    const empty = await readOutputFile(dir, 'empty', undefined, signal);
    assert.is(empty.size, 0);
    assert.is((await bytesOf(empty.stream)).length, 0);
  } finally {
    cleanup();
  }
});
local('the archive stores links as links, never their targets', async () => {
  const { dir, cleanup } = hostileOutputs();
  try {
    rmSync(join(dir, 'pipe'));
    const tgz = await bytesOf(await archiveOutputDir(dir, signal));
    const listing = execFileSync('tar', ['-tvzf', '-'], { input: tgz }).toString();
    assert.match(listing, /passwd -> \/etc\/passwd/);
    assert.not.match(listing, /root:/);
    assert.not.ok(tgz.includes(Buffer.from('not yours')));
    await archiveOutputDir(join(dir, 'up'), signal).then(
      () => assert.unreachable('archive through a link'),
      (error: HttpError) => assert.is(error.status, 404),
    );
  } finally {
    cleanup();
  }
});
local('delete removes the links, never their targets, and counts the regular files', async () => {
  const { root, dir, cleanup } = hostileOutputs();
  try {
    assert.is(await removeOutputDir(dir), 2);
    assert.ok(existsSync(join(root, 'secret')) && existsSync('/etc/passwd'));
    assert.is(await removeOutputDir(dir), undefined);
    // A job that replaced its whole outputs directory with a link to elsewhere: only the link goes.
    symlinkSync(root, dir);
    assert.is(await removeOutputDir(dir), 0);
    assert.ok(existsSync(join(root, 'secret')));
    assert.not.ok(existsSync(dir));
  } finally {
    cleanup();
  }
});
local.run();

const backend = suite('local backend: outputs outlive the job, in the owner namespace only');
backend('a job writes into $KBATCH_OUTPUTS_DIR; the files stay after delete until deleted, and are swept when old', async () => {
  const root = mkdtempSync(join(tmpdir(), 'kbatch-local-outputs-'));
  const local = new LocalBackend(root, 30 * day);
  try {
    const alice = { name: 'alice', namespace: 'kbatch-alice' };
    await local.ensureNamespace({ metadata: { name: alice.namespace, annotations: { 'kbatch.jupyter.org/username': 'alice' } } });
    const job = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'writer-abcde', namespace: alice.namespace, labels: {} },
      spec: {
        completions: 1,
        template: {
          spec: {
            containers: [
              {
                name: 'job',
                image: 'x',
                command: ['sh', '-c', 'mkdir -p "$KBATCH_OUTPUTS_DIR/d" && echo hi > "$KBATCH_OUTPUTS_DIR/d/out.txt"'],
              },
            ],
          },
        },
      },
    };
    await local.createJob({ namespace: alice.namespace, job, secret: { metadata: { name: 'writer-abcde' }, data: {} } }, undefined);
    for (let i = 0; i < 100 && !(await local.getJob(alice.namespace, 'writer-abcde')).status?.conditions?.length; i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(
      (await local.listOutputs(alice, 'writer-abcde'))!.map((f) => f.path),
      ['d/out.txt'],
    );
    await local.deleteJob(alice.namespace, 'writer-abcde');
    assert.equal(
      (await local.listOutputs(alice, 'writer-abcde'))!.map((f) => f.path),
      ['d/out.txt'],
      'kept after the job',
    );
    assert.is(await local.listOutputs({ name: 'bob', namespace: 'kbatch-bob' }, 'writer-abcde'), undefined, "another's namespace has none");

    // Made old: the first outputs call of this namespace in the next process (sweeps are hourly) sweeps it.
    const old = (Date.now() - 31 * day * 1000) / 1000;
    utimesSync(join(root, 'namespaces', alice.namespace, 'outputs', 'writer-abcde'), old, old);
    await local.listOutputs(alice, 'other');
    assert.ok(existsSync(join(root, 'namespaces', alice.namespace, 'outputs', 'writer-abcde')), 'one sweep an hour');
    const next = new LocalBackend(root, 30 * day);
    await next.listOutputs(alice, 'other');
    for (let i = 0; i < 50 && existsSync(join(root, 'namespaces', alice.namespace, 'outputs', 'writer-abcde')); i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    assert.is(await next.listOutputs(alice, 'writer-abcde'), undefined, 'swept');
    await next.close();
  } finally {
    await local.close();
    rmSync(root, { recursive: true, force: true });
  }
});
backend.run();
