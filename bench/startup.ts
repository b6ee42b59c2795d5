/**
 * Cold-start cost of a function process: time until it answers its first request, and its RSS,
 * for the bundled function (what Knative runs) against the same code run unbundled through tsx,
 * and against a bare functions-framework hello world (the floor). Prints a table and ratios.
 *   npx tsx bench/startup.ts [runs=5]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { bundle } from '../scripts/bundle.ts';
import { freePort } from '../test/stack/server.ts';

const root = resolve(import.meta.dirname, '..');
const runs = Number(process.argv[2] ?? 5);
const dist = mkdtempSync(join(tmpdir(), 'kbatch-bench-'));
await bundle(dist);
const floor = join(dist, 'floor.mjs');
const { writeFileSync } = await import('node:fs');
writeFileSync(floor, `import { http } from '${join(root, 'node_modules/@google-cloud/functions-framework/build/src/index.js')}';\nimport { getTestServer } from '${join(root, 'node_modules/@google-cloud/functions-framework/build/src/testing.js')}';\nhttp('f', (req, res) => res.send('ok'));\ngetTestServer('f').listen(Number(process.env.PORT), '127.0.0.1');\n`);

// A kubeconfig is needed for the Kubernetes backend to load client-node; nothing is contacted.
const kubeconfig = join(dist, 'kubeconfig');
writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n');

const variants: Record<string, string[]> = {
  'functions-framework hello (floor)': [floor],
  'jobs function, bundled (deployed)': [join(dist, 'jobs.mjs')],
  'jobs function, tsx unbundled': ['--import', 'tsx', join(root, 'functions/jobs/index.ts')],
};

async function measure(args: string[]): Promise<{ ms: number; rssMb: number }> {
  const port = await freePort();
  const started = process.hrtime.bigint();
  const child = spawn(process.execPath, args, { env: { ...process.env, PORT: String(port), KBATCH_BACKEND: 'kubernetes', KUBECONFIG: kubeconfig, JUPYTERHUB_API_URL: 'http://127.0.0.1:1/hub/api' }, stdio: 'ignore' });
  try {
    for (;;) {
      try {
        await fetch(`http://127.0.0.1:${port}/`);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const { readFileSync } = await import('node:fs');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
    return { ms, rssMb: rssKb / 1024 };
  } finally {
    child.kill('SIGKILL');
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const results: Record<string, { ms: number; rssMb: number }> = {};
for (const [name, args] of Object.entries(variants)) {
  const samples = [];
  for (let i = 0; i < runs; i++) samples.push(await measure(args));
  results[name] = { ms: median(samples.map((s) => s.ms)), rssMb: median(samples.map((s) => s.rssMb)) };
}
const base = results['functions-framework hello (floor)']!;
console.log(`startup to first response, median of ${runs} (node ${process.version})`);
for (const [name, r] of Object.entries(results)) {
  console.log(`${name.padEnd(36)} ${r.ms.toFixed(0).padStart(6)} ms (${(r.ms / base.ms).toFixed(2)}x floor)  ${r.rssMb.toFixed(0).padStart(4)} MB RSS`);
}
const bundled = results['jobs function, bundled (deployed)']!;
const unbundled = results['jobs function, tsx unbundled']!;
console.log(`bundling saves ${(unbundled.ms - bundled.ms).toFixed(0)} ms (${(unbundled.ms / bundled.ms).toFixed(2)}x faster) and ${(unbundled.rssMb - bundled.rssMb).toFixed(0)} MB`);
