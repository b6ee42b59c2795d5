// A real JupyterHub + configurable-http-proxy on loopback, for integration tests.
//
//   const hub = await startHub({ serviceUrl: 'http://127.0.0.1:PORT' });
//   fetch(`${hub.url}/services/kbatch/...`, { headers: { Authorization: `token ${hub.tokens.alice}` } });
//   await hub.stop();
//
// Run directly (`npx tsx test/stack/hub.ts`) it serves KBATCH_SERVICE_URL and waits for Ctrl-C.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Hub {
  /** Public proxy URL including base_url, without trailing slash: the service is at `${url}/services/kbatch/`. */
  url: string;
  /** Hub REST API, e.g. http://127.0.0.1:HUBPORT/hub/api — what kbatch calls as `GET {apiUrl}/user`. */
  apiUrl: string;
  /** Path prefix the service receives requests under (CHP keeps it), e.g. `/services/kbatch/`. */
  servicePrefix: string;
  /** alice and bob hold `access:services!service=kbatch`; carol's token is valid but lacks it. */
  tokens: { alice: string; bob: string; carol: string };
  createToken(user: string, opts?: { expiresIn?: number; scopes?: string[] }): Promise<string>;
  /** The kbatch service's OAuth client secret (its api_token at the Hub): the server's KBATCH_OAUTH_CLIENT_SECRET. */
  oauthClientSecret: string;
  /** Hub + CHP log (stdout/stderr of both); gone after stop(). */
  logFile: string;
  /** Kills the hub's process group and CHP (it runs in its own session), then removes the tmp dir. */
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT the hub (not CHP): its API accepts connections but never answers, as a hung Hub. */
  pause(): void;
  resume(): void;
}

export interface StartHubOptions {
  /** Where the proxy sends /services/kbatch/*; only scheme, host and port count (JupyterHub drops the path). */
  serviceUrl: string;
  /** Must end in `/services/kbatch/`; anything before it becomes the hub's base_url (default `/services/kbatch/`). */
  servicePrefix?: string;
}

export const KBATCH_SCOPE = 'access:services!service=kbatch';
const SERVICE_SUFFIX = '/services/kbatch/';
const START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const TOKEN_LIFETIME_S = 3600;

const repoRoot = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const setupScript = join(repoRoot, 'test/hub/setup.sh');
const configFile = join(repoRoot, 'test/hub/jupyterhub_config.py');
const nodeBin = join(repoRoot, 'node_modules/.bin');

