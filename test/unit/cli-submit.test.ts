import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runCli } from '../../cli/app.ts';
import type { FetchLike } from '../../cli/http.ts';
import { idempotencyKeyHeader } from '../../lib/contract.ts';
import { answer, reset, scripted } from './cli-fakes.ts';

/** Every directory this file makes lives here, removed when the process ends. */
const scratch = mkdtempSync(join(tmpdir(), 'kbatch-cli-submit-'));
process.once('exit', () => rmSync(scratch, { recursive: true, force: true }));
const scratchDir = () => mkdtempSync(join(scratch, 'd-'));

async function kbatch(argv: string[], env: Record<string, string>, fetch?: FetchLike) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    stdout: { write: (t) => void (stdout += t), isTTY: false },
    stderr: { write: (t) => void (stderr += t), isTTY: false },
    env: { XDG_CONFIG_HOME: scratchDir(), KBATCH_URL: 'http://kbatch.test/services/kbatch/', ...env },
    fetch,
  });
  return { code, stdout, stderr };
}

/** 24 MiB that gzip cannot shrink: far more than loopback socket buffers hold, so a sender that keeps going blocks. */
function bigProject(): string {
  const dir = scratchDir();
  writeFileSync(join(dir, 'data.bin'), randomBytes(24 * 1024 * 1024));
  return dir;
}

const refused = suite('an upload the server refuses mid-way');
refused('stops sending at the 413, closes the connection and exits 1 with the upload hint', async () => {
  let socket: Socket | undefined;
  let answeredAt = 0;
  let closedAt = 0;
  let received = 0;
  let receivedAtAnswer = 0;
  // Like a server with a small limit: it answers after the first megabyte, then keeps reading
  // (draining, as it should) with the connection open, counting what still arrives.
  const server = createServer((req, res) => {
    socket = req.socket;
    socket.once('close', () => (closedAt = Date.now()));
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received < 1024 * 1024 || answeredAt) return;
      answeredAt = Date.now();
      receivedAtAnswer = received;
      res.writeHead(413, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ detail: 'Upload is larger than 1048576 bytes', status: 413, reason: 'UploadTooLarge' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/services/kbatch/`;
  try {
    const r = await kbatch(['job', 'submit', '-n', 'big', '--image', 'busybox', '--code', bigProject()], { KBATCH_URL: url });
    assert.is(r.code, 1);
    assert.match(r.stderr, /kbatch: upload too large \(HTTP 413\): Upload is larger than 1048576 bytes/);
    assert.match(r.stderr, /hint: leave large data out of --code/);
    assert.not.match(r.stderr, /resuming/, 'a refusal is not retried');
    for (let i = 0; i < 40 && !closedAt; i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(closedAt, 'the CLI closed the connection instead of pushing the rest of the body');
    assert.ok(closedAt - answeredAt < 2000, `closed ${closedAt - answeredAt} ms after the answer`);
    // What was already in flight may still arrive; the other 20-odd MiB must not.
    assert.ok(received - receivedAtAnswer < 8 * 1024 * 1024, `${received - receivedAtAnswer} bytes arrived after the answer`);
  } finally {
    socket?.destroy();
    server.close();
  }
});
for (const [what, payload] of [
  ['no reason (an older server, a proxy)', { detail: 'Upload is larger than 1 bytes', status: 413 }],
  ['the generic PayloadTooLarge reason', { detail: 'Upload is larger than 1 bytes', status: 413, reason: 'PayloadTooLarge' }],
] as const) {
  refused(`a 413 on an upload with ${what} still gets the upload hint`, async () => {
    const { fetch } = scripted([answer(413, payload)]);
    const dir = scratchDir();
    writeFileSync(join(dir, 'main.py'), 'print(1)\n');
    const r = await kbatch(['job', 'submit', '-n', 'x', '--image', 'busybox', '--code', dir], {}, fetch);
    assert.is(r.code, 1);
    assert.match(r.stderr, /upload too large \(HTTP 413\)/);
    assert.match(r.stderr, /hint: leave large data out of --code/);
  });
}
refused('a 413 on a plain submit is about the request, not about code', async () => {
  const { fetch } = scripted([answer(413, { detail: 'Request body exceeds 1048576 bytes', status: 413, reason: 'PayloadTooLarge' })]);
  const r = await kbatch(['job', 'submit', '-n', 'x', '--image', 'busybox'], {}, fetch);
  assert.is(r.code, 1);
  assert.match(r.stderr, /request too large \(HTTP 413\): Request body exceeds/);
  assert.match(r.stderr, /hint: large values \(env, args\) belong in --code/);
});
refused.run();

const idempotent = suite('submit sends an idempotency key');
const created = answer(201, { name: 'j-abcde', state: 'pending', conditions: [], pods: [] });
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
idempotent('one random UUID per invocation, the same on each of its retries', async () => {
  const { fetch, headers, methods } = scripted([
    reset,
    answer(503, { detail: 'Kubernetes API unreachable', status: 503, reason: 'Unavailable' }),
    created,
  ]);
  const r = await kbatch(['job', 'submit', '-n', 'j', '--image', 'busybox'], {}, fetch);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, 'j-abcde\n');
  assert.equal(methods, ['POST', 'POST', 'POST']);
  const keys = headers.map((h) => h[idempotencyKeyHeader]);
  assert.match(keys[0]!, uuid);
  assert.equal(keys, [keys[0], keys[0], keys[0]]);
  assert.match(r.stderr, /submit interrupted \(.*ECONNRESET.*\); resuming \(attempt 1\)/);

  const again = scripted([created]);
  await kbatch(['job', 'submit', '-n', 'j', '--image', 'busybox'], {}, again.fetch);
  assert.match(again.headers[0]![idempotencyKeyHeader]!, uuid);
  assert.is.not(again.headers[0]![idempotencyKeyHeader], keys[0], 'a new invocation is a new job');
});
idempotent('a code upload carries the key too, and a retry sends the whole body again', async () => {
  const seen: { key: string | undefined; bytes: number }[] = [];
  const server = createServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => {
      seen.push({ key: (req.headers as IncomingHttpHeaders)[idempotencyKeyHeader] as string | undefined, bytes });
      const first = seen.length === 1;
      res.writeHead(first ? 503 : 201, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify(
          first
            ? { detail: 'draining', status: 503, reason: 'Unavailable' }
            : { name: 'j-abcde', state: 'pending', conditions: [], pods: [] },
        ),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dir = scratchDir();
  writeFileSync(join(dir, 'main.py'), 'print(1)\n');
  try {
    const r = await kbatch(['job', 'submit', '-n', 'j', '--image', 'busybox', '--code', dir], {
      KBATCH_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    });
    assert.is(r.code, 0, r.stderr);
    assert.is(seen.length, 2);
    assert.match(seen[0]!.key!, uuid);
    assert.is(seen[1]!.key, seen[0]!.key);
    assert.ok(seen[0]!.bytes > 0);
    assert.is(seen[1]!.bytes, seen[0]!.bytes);
  } finally {
    server.close();
  }
});
idempotent('a refusal (400) is not retried', async () => {
  const { fetch, methods } = scripted([answer(400, { detail: 'image: bad', status: 400, reason: 'BadRequest', field: 'image' })]);
  const r = await kbatch(['job', 'submit', '-n', 'j', '--image', 'busybox'], {}, fetch);
  assert.is(r.code, 1);
  assert.equal(methods, ['POST']);
});
idempotent.run();
