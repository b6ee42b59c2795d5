/**
 * Shutdown, on the real server process (local backend: nothing else is needed). SIGTERM ends open
 * log streams at once with the resume marker, lets a short in-flight request finish, and exits;
 * Ctrl-C twice on `npm start` exits at once.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { streamAbortMarker } from '../../lib/contract.ts';
import { freePort, killOnExit, startServer } from '../stack/server.ts';
import { client, eventually } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');
const dataDir = mkdtempSync(join(tmpdir(), 'kbatch-shutdown-'));
process.once('exit', () => rmSync(dataDir, { recursive: true, force: true }));
const localEnv = { KBATCH_BACKEND: 'local', KBATCH_LOCAL_DIR: dataDir, KBATCH_SHUTDOWN_GRACE_SECONDS: '20' };

/** A JSON submit whose body arrives in two parts: the request is in flight until `finish` is called. */
function trickledSubmit(
  port: number,
  prefix: string,
): { req: ClientRequest; finish(): void; answer: Promise<{ status: number; body: string }> } {
  const body = JSON.stringify({ name: 'late', image: 'x', command: ['true'] });
  let req!: ClientRequest;
  const answer = new Promise<{ status: number; body: string }>((done, fail) => {
    req = request(
      {
        port,
        method: 'POST',
        path: `${prefix}api/v1/jobs`,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => done({ status: res.statusCode!, body: text }));
      },
    );
    req.on('error', fail);
  });
  req.write(body.slice(0, 10));
  return { req, finish: () => req.end(body.slice(10)), answer };
}

const term = suite('SIGTERM');
term('ends an open follow at once with the resume marker, finishes a short request, then exits', async () => {
  const server = await startServer(localEnv);
  const api = client(server.url);
  const created = await api('POST', 'api/v1/jobs', { json: { name: 'long', image: 'x', command: ['sh', '-c', 'echo started; sleep 6'] } });
  assert.is(created.status, 201, created.text);
  const response = await fetch(new URL(`api/v1/jobs/${created.body.name}/logs?follow=true`, server.url));
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  await eventually('first line', async () => {
    const { value } = await reader.read();
    text += decoder.decode(value);
    return text.includes('started');
  });
  const inFlight = trickledSubmit(server.port, '/services/kbatch/');
  await new Promise((r) => setTimeout(r, 200));

  const exited = new Promise<number | null>((r) => server.process.once('exit', (code) => r(code)));
  const signalled = Date.now();
  server.process.kill('SIGTERM');
  const ended = await (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'clean end';
      text += decoder.decode(value);
    }
  })().catch(() => 'cut');
  const streamSeconds = (Date.now() - signalled) / 1000;
  assert.is(text, `started\n\n${streamAbortMarker}server shutting down; resume\n`);
  assert.is(ended, 'cut', 'the stream is cut, not ended cleanly, so clients know to resume');
  assert.ok(streamSeconds < 2, `the stream ended ${streamSeconds}s after SIGTERM`);

  // The short request was in flight when the drain began: it still gets its answer.
  inFlight.finish();
  const answer = await inFlight.answer;
  assert.is(answer.status, 201, answer.body);
  assert.is(await exited, 0);
  assert.ok((Date.now() - signalled) / 1000 < 10);
  await server.stop();
});
term.run();

const interrupt = suite('Ctrl-C on npm start');
interrupt('the first drains, the second exits at once', async () => {
  const port = await freePort();
  const child = spawn('npm', ['start', '--silent'], {
    cwd: root,
    env: { ...process.env, ...localEnv, PORT: String(port) },
    stdio: 'ignore',
    detached: true,
  });
  killOnExit(child);
  const group = -child.pid!;
  await eventually('server up', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 30_000);
  const inFlight = trickledSubmit(port, '/');
  inFlight.req.on('error', () => undefined);
  inFlight.answer.catch(() => undefined);
  await new Promise((r) => setTimeout(r, 200));
  const alive = () => {
    try {
      process.kill(group, 0);
      return true;
    } catch {
      return false;
    }
  };
  process.kill(group, 'SIGINT'); // what a terminal sends to the whole foreground group
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(alive(), 'still draining the in-flight request after the first Ctrl-C');
  const refused = await fetch(`http://127.0.0.1:${port}/healthz`).then(
    () => false,
    () => true,
  );
  assert.ok(refused, 'no new connections while draining');
  process.kill(group, 'SIGINT');
  const started = Date.now();
  await eventually('every process of npm start gone', async () => !alive(), 3000, 50);
  assert.ok(Date.now() - started < 2000);
});
interrupt.run();
