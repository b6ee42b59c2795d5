import { randomBytes } from 'node:crypto';
import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { fetchTransport as nodeFetch } from '../../cli/http.ts';
import { networkErrorCode } from '../../lib/net.ts';

async function serve(listener: RequestListener): Promise<{ server: Server; url: string }> {
  const server = createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` };
}

/** 16 MiB in 64 KiB chunks, as an upload streams. */
const bigBody = () =>
  Readable.from(
    (function* () {
      const chunk = randomBytes(64 * 1024);
      for (let i = 0; i < 256; i++) yield chunk;
    })(),
  );

const uploads = suite('the transport under an upload the server gives up on');
uploads('an answer, then the socket cut while the body is still going: the answer is read, nothing crashes', async () => {
  const { server, url } = await serve((req, res) => {
    let seen = 0;
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen < 256 * 1024 || res.headersSent) return;
      res.writeHead(413, { 'content-type': 'application/json' });
      res.end('{"detail":"too large","status":413,"reason":"UploadTooLarge"}', () => req.socket.destroy());
    });
  });
  try {
    const response = await nodeFetch(url, { method: 'POST', headers: {}, body: bigBody() });
    assert.is(response.status, 413);
    assert.match(await response.text(), /UploadTooLarge/);
    // Give a late socket error the time to surface: an unhandled one would end this process.
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    server.close();
  }
});
uploads('a socket cut without any answer is a network error, not a hang', async () => {
  const { server, url } = await serve((req) => {
    let seen = 0;
    req.on('data', (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > 256 * 1024) req.socket.destroy();
    });
  });
  try {
    await nodeFetch(url, { method: 'POST', headers: {}, body: bigBody() });
    assert.unreachable('should have failed');
  } catch (error) {
    assert.ok(networkErrorCode(error), `a network error code, got ${(error as Error).message}`);
  } finally {
    server.close();
  }
});
uploads.run();

const redirects = suite('redirects');
redirects('a GET follows them, as fetch does; a POST does not (its body is gone)', async () => {
  const { server, url } = await serve((req, res) => {
    if (req.url === '/old') {
      res.writeHead(302, { location: '/new' });
      return res.end();
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`at ${req.url}`);
  });
  try {
    const get = await nodeFetch(`${url}old`, { method: 'GET', headers: {} });
    assert.is(await get.text(), 'at /new');
    const post = await nodeFetch(`${url}old`, { method: 'POST', headers: {}, body: '{}' });
    assert.is(post.status, 302);
    assert.match(post.headers.get('Location') ?? '', /\/new$/);
  } finally {
    server.close();
  }
});
redirects.run();

const framing = suite('request framing');
framing('a JSON body is sent with its length, not chunked', async () => {
  let seen: Record<string, string | string[] | undefined> = {};
  const { server, url } = await serve((req, res) => {
    seen = req.headers;
    req.resume();
    req.on('end', () => res.end('{}'));
  });
  try {
    await (
      await nodeFetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.from('{"name":"é"}') })
    ).text();
    assert.is(seen['content-length'], String(Buffer.byteLength('{"name":"é"}')));
    assert.is(seen['transfer-encoding'], undefined);
  } finally {
    server.close();
  }
});
framing.run();
