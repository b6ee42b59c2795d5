/**
 * Cold start of a function process, to its FIRST AUTHENTICATED answer (issue 10: ≤ 1.5× a bare
 * functions-framework function's first answer, measured in the same run). Our jobs function answers
 * `GET /authorized`, which asks the Hub who the token is (a tiny fake Hub `/user` responder started
 * here) and reads the caller's namespace (a tiny fake API server, the same responder); the floor is a
 * bare functions-framework hello world. Variants: the bundle as deployed (dist/jobs.mjs running
 * dist/main.cjs through the V8 code cache the build made, scripts/bundle.ts), the same bundle without
 * that cache, and the sources run through tsx.
 * Runs are interleaved; medians are printed with the RSS at the first answer. Last, the CLI's own
 * time to answer `kbatch job list` (measureCli).
 *   npm run bench:startup [-- runs=7]
 */
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { bundle, startStandIn } from '../scripts/bundle.ts';
import { freePort } from '../test/stack/server.ts';

const root = resolve(import.meta.dirname, '..');
const runs = Number(process.argv[2] ?? 7);
const work = mkdtempSync(join(tmpdir(), 'kbatch-bench-startup-'));
const dist = join(work, 'dist');
await bundle(dist);
const floor = join(dist, 'floor.mjs');
writeFileSync(
  floor,
  `import { http } from '${join(root, 'node_modules/@google-cloud/functions-framework/build/src/index.js')}';\nimport { getTestServer } from '${join(root, 'node_modules/@google-cloud/functions-framework/build/src/testing.js')}';\nhttp('f', (req, res) => res.send('ok'));\ngetTestServer('f').listen(Number(process.env.PORT), '127.0.0.1');\n`,
);

// One stand-in plays the Hub (GET /hub/api/user) and the API server (GET /api/v1/namespaces/NAME).
const { server: fake, url: fakeUrl, kubeconfig } = await startStandIn(work);
// The same bundles without the code cache the build makes, to show what it is worth.
const distNoCache = join(work, 'dist-no-cache');
await bundle(distNoCache, { warm: false });

interface Variant {
  args: string[];
  /** The path of the first answer that counts. */
  path: string;
  env?: Record<string, string>;
}
const variants: Record<string, Variant> = {
  'functions-framework hello (floor)': { args: [floor], path: '/' },
  'jobs function, bundled (as deployed)': { args: [join(dist, 'jobs.mjs')], path: '/services/kbatch/authorized' },
  'jobs function, bundled, no code cache': { args: [join(distNoCache, 'jobs.mjs')], path: '/services/kbatch/authorized' },
  'jobs function, tsx unbundled': { args: ['--import', 'tsx', join(root, 'functions/jobs/index.ts')], path: '/services/kbatch/authorized' },
};

async function measure(variant: Variant): Promise<{ ms: number; rssMb: number }> {
  const port = await freePort();
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, variant.args, {
    env: {
      ...process.env,
      PORT: String(port),
      KBATCH_BACKEND: 'kubernetes',
      KUBECONFIG: kubeconfig,
      JUPYTERHUB_API_URL: `${fakeUrl}/hub/api`,
      KBATCH_PREFIX: '/services/kbatch/',
      ...variant.env,
    },
    stdio: 'ignore',
  });
  try {
    for (;;) {
      const status = await fetch(`http://127.0.0.1:${port}${variant.path}`, { headers: { authorization: 'token t' } }).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) break;
      if (status !== 0) throw new Error(`${variant.args.join(' ')}: HTTP ${status} on ${variant.path}`);
      if (child.exitCode !== null) throw new Error(`${variant.args.join(' ')} exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
    return { ms, rssMb: rssKb / 1024 };
  } finally {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * The CLI (issue 10: `kbatch job list` answers in ≤ 0.3 s of its own time): bin/kbatch.mjs running
 * this build's dist/kbatch.mjs against the one-process server of the same build (local backend, no
 * auth). Its own time is its wall time less the server's time on the request (the server's request
 * log); `node -e 0`, interleaved, shows what any Node program pays to start on this machine now.
 */
async function measureCli(): Promise<void> {
  mkdirSync(join(work, 'bin'));
  copyFileSync(join(root, 'bin/kbatch.mjs'), join(work, 'bin/kbatch.mjs'));
  const server = spawn(process.execPath, [join(dist, 'server.mjs')], {
    env: {
      PATH: process.env.PATH,
      HOME: work,
      PORT: '0',
      KBATCH_HOST: '127.0.0.1',
      KBATCH_BACKEND: 'local',
      KBATCH_AUTH: 'none',
      KBATCH_LOCAL_DIR: join(work, 'local'),
    },
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const serverMs: number[] = [];
  let pending = '';
  server.stderr!.on('data', (chunk: Buffer) => {
    const lines = (pending + chunk.toString()).split('\n');
    pending = lines.pop()!;
    for (const line of lines)
      if (line.includes('"route":"/api/v1/jobs"')) serverMs.push((JSON.parse(line) as { durationMs: number }).durationMs);
  });
  try {
    const { url } = await new Promise<{ url: string }>((ok, fail) => {
      server.once('message', (m: { url: string }) => ok(m));
      server.once('exit', (code) => fail(new Error(`server.mjs exited with ${code}`)));
    });
    const timed = async (args: string[]): Promise<number> => {
      const started = process.hrtime.bigint();
      const child = spawn(process.execPath, args, {
        env: { PATH: process.env.PATH, HOME: work, KBATCH_URL: url },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      const code = await new Promise<number | null>((r) => child.once('close', r));
      if (code !== 0) throw new Error(`${args.join(' ')} exited with ${code}: ${stderr}`);
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    const cli = [join(work, 'bin/kbatch.mjs'), 'job', 'list'];
    await timed(cli);
    serverMs.length = 0;
    const cliMs: number[] = [];
    const bareMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      cliMs.push(await timed(cli));
      bareMs.push(await timed(['-e', '0']));
    }
    const own = median(cliMs) - median(serverMs);
    console.log(
      `${'kbatch job list (CLI), its own time'.padEnd(40)} ${own.toFixed(0).padStart(6)} ms (wall ${median(cliMs).toFixed(0)} ms less ${median(serverMs).toFixed(1)} ms in the server; node -e 0: ${median(bareMs).toFixed(0)} ms)`,
    );
  } finally {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGKILL');
    await exited;
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
try {
  // One unmeasured start of each first, so no variant pays for a cold page cache.
  for (const variant of Object.values(variants)) await measure(variant);
  const samples: Record<string, { ms: number; rssMb: number }[]> = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
  for (let i = 0; i < runs; i++) {
    for (const [name, variant] of Object.entries(variants)) samples[name]!.push(await measure(variant));
  }
  const results = Object.fromEntries(
    Object.entries(samples).map(([name, s]) => [name, { ms: median(s.map((x) => x.ms)), rssMb: median(s.map((x) => x.rssMb)) }]),
  );
  const base = results['functions-framework hello (floor)']!;
  console.log(`startup to first (authenticated) answer, median of ${runs} interleaved (node ${process.version})`);
  for (const [name, r] of Object.entries(results)) {
    console.log(
      `${name.padEnd(40)} ${r.ms.toFixed(0).padStart(6)} ms (${(r.ms / base.ms).toFixed(2)}x floor)  ${r.rssMb.toFixed(0).padStart(4)} MB RSS`,
    );
  }
  await measureCli();
} finally {
  fake.close();
  rmSync(work, { recursive: true, force: true });
}