export async function startHub(opts: StartHubOptions): Promise<Hub> {
  const servicePrefix = opts.servicePrefix ?? SERVICE_SUFFIX;
  if (!servicePrefix.startsWith('/') || !servicePrefix.endsWith(SERVICE_SUFFIX)) {
    throw new Error(`servicePrefix must look like /[base/]services/kbatch/, got ${servicePrefix}`);
  }
  const baseUrl = servicePrefix.slice(0, -SERVICE_SUFFIX.length + 1); // '/' or '/compute/'

  const venv = await ensureVenv();
  const stateDir = mkdtempSync(join(tmpdir(), 'kbatch-hub-'));
  const logFile = join(stateDir, 'hub.log');
  const [proxyPort, proxyApiPort, hubPort] = await freePorts(3);
  const proxyAuthToken = randomHex();
  const adminToken = randomHex();
  const oauthClientSecret = randomHex();

  const url = `http://127.0.0.1:${proxyPort}${baseUrl.replace(/\/$/, '')}`;
  const apiUrl = `http://127.0.0.1:${hubPort}${baseUrl}hub/api`;
  const proxyApi = `http://127.0.0.1:${proxyApiPort}/api`;

  const logFd = openSync(logFile, 'a');
  const child = spawn(join(venv, 'bin/jupyterhub'), ['-f', configFile], {
    cwd: stateDir,
    detached: true, // own process group, so stop() can signal the hub and anything it forks at once
    stdio: ['ignore', logFd, logFd],
    env: {
      ...process.env,
      // CHP's shebang is `#!/usr/bin/env node`: make that the repo's Node 24, not whatever is on PATH.
      PATH: `${nodeBin}:${process.env.PATH ?? ''}`,
      KBATCH_HUB_STATE_DIR: stateDir,
      KBATCH_HUB_PROXY_PORT: String(proxyPort),
      KBATCH_HUB_PROXY_API_PORT: String(proxyApiPort),
      KBATCH_HUB_PORT: String(hubPort),
      KBATCH_HUB_PROXY_AUTH_TOKEN: proxyAuthToken,
      KBATCH_HUB_CHP_COMMAND: join(nodeBin, 'configurable-http-proxy'),
      KBATCH_HUB_ADMIN_TOKEN: adminToken,
      KBATCH_HUB_BASE_URL: baseUrl,
      KBATCH_SERVICE_URL: opts.serviceUrl,
      KBATCH_HUB_OAUTH_SECRET: oauthClientSecret,
    },
  });
  closeSync(logFd);
  child.unref(); // a forgotten stop() must not keep the test runner alive; the exit hook below still cleans up

  const processes = new HubProcesses(child, join(stateDir, 'jupyterhub-proxy.pid'));
  // Last resort if the runner exits without stop(): no hub or CHP left holding ports, no tmp dir left behind.
  const onRunnerExit = () => {
    processes.terminateNow();
    rmSync(stateDir, { recursive: true, force: true });
  };
  process.once('exit', onRunnerExit);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await processes.kill();
    process.off('exit', onRunnerExit);
    rmSync(stateDir, { recursive: true, force: true });
  };

  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    await waitFor('hub API', deadline, child, async () => (await fetch(`${apiUrl}/`)).ok);
    // The API answers before the proxy routes exist; JupyterHub 6 adds them only after probing the service.
    await waitFor('proxy route for the kbatch service', deadline, child, async () => {
      const res = await fetch(`${proxyApi}/routes`, { headers: { Authorization: `token ${proxyAuthToken}` } });
      const routes = res.ok ? ((await res.json()) as Record<string, unknown>) : {};
      return servicePrefix.replace(/\/$/, '') in routes;
    });
    processes.readProxyPid();

    const createToken: Hub['createToken'] = async (user, { expiresIn = TOKEN_LIFETIME_S, scopes } = {}) => {
      const res = await fetch(`${apiUrl}/users/${encodeURIComponent(user)}/tokens`, {
        method: 'POST',
        headers: { Authorization: `token ${adminToken}`, 'Content-Type': 'application/json' },
        // No `scopes` ⇒ the token inherits all of the owner's permissions (incl. the kbatch role's scope).
        body: JSON.stringify({ note: 'kbatch integration test', expires_in: expiresIn, ...(scopes && { scopes }) }),
      });
      if (res.status !== 201) throw new Error(`creating a token for ${user}: ${res.status} ${await res.text()}`);
      return ((await res.json()) as { token: string }).token;
    };

    const tokens = {
      alice: await createToken('alice'),
      bob: await createToken('bob'),
      carol: await createToken('carol'),
    };
    // Fail here, with a clear message, rather than in some test far away if the role setup ever regresses.
    for (const [user, token] of Object.entries(tokens)) {
      const scopes = await scopesOf(apiUrl, token);
      if (scopes.includes(KBATCH_SCOPE) !== (user !== 'carol')) {
        throw new Error(`unexpected scopes for ${user}'s token: ${JSON.stringify(scopes)}`);
      }
    }

    const pause = () => processes.signalHub('SIGSTOP');
    const resume = () => processes.signalHub('SIGCONT');
    return { url, apiUrl, servicePrefix, tokens, createToken, oauthClientSecret, logFile, stop, pause, resume };
  } catch (err) {
    const tail = logTail(logFile, 40);
    await stop();
    throw new Error(`${(err as Error).message}\n--- last lines of ${logFile} ---\n${tail}`, { cause: err });
  }
}

/** The hub runs in its own process group; CHP is started by the hub with start_new_session, i.e. outside it. */
class HubProcesses {
  private proxyPid: number | undefined;
  private readonly exited: Promise<void>;

  constructor(
    private readonly hub: ChildProcess,
    private readonly proxyPidFile: string,
  ) {
    this.exited = new Promise((resolve) => hub.once('exit', () => resolve()));
  }

  /** Synchronous, for process 'exit': SIGTERM both; the hub then stops on its own, CHP too. */
  terminateNow(): void {
    this.readProxyPid();
    this.killNow('SIGTERM');
    if (this.proxyPid) signal(-this.proxyPid, 'SIGTERM');
  }

