/**
 * Notebook runs on the local backend behind the real Hub: the real `kbatch` binary submits a
 * notebook, real papermill (PyPI, in a venv from test/notebooks/setup.sh, first on the job's PATH:
 * local jobs are processes) executes it, and the executed notebooks are downloaded through the
 * outputs API (they outlive the job) and their injected-parameters cells checked.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundleCli } from '../../scripts/bundle.ts';
import { apiPaths, deleteOutputsQuery, type OutputList } from '../../lib/contract.ts';
import { LocalStore } from '../../lib/backend/local/store.ts';
import { namespaceForUser } from '../../lib/k8s/names.ts';
import { startHub } from '../stack/hub.ts';
import { freePort, startServer } from '../stack/server.ts';
import { client, eventually, runProgram, type CliRun } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');
const setup = spawnSync('bash', [join(root, 'test/notebooks/setup.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
if (setup.status !== 0) throw new Error(`test/notebooks/setup.sh failed (exit ${setup.status})`);
const venv = setup.stdout.trim();
const bin = join(root, 'bin/kbatch.mjs');
await bundleCli();

const port = await freePort();
const hub = await startHub({ serviceUrl: `http://127.0.0.1:${port}` });
const dataDir = mkdtempSync(join(tmpdir(), 'kbatch-notebooks-'));
const server = await startServer(
  { KBATCH_BACKEND: 'local', KBATCH_AUTH: 'hub', KBATCH_LOCAL_DIR: dataDir, JUPYTERHUB_API_URL: hub.apiUrl },
  { port },
);
const serviceUrl = `${hub.url}/services/kbatch/`;
const alice = client(serviceUrl, hub.tokens.alice);
const home = mkdtempSync(join(tmpdir(), 'kbatch-notebooks-home-'));
const project = join(home, 'project');
cpSync(join(root, 'test/fixtures/notebooks'), project, { recursive: true });
const store = new LocalStore(dataDir);
const namespace = namespaceForUser('alice');
/** The job's PATH: the venv first, then the system's (sh, and nothing with papermill). */
const withPapermill = `PATH=${venv}/bin:/usr/bin:/bin`;

function kbatch(args: string[]): Promise<CliRun> {
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    KBATCH_URL: serviceUrl,
    JUPYTERHUB_API_TOKEN: hub.tokens.alice,
  };
  return runProgram([process.execPath, bin, ...args], { cwd: project, env, timeoutMs: 120_000 });
}

