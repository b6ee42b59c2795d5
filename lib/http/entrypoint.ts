import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { getTestServer } from '@google-cloud/functions-framework/testing';

export interface ServeOptions {
  port: number;
  host?: string;
  shutdownGraceSeconds: number;
  onShutdown?: () => Promise<void>;
  log?: (message: string) => void;
}

function isMultipart(req: IncomingMessage): boolean {
  return /^multipart\/form-data/i.test(req.headers['content-type'] ?? '');
}

/**
 * Serves a registered functions-framework target, fixing three of its defaults for long-lived use
 * behind Knative: multipart uploads bypass its body parser (which would buffer up to 1 GiB before
 * the handler runs) and stream straight to busboy; keep-alive outlives the proxies' idle timeouts
 * (Node's 5 s default races them into 502s); and SIGTERM drains in-flight requests instead of exiting.
 */
export function serveFunction(target: string, handler: (req: IncomingMessage, res: ServerResponse) => unknown, options: ServeOptions): Promise<Server> {
  const app = getTestServer(target).listeners('request')[0] as (req: IncomingMessage, res: ServerResponse) => void;
  const log = options.log ?? ((message: string) => console.error(message));
  const inFlight = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    inFlight.add(res);
    res.on('close', () => inFlight.delete(res));
    if (isMultipart(req)) void handler(req, res);
    else app(req, res);
  });
  server.keepAliveTimeout = 650_000;
  server.headersTimeout = 660_000;
  server.requestTimeout = 0;

  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    if (shuttingDown) return;
    shuttingDown = true;
    log(`kbatch: ${signal} received, draining ${inFlight.size} request(s) (up to ${options.shutdownGraceSeconds}s)`);
    server.close();
    server.closeIdleConnections();
    const deadline = Date.now() + options.shutdownGraceSeconds * 1000;
    while (inFlight.size && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    server.closeAllConnections();
    await options.onShutdown?.().catch(() => undefined);
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve(server));
  });
}

/** True when this module is the program being run (also after bundling). */
export function isMainModule(metaUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  return metaUrl === new URL(`file://${entry}`).href || metaUrl.endsWith(entry);
}
