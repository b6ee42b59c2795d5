import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { startOfLastLines, tailLog } from '../../lib/backend/local/log-tailer.ts';
import type { LogOptions } from '../../lib/backend/types.ts';

const dir = mkdtempSync(join(tmpdir(), 'kbatch-tailer-'));
let fileCount = 0;

/** A log file as the runner writes it: one `<time> <text>` line per output line, a second apart. */
function logFile(lines: string[], unterminated = ''): string {
  const file = join(dir, `pod-${fileCount++}.log`);
  const base = Date.parse('2026-01-01T00:00:00.000Z');
  writeFileSync(file, lines.map((line, i) => `${stamp(base + i * 1000)} ${line}\n`).join('') + unterminated);
  return file;
}

const stamp = (ms: number) => new Date(ms).toISOString();

async function read(file: string, options: Partial<LogOptions>, isFinished: () => Promise<boolean> = async () => true): Promise<string> {
  let out = '';
  for await (const chunk of tailLog(file, { follow: false, ...options }, new AbortController().signal, isFinished)) out += chunk.toString();
  return out;
}

const tail = suite('tailLines gives the last N lines, as the kubelet does');
tail('the last 3 of 10 lines', async () => {
  const file = logFile(Array.from({ length: 10 }, (_, i) => `line ${i + 1}`));
  assert.is(await read(file, { tailLines: 3 }), 'line 8\nline 9\nline 10\n');
});
tail('more lines asked than written gives them all', async () => {
  const file = logFile(['a', 'b']);
  assert.is(await read(file, { tailLines: 50 }), 'a\nb\n');
});
tail('0 gives nothing', async () => {
  assert.is(await read(logFile(['a', 'b']), { tailLines: 0 }), '');
});
tail('no tailLines gives the whole log', async () => {
  assert.is(await read(logFile(['a', 'b', 'c']), {}), 'a\nb\nc\n');
});
tail('a negative or fractional value is ignored (whole log), never an error', async () => {
  const file = logFile(['a', 'b', 'c']);
  assert.is(await read(file, { tailLines: -1 }), 'a\nb\nc\n');
  assert.is(await read(file, { tailLines: 1.5 }), 'a\nb\nc\n');
});
tail('an unterminated last line is not counted and not shown', async () => {
  const file = logFile(['a', 'b', 'c'], '2026-01-01T00:00:09.000Z half-writ');
  assert.is(await read(file, { tailLines: 2 }), 'b\nc\n');
});
tail('lines longer than the read block are counted once', async () => {
  const long = 'x'.repeat(200_000);
  const file = logFile(['first', long, 'last']);
  assert.is(await read(file, { tailLines: 2 }), `${long}\nlast\n`);
});
tail('multi-byte characters across block boundaries stay whole', async () => {
  const text = 'é田😀'.repeat(30_000);
  const file = logFile([text, 'end']);
  assert.is(await read(file, {}), `${text}\nend\n`);
});
tail('with timestamps the lines keep their time', async () => {
  const file = logFile(['a', 'b']);
  assert.is(await read(file, { tailLines: 1, timestamps: true }), '2026-01-01T00:00:01.000Z b\n');
});
tail('startOfLastLines finds the byte where the last N lines begin', async () => {
  const file = join(dir, 'raw.log');
  writeFileSync(file, 'a\nbb\nccc\n');
  const handle = await open(file);
  try {
    assert.equal(await Promise.all([0, 1, 2, 3, 4].map((n) => startOfLastLines(handle, 9, n))), [9, 5, 2, 0, 0]);
    assert.is(await startOfLastLines(handle, 0, 2), 0, 'an empty file');
  } finally {
    await handle.close();
  }
});
tail.run();

