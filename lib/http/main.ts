import * as functions from '@google-cloud/functions-framework';
import { createDeps, createHandler, type TargetName } from '../app.ts';
import { ConfigError, loadSettings } from '../config.ts';
import { describeError, logLine } from './lifecycle.ts';
import { serve } from './serve.ts';
import { setLogLevel } from '../observability/request-log.ts';
import type { RequestListener } from './types.ts';

export interface MainOptions {
  /** functions-framework target name, the deployable contract (`functions.http(target, handler)`). */
  target: string;
  /** Which routes this process serves. */
  routes: TargetName;
  /** Serve on PORT; false when the module is only imported (functions-framework loads it and serves itself). */
  serve: boolean;
}

/** True when `metaUrl` is the program being run (also after bundling, where every module shares the bundle's URL). */
export function isMainModule(metaUrl: string): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  return metaUrl === new URL(`file://${entry}`).href || metaUrl.endsWith(entry);
}

/** Startup failures are one line and an exit code, never a stack trace: 2 for configuration, 1 for the rest. */
function exitOnStartupError(error: unknown): never {
  if (error instanceof ConfigError) {
    // One line even when a parser's message carries a code frame.
    logLine(`kbatch: configuration error: ${error.message.split('\n')[0]!.trim()}`);
    process.exit(2);
  }
  logLine(`kbatch: cannot start: ${describeError(error)}`);
  process.exit(1);
}

/**
 * The one main of every process (the server and each function): load and validate settings, build
 * the dependencies, register the handler with functions-framework, serve, and say where in one line.
 */
export async function main(options: MainOptions): Promise<RequestListener> {
  try {
    const settings = loadSettings();
    setLogLevel(settings.logLevel);
    const deps = await createDeps(settings);
    const handler = createHandler(options.routes, deps);
    functions.http(options.target, handler);
    if (!options.serve) return handler;
    const server = await serve(handler, {
      port: settings.port,
      host: settings.host,
      shutdownGraceSeconds: settings.shutdownGraceSeconds,
      onShutdown: async () => deps.backend.close?.(),
    });
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : settings.port;
    const url = `http://${settings.host.includes(':') ? `[${settings.host}]` : settings.host}:${port}${settings.prefix}`;
    logLine(`${options.target} listening on ${url} (backend: ${deps.backend.kind}, auth: ${settings.auth})`);
    if (settings.backend === 'local')
      logLine(`kbatch: local backend keeps jobs under ${settings.localDataDir}; try: KBATCH_URL=${url} npx kbatch job list`);
    if (settings.uploadSecretIsEphemeral)
      logLine('kbatch: KBATCH_UPLOAD_SECRET is not set; upload references are valid for this process only');
    // Lets a parent process (the tests) learn the port when PORT=0.
    process.send?.({ ready: true, port, url });
    return handler;
  } catch (error) {
    exitOnStartupError(error);
  }
}
