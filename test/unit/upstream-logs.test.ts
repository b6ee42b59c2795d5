/**
 * The upstream log routes on the wire: the upstream CLI prints every chunk it reads plus a newline,
 * so a followed log must be one HTTP chunk per line without its newline; a fetched log is the text.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Deps } from '../../lib/api/deps.ts';
import { upstreamJobRoutes } from '../../lib/upstream/routes.ts';
import type { Backend } from '../../lib/backend/types.ts';
import { loadSettings } from '../../lib/config.ts';
import { createRouter } from '../../lib/http/router.ts';

const alice = { name: 'alice', namespace: 'kbatch-alice', groups: [], admin: false, scopes: [], token: '' };
const lines = Array.from({ length: 500 }, (_, i) => `line ${i}`);

/** The pod log arrives in chunks that cut lines anywhere, some in one turn of the event loop, some later. */
function podLog(): Readable {
  const text = lines.map((line) => `${line}\n`).join('');
  const pieces: string[] = [];
  for (let at = 0; at < text.length; at += 777) pieces.push(text.slice(at, at + 777));
  return Readable.from(
    (async function* () {
      for (const [i, piece] of pieces.entries()) {
        if (i % 2) await new Promise((resolve) => setTimeout(resolve, 5));
        yield Buffer.from(piece);
      }
    })(),
  );
}

const backend = { kind: 'local', namespaceOwner: async () => 'alice', podLogs: async () => podLog() } as unknown as Backend;
const deps: Deps = {
  settings: loadSettings({}),
  backend,
  auth: { authenticate: async () => alice },
  admin: { profiles: {}, rawProfiles: {}, jobTemplate: undefined },
};
const handler = createRouter('/', upstreamJobRoutes(deps));
const server = createServer((req, res) => void handler(req, res));
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const port = (server.address() as { port: number }).port;

/** The raw response, and the payloads of its HTTP chunks in order. */
async function rawGet(path: string): Promise<{ head: string; chunks: string[]; body: string }> {
  const socket = connect(port, '127.0.0.1');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: token t\r\nConnection: close\r\n\r\n`);
  const parts: Buffer[] = [];
  for await (const part of socket) parts.push(part as Buffer);
  const raw = Buffer.concat(parts).toString('latin1');
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split);
  let rest = raw.slice(split + 4);
  if (!/transfer-encoding: chunked/i.test(head)) return { head, chunks: [rest], body: rest };
  const chunks: string[] = [];
  for (;;) {
    const eol = rest.indexOf('\r\n');
    const size = parseInt(rest.slice(0, eol), 16);
    if (!size) break;
    chunks.push(rest.slice(eol + 2, eol + 2 + size));
    rest = rest.slice(eol + 2 + size + 2);
  }
  return { head, chunks, body: chunks.join('') };
}

const upstream = suite('upstream log routes');
upstream('a followed log is one chunk per line, without its newline', async () => {
  const { head, chunks } = await rawGet('/pods/logs/p/?stream=true');
  assert.match(head, /^HTTP\/1.1 200/);
  assert.equal(chunks, lines);
});
upstream('a fetched log is the whole text', async () => {
  const { head, body } = await rawGet('/pods/logs/p/');
  assert.match(head, /^HTTP\/1.1 200/);
  assert.is(body, lines.map((line) => `${line}\n`).join(''));
});
upstream.after(() => {
  server.close();
});
upstream.run();