const since = suite('tailLines with sinceTime: the tail is taken first, then lines before sinceTime drop');
since('sinceTime inside the tail narrows it', async () => {
  const file = logFile(['a', 'b', 'c', 'd', 'e']);
  assert.is(await read(file, { tailLines: 3, sinceTime: '2026-01-01T00:00:03.000Z' }), 'd\ne\n', 'inclusive at d');
});
since('sinceTime before the tail leaves the tail', async () => {
  const file = logFile(['a', 'b', 'c', 'd', 'e']);
  assert.is(await read(file, { tailLines: 2, sinceTime: '2026-01-01T00:00:00.000Z' }), 'd\ne\n');
});
since('sinceTime alone drops earlier lines, inclusive', async () => {
  const file = logFile(['a', 'b', 'c']);
  assert.is(await read(file, { sinceTime: '2026-01-01T00:00:01.000Z' }), 'b\nc\n');
});
since.run();

const follow = suite('follow with tailLines: the last N lines, then every new one until the pod is done');
follow('new lines arrive after the tail, and the last ones written before "finished" are delivered', async () => {
  const file = logFile(['old 1', 'old 2', 'old 3']);
  let finished = false;
  let asked = 0;
  const stream = tailLog(file, { follow: true, tailLines: 1 }, new AbortController().signal, async () => {
    asked++;
    return finished;
  });
  const collected = (async () => {
    let out = '';
    for await (const chunk of stream) out += chunk.toString();
    return out;
  })();
  await new Promise((r) => setTimeout(r, 300));
  appendFileSync(file, `${stamp(Date.now())} new 1\n`);
  await new Promise((r) => setTimeout(r, 300));
  // The runner closes the log before it records the pod as finished: these lines come first.
  appendFileSync(file, `${stamp(Date.now())} new 2\n${stamp(Date.now())} new 3\n`);
  finished = true;
  assert.is(await collected, 'old 3\nnew 1\nnew 2\nnew 3\n');
  assert.ok(asked >= 1);
});
follow('tailLines 0 with follow shows only lines written after the request', async () => {
  const file = logFile(['old']);
  let finished = false;
  const stream = tailLog(file, { follow: true, tailLines: 0 }, new AbortController().signal, async () => finished);
  const collected = (async () => {
    let out = '';
    for await (const chunk of stream) out += chunk.toString();
    return out;
  })();
  await new Promise((r) => setTimeout(r, 250));
  appendFileSync(file, `${stamp(Date.now())} fresh\n`);
  finished = true;
  assert.is(await collected, 'fresh\n');
});
follow('a follower of a file that does not exist yet waits for it', async () => {
  const file = join(dir, 'later.log');
  let finished = false;
  const stream = tailLog(file, { follow: true, tailLines: 5 }, new AbortController().signal, async () => finished);
  const collected = (async () => {
    let out = '';
    for await (const chunk of stream) out += chunk.toString();
    return out;
  })();
  await new Promise((r) => setTimeout(r, 250));
  writeFileSync(file, `${stamp(Date.now())} hello\n`);
  finished = true;
  assert.is(await collected, 'hello\n');
});
follow('"finished" is asked only while no bytes arrive', async () => {
  const file = logFile([]);
  let asked = 0;
  let writes = 0;
  const writer = setInterval(() => {
    appendFileSync(file, `${stamp(Date.now())} w${writes++}\n`);
  }, 20);
  const controller = new AbortController();
  const stream = tailLog(file, { follow: true }, controller.signal, async () => {
    asked++;
    return false;
  });
  stream.resume();
  await new Promise((r) => setTimeout(r, 1000));
  clearInterval(writer);
  controller.abort();
  await new Promise((r) => stream.once('end', r));
  // About 5 polls a second; a busy log answers most polls with bytes instead of a status read.
  assert.ok(asked <= 2, `asked ${asked} times`);
});
follow('aborting ends the stream', async () => {
  const file = logFile(['a']);
  const controller = new AbortController();
  const stream = tailLog(file, { follow: true }, controller.signal, async () => false);
  let out = '';
  stream.on('data', (chunk) => (out += chunk.toString()));
  await new Promise((r) => setTimeout(r, 100));
  controller.abort();
  await new Promise((r) => stream.once('end', r));
  assert.is(out, 'a\n');
});
follow.run();

const cleanup = suite('cleanup');
cleanup('removes the files', () => rmSync(dir, { recursive: true, force: true }));
cleanup.run();
