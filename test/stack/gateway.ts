import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { freePort, killOnExit } from './server.ts';

const repoRoot = resolve(import.meta.dirname, '../..');

export interface Gateway {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Runs the real nginx with the config shipped in knative/gateway.yaml. Only what a cluster provides
 * differs: service DNS names resolve to local ports here, so the proxy_pass target is mapped, while
 * the routing map and the Host rewrite are used exactly as deployed.
 */
export async function startGateway(
  functions: Record<'kbatch-submit' | 'kbatch-uploads' | 'kbatch-jobs', number>,
  options: { port?: number } = {},
): Promise<Gateway> {
  const docs = readFileSync(join(repoRoot, 'knative/gateway.yaml'), 'utf8')
    .split(/^---$/m)
    .map((d) => parseYaml(d) as { kind?: string; data?: Record<string, string> });
  let config = docs.find((d) => d?.kind === 'ConfigMap')!.data!['nginx.conf']!;
  const port = options.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'kbatch-gateway-'));
  const upstreams = Object.entries(functions)
    .map(([name, p]) => `        ${name} 127.0.0.1:${p};`)
    .join('\n');
  config = config
    // The pid file and temp paths, under the pod's /tmp emptyDir when deployed, go to this run's dir.
    .replaceAll(' /tmp/', ` ${dir}/`)
    .replace(/^\s*resolver .*$/m, '')
    .replace('listen 8080;', `listen 127.0.0.1:${port};`)
    .replace(
      'proxy_pass http://$kbatch_function.kbatch.svc.cluster.local$request_uri;',
      'proxy_pass http://$kbatch_local_target$request_uri;',
    )
    .replace(
      'http {',
      `http {\n      map $kbatch_function $kbatch_local_target {\n${upstreams}\n      }\n      access_log ${dir}/access.log;\n      error_log ${dir}/error.log;`,
    )
    .replace('worker_processes 1;', `worker_processes 1;\n    error_log ${dir}/error.log;\n    daemon off;`);
  writeFileSync(join(dir, 'nginx.conf'), config);
  const child = spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  killOnExit(child);
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      /* starting */
    }
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`nginx did not start: ${readFileSync(join(dir, 'error.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    port,
    async stop() {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGQUIT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.pid) process.kill(-child.pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