function ok(run: CliRun): string {
  assert.is(run.code, 0, `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return run.stdout;
}

async function finished(name: string, timeoutMs = 120_000): Promise<{ state: string }> {
  return eventually(
    `${name} finished`,
    async () => {
      const res = await alice('GET', `api/v1/jobs/${name}?events=false`);
      return ['succeeded', 'failed'].includes(res.body.state) ? res.body : undefined;
    },
    timeoutMs,
    500,
  );
}

interface Cell {
  cell_type: string;
  source: string | string[];
  metadata: { tags?: string[] };
  outputs?: { text?: string | string[] }[];
}

/** The executed notebook, downloaded through the API (jobOutputFile): its injected-parameters cell and printed lines. */
async function executed(jobName: string, file: string): Promise<{ injected: string; printed: string }> {
  const res = await alice('GET', apiPaths.jobOutputFile(jobName, file));
  assert.is(res.status, 200, res.text);
  assert.is(res.headers.get('content-length'), String(Buffer.byteLength(res.text)));
  const notebook = JSON.parse(res.text) as { cells: Cell[] };
  const text = (value: string | string[] | undefined) => (Array.isArray(value) ? value.join('') : (value ?? ''));
  const injected = notebook.cells.find((cell) => cell.metadata.tags?.includes('injected-parameters'));
  assert.ok(injected, `${file} has an injected-parameters cell`);
  const printed = notebook.cells
    .flatMap((cell) => cell.outputs ?? [])
    .map((output) => text(output.text))
    .join('');
  return { injected: text(injected.source), printed };
}

const notebooks = suite('notebooks run with real papermill on the local backend');
notebooks('a parameterized notebook: typed values reach the injected cell and the run', async () => {
  const name = ok(
    await kbatch([
      'job',
      'submit',
      '-n',
      'nb',
      '--image',
      'jupyter/scipy-notebook',
      '--notebook',
      'analysis.ipynb',
      '-e',
      withPapermill,
      '-p',
      'alpha=0.5',
      '-p',
      'seed=7',
      '-p',
      'label=run one',
      '-p',
      'config={"layers": [2, 3]}',
    ]),
  ).trim();
  const detail = await finished(name);
  const logs = await alice('GET', `api/v1/jobs/${name}/logs`);
  assert.is(detail.state, 'succeeded', logs.text);
  assert.match(logs.text, /label=run one alpha=0.5 seed=7 config=\{'layers': \[2, 3\]\} score=/);
  const { injected, printed } = await executed(name, 'analysis.ipynb');
  assert.is(injected, '# Parameters\nalpha = 0.5\nseed = 7\nlabel = "run one"\nconfig = {"layers": [2, 3]}\n');
  assert.match(printed, 'label=run one alpha=0.5 seed=7');
  const show = ok(await kbatch(['job', 'show', name]));
  assert.match(show, /^Notebook: +project\/analysis.ipynb$/m);
  assert.match(show, /^Parameters: +alpha=0.5, seed=7, label="run one", config=\{"layers":\[2,3\]\}$/m);
  assert.match(show, /^Output: +analysis.ipynb$/m);
});
notebooks('a 3-point sweep: one executed notebook per index, each with its own parameters', async () => {
  const name = ok(
    await kbatch([
      'job',
      'submit',
      '-n',
      'sweep',
      '--image',
      'jupyter/scipy-notebook',
      '--notebook',
      'analysis.ipynb',
      '-e',
      withPapermill,
      '-p',
      'alpha=2',
      '--sweep',
      'seed=1,2,3',
      '--parallelism',
      '3',
    ]),
  ).trim();
  const detail = await finished(name);
  assert.is(detail.state, 'succeeded', (await alice('GET', `api/v1/jobs/${name}/logs`)).text);
  const listed = async () => (await alice<OutputList>('GET', apiPaths.jobOutputs(name))).body.files.map((file) => file.path);
  assert.equal(await listed(), ['analysis-0.ipynb', 'analysis-1.ipynb', 'analysis-2.ipynb']);
  for (const [index, seed] of [
    [0, 1],
    [1, 2],
    [2, 3],
  ]) {
    const { injected, printed } = await executed(name, `analysis-${index}.ipynb`);
    assert.is(injected, `# Parameters\nalpha = 2\nseed = ${seed}\n`);
    assert.match(printed, `alpha=2 seed=${seed}`);
  }
  const show = ok(await kbatch(['job', 'show', name]));
  assert.match(show, /^Sweep: +seed in \[1,2,3\]$/m);
  assert.match(show, /^ +2 +alpha=2, seed=3 +analysis-2.ipynb$/m);
  // The outputs outlive the job: once it is deleted its notebooks are still listed and downloaded.
  assert.is((await alice('DELETE', apiPaths.job(name))).status, 200);
  assert.is((await alice('GET', `api/v1/jobs/${name}?events=false`)).status, 404);
  assert.equal(await listed(), ['analysis-0.ipynb', 'analysis-1.ipynb', 'analysis-2.ipynb'], 'kept after delete');
  assert.ok(existsSync(store.outputsDir(namespace, name)), 'beside the job directory, not in it');
  assert.is((await executed(name, 'analysis-2.ipynb')).injected, '# Parameters\nalpha = 2\nseed = 3\n');
  // Bob asking for the same job name sees nothing of Alice's.
  const bob = client(serviceUrl, hub.tokens.bob);
  assert.is((await bob('GET', apiPaths.jobOutputs(name))).body.reason, 'NotFound');
  assert.is((await bob('GET', apiPaths.jobOutputFile(name, 'analysis-0.ipynb'))).status, 404);
  // Deleted with ?outputs=true after the job is gone: the outputs go, and then the name is a 404.
  const removed = await alice('DELETE', `${apiPaths.job(name)}?${deleteOutputsQuery}=true`);
  assert.is(removed.status, 200, removed.text);
  assert.is(removed.body.outputs, 3);
  assert.is((await alice('GET', apiPaths.jobOutputs(name))).status, 404);
  assert.is((await alice('DELETE', `${apiPaths.job(name)}?${deleteOutputsQuery}=true`)).status, 404);
});
notebooks('without papermill the job fails and its log says how to fix the image', async () => {
  const name = ok(
    await kbatch([
      'job',
      'submit',
      '-n',
      'nopm',
      '--image',
      'python:3.12-slim',
      '--notebook',
      'analysis.ipynb',
      '-e',
      'PATH=/usr/bin:/bin',
    ]),
  ).trim();
  // The image the message names is the job's (JUPYTER_IMAGE in its env).
  const detail = await finished(name, 30_000);
  assert.is(detail.state, 'failed');
  const logs = await alice('GET', `api/v1/jobs/${name}/logs`);
  assert.match(logs.text, 'kbatch: papermill is not installed in image python:3.12-slim: pip install papermill');
  assert.equal((await alice<OutputList>('GET', apiPaths.jobOutputs(name))).body, { job: name, files: [], totalBytes: 0 });
});
notebooks.run();

const teardown = suite('teardown');
teardown('stops', async () => {
  await server.stop();
  await hub.stop();
  rmSync(dataDir, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});
teardown.run();