  /** Read while the hub runs: it deletes the pid file when it shuts CHP down itself. */
  readProxyPid(): void {
    if (this.proxyPid) return;
    try {
      const pid = Number(readFileSync(this.proxyPidFile, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0) this.proxyPid = pid;
    } catch {
      // CHP not started (yet): nothing to clean up outside the hub's process group
    }
  }

  async kill(): Promise<void> {
    this.readProxyPid();
    this.killNow('SIGCONT'); // a paused hub would sit on SIGTERM until continued
    // SIGTERM lets the hub stop CHP and clean up (cleanup_proxy); SIGKILL only if it hangs.
    this.killNow('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, STOP_GRACE_MS, false)));
    const graceful = await Promise.race([this.exited.then(() => true), grace]);
    clearTimeout(timer); // a pending timer would hold the runner open for the rest of the grace period
    if (!graceful) this.killNow('SIGKILL');
    await this.exited;
    if (this.proxyPid && isAlive(this.proxyPid)) {
      signal(-this.proxyPid, 'SIGTERM');
      await sleep(200);
      if (isAlive(this.proxyPid)) signal(-this.proxyPid, 'SIGKILL');
    }
  }

  signalHub(sig: NodeJS.Signals): void {
    this.killNow(sig);
  }

  private killNow(sig: NodeJS.Signals): void {
    if (this.hub.pid && this.hub.exitCode === null && this.hub.signalCode === null) signal(-this.hub.pid, sig);
  }
}

async function ensureVenv(): Promise<string> {
  // Fast when warm (a marker-file check); a cold install takes ~20 s and is not counted against START_TIMEOUT_MS.
  const child = spawn('bash', [setupScript], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const venv = out.trim().split('\n').pop();
  if (code !== 0 || !venv) throw new Error(`${setupScript} failed (exit ${code})`);
  return venv;
}

async function scopesOf(apiUrl: string, token: string): Promise<string[]> {
  const res = await fetch(`${apiUrl}/user`, { headers: { Authorization: `token ${token}` } });
  if (!res.ok) throw new Error(`GET ${apiUrl}/user: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { scopes: string[] }).scopes;
}

async function waitFor(what: string, deadline: number, hub: ChildProcess, ready: () => Promise<boolean>) {
  for (;;) {
    if (hub.exitCode !== null || hub.signalCode !== null) {
      throw new Error(`jupyterhub exited (${hub.exitCode ?? hub.signalCode}) while waiting for the ${what}`);
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${START_TIMEOUT_MS / 1000} s waiting for the ${what}`);
    await sleep(100);
  }
}

/** Holds all listeners open together so the kernel can't hand out the same port twice. */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  const ports = await Promise.all(
    servers.map(
      (server) =>
        new Promise<number>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
        }),
    ),
  );
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function logTail(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err; // already gone is fine
  }
}

const randomHex = () => randomBytes(32).toString('hex');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const serviceUrl = process.env.KBATCH_SERVICE_URL;
  if (!serviceUrl) {
    console.error('set KBATCH_SERVICE_URL (e.g. http://127.0.0.1:8080) to where the kbatch server listens');
    process.exit(2);
  }
  const started = Date.now();
  const hub = await startHub({ serviceUrl, servicePrefix: process.env.KBATCH_SERVICE_PREFIX });
  console.log(`hub ready in ${Date.now() - started} ms (log: ${hub.logFile})`);
  console.log(`service:  ${hub.url}/services/kbatch/  ->  ${serviceUrl}`);
  console.log(`hub API:  ${hub.apiUrl}`);
  for (const [user, token] of Object.entries(hub.tokens)) console.log(`${user.padEnd(6)} ${token}`);
  console.log('Ctrl-C to stop');
  const keepAlive = setInterval(() => {}, 1 << 30); // the hub's child handle is unref'd
  // `on`, not `once`: `timeout` and terminals signal the whole group, so a second signal can arrive mid-stop.
  await new Promise<void>((resolve) => {
    process.on('SIGINT', () => resolve());
    process.on('SIGTERM', () => resolve());
  });
  clearInterval(keepAlive);
  await hub.stop();
}
