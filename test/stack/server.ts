import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { deployedMemoryEnv } from '../../bench/lib.ts';

const repoRoot = resolve(import.meta.dirname, '../..');

export interface KbatchServer {
  /** Base URL including the service prefix, with a trailing slash. */
  url: string;
  port: number;
  logFile: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * A test that dies before its teardown (a throw at top level, an assertion in setup) must not leave
 * servers behind: the children run in their own process groups, so kill those groups on exit.
 */
export function killOnExit(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): void {
  const kill = () => {
    if (child.exitCode === null && child.pid) {
      try {
        process.kill(-child.pid, signal);
      } catch {
        /* already gone */
      }
    }
  };
  process.once('exit', kill);
  child.once('exit', () => process.off('exit', kill));
}

/** Starts the one-process server (`server.ts`) as a real child process, the way `npm start` does. */
export async function startServer(
  env: Record<string, string>,
  options: { prefix?: string; port?: number; entry?: string[] } = {},
): Promise<KbatchServer> {
  const port = options.port ?? (await freePort());
  const prefix = options.prefix ?? '/services/kbatch/';
  const logFile = join(mkdtempSync(join(tmpdir(), 'kbatch-server-')), 'server.log');
  const log = createWriteStream(logFile);
  const child = spawn(process.execPath, options.entry ?? ['--import', 'tsx', join(repoRoot, 'server.ts')], {
    cwd: repoRoot,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      PORT: String(port),
      KBATCH_PREFIX: prefix,
      KBATCH_UPLOAD_SECRET: 'test-upload-secret-0123456789abcdef0123',
      // As in the image, so memory bounds measured in tests hold for what is deployed.
      ...deployedMemoryEnv(),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  killOnExit(child);
  const url = `http://127.0.0.1:${port}${prefix}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`kbatch server exited (${child.exitCode}):\n${readFileSync(logFile, 'utf8')}`);
    try {
      const response = await fetch(url);
      if (response.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`kbatch server did not start:\n${readFileSync(logFile, 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    logFile,
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.pid && process.kill(-child.pid, 'SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
      // Logs are kept when a test dies early (they explain why); a clean stop removes them.
      rmSync(dirname(logFile), { recursive: true, force: true });
    },
  };
}
