import { createServer, STATUS_CODES, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ErrorBody } from '../contract.ts';
import { installLastResort, logLine, startDraining } from './lifecycle.ts';
import type { RequestListener } from './types.ts';

export interface ServeOptions {
  port: number;
  host?: string;
  shutdownGraceSeconds: number;
  onShutdown?: () => Promise<void>;
}

/**
 * A request Node's parser refused before any handler saw it (a malformed request line, an unknown
 * method, headers over 16 KiB): still a JSON ErrorBody, then the connection closes.
 */
function answerClientError(error: NodeJS.ErrnoException & { bytesParsed?: number }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const byCode: Record<string, [number, string]> = {
    HPE_HEADER_OVERFLOW: [431, 'Request headers are too large'],
    HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Chunk extensions are too large'],
    ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request headers did not arrive in time'],
  };
  const [status, detail] = byCode[error.code ?? ''] ?? [400, 'Malformed HTTP request'];
  const body: ErrorBody = { detail, status, reason: status === 413 ? 'PayloadTooLarge' : 'BadRequest' };
  const payload = JSON.stringify(body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(payload)}\r\nconnection: close\r\n\r\n${payload}`,
  );
}

/**
 * Serves a handler straight from Node's HTTP server: no Express body parser (our handlers read
 * bodies themselves, after authenticating) and no `domain` around each request (functions-framework
 * wraps every request in one, which taxes every promise in the process). Also fixes three defaults
 * for long-lived use behind Knative: keep-alive outlives the proxies' idle timeouts (Node's 5 s
 * default races them into 502s); SIGTERM ends open streams with the resume marker and lets short
 * requests finish within the grace period; and a second Ctrl-C exits at once.
 */
export function serve(handler: RequestListener, options: ServeOptions): Promise<Server> {
  installLastResort();
  const inFlight = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    inFlight.add(res);
    res.on('close', () => inFlight.delete(res));
    void handler(req, res);
  });
  server.keepAliveTimeout = 650_000;
  server.headersTimeout = 660_000;
  server.requestTimeout = 0;
  server.on('clientError', answerClientError);

  let signals = 0;
  const shutdown = async (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      // A second Ctrl-C (or TERM) means now: no drain.
      logLine(`kbatch: second ${signal}, exiting now`);
      process.exit(130);
    }
    logLine(
      `kbatch: ${signal} received, ending open streams and draining ${inFlight.size} request(s) (up to ${options.shutdownGraceSeconds}s)`,
    );
    startDraining();
    server.close();
    server.closeIdleConnections();
    const deadline = Date.now() + options.shutdownGraceSeconds * 1000;
    while (inFlight.size && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    server.closeAllConnections();
    await options.onShutdown?.().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGTERM', (signal) => void shutdown(signal));
  process.on('SIGINT', (signal) => void shutdown(signal));

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      // After start, a server error (EMFILE on accept, ...) is logged and serving goes on.
      server.on('error', (error) => logLine(`kbatch: server error: ${error.message}`));
      resolve(server);
    });
  });
}
