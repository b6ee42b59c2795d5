/**
 * Notebook sweeps through the real stack (Hub proxy, server on the Kubernetes backend, control
 * plane). KWOK runs no containers, so this checks what Kubernetes is given: the indexed Job, its
 * command and the parameter sets in its env Secret; and what `job show` makes of it. Papermill
 * itself runs in test/integration/notebooks-local.test.ts.
 */
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bundleCli } from '../../scripts/bundle.ts';
import { notebookCommand } from '../../lib/jobs/notebook.ts';
import { annotations, namespaceForUser } from '../../lib/k8s/names.ts';
import { startStack } from '../stack/stack.ts';
import { adminClients, client, codeForm, runProgram } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');
await bundleCli();
const stack = await startStack();
const alice = client(stack.serviceUrl, stack.hub.tokens.alice);
const admin = adminClients(stack.cluster.adminKubeconfig);
const namespace = namespaceForUser('alice');
const home = mkdtempSync(join(tmpdir(), 'kbatch-notebooks-cluster-'));
const notebook = readFileSync(join(root, 'test/fixtures/notebooks/analysis.ipynb'));

async function showText(name: string): Promise<string> {
  const env = {
    PATH: process.env.PATH,
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    KBATCH_URL: stack.serviceUrl,
    JUPYTERHUB_API_TOKEN: stack.hub.tokens.alice,
  };
  const run = await runProgram([process.execPath, join(root, 'bin/kbatch.mjs'), 'job', 'show', name], {
    cwd: home,
    env,
    timeoutMs: 60_000,
  });
  assert.is(run.code, 0, run.stderr);
  return run.stdout;
}

const sweep = suite('a notebook sweep on Kubernetes');
sweep('is an indexed Job of the product size running the papermill entry, its sets in the env Secret', async () => {
  const spec = {
    name: 'sweep',
    image: 'jupyter/scipy-notebook',
    notebook: 'analysis.ipynb',
    parameters: { alpha: 0.5, label: "it's $(id)" },
    sweep: { seed: [1, 2, 3] },
  };
  const res = await alice('POST', 'api/v1/jobs', { form: codeForm({ 'analysis.ipynb': notebook }, spec) });
  assert.is(res.status, 201, res.text);
  const name = res.body.name as string;
  const job = await admin.batch.readNamespacedJob({ name, namespace });
  assert.is(job.spec!.completions, 3);
  assert.is(job.spec!.completionMode, 'Indexed');
  const container = job.spec!.template.spec!.containers[0]!;
  assert.equal(container.command, notebookCommand());
  assert.is(container.args, undefined);
  assert.is(container.workingDir, '/code');
  // Every env value comes from the Secret; nothing of the parameters is in the pod spec. Only where
  // the outputs go is plain env (lib/k8s/builders.ts outputsVolumeFor): the executed notebooks.
  const plain = ['KBATCH_JOB_NAME', 'KBATCH_OUTPUTS_DIR'];
  assert.equal(
    container.env!.filter((entry) => !entry.valueFrom?.secretKeyRef).map((entry) => entry.name),
    plain,
  );
  assert.ok(
    container
      .env!.filter((entry) => !plain.includes(entry.name))
      .every((entry) => entry.valueFrom?.secretKeyRef?.name === name && entry.value === undefined),
  );
  assert.not.ok(JSON.stringify(job.spec).includes('$(id)'));
  const secret = await admin.core.readNamespacedSecret({ name, namespace });
  const env = Object.fromEntries(Object.entries(secret.data!).map(([key, value]) => [key, Buffer.from(value, 'base64').toString()]));
  assert.is(env.KBATCH_NOTEBOOK, 'analysis.ipynb');
  assert.equal(
    JSON.parse(env.KBATCH_SWEEP!),
    [1, 2, 3].map((seed) => ({ alpha: 0.5, label: "it's $(id)", seed })),
  );
  assert.is(env.KBATCH_PARAMETERS, undefined);
  // Parameters are not secret: the Job records the run for `job show`, unexpanded.
  assert.equal(JSON.parse(job.metadata!.annotations![annotations.notebook]!), {
    notebook: 'analysis.ipynb',
    parameters: spec.parameters,
    sweep: spec.sweep,
  });

  const detail = await alice('GET', `api/v1/jobs/${name}`);
  assert.equal(
    detail.body.notebook.runs,
    [1, 2, 3].map((seed, index) => ({ index, parameters: { alpha: 0.5, label: "it's $(id)", seed }, output: `analysis-${index}.ipynb` })),
  );
  const text = await showText(name);
  assert.match(text, /^Command: +papermill \(kbatch notebook entry\)$/m);
  assert.match(text, /^Notebook: +analysis.ipynb$/m);
  assert.match(text, /^Sweep: +seed in \[1,2,3\]$/m);
  assert.match(text, /^ +2 +alpha=0.5, label="it's \$\(id\)", seed=3 +analysis-2.ipynb$/m);
});
sweep('a sweep beyond the completions maximum is a 400 naming it, and nothing is created', async () => {
  const values = Array.from({ length: 101 }, (_, i) => i);
  const res = await alice('POST', 'api/v1/jobs', {
    json: { name: 'huge', image: 'x', notebook: 'a.ipynb', sweep: { a: values, b: values } },
  });
  assert.is(res.status, 400, res.text);
  assert.is(res.body.field, 'sweep');
  const jobs = await admin.batch.listNamespacedJob({ namespace });
  assert.not.ok(jobs.items.some((job) => job.metadata!.name!.startsWith('huge-')));
});
sweep.run();

const upstream = suite('a papermill command on the upstream API');
upstream('needs no new field and is shown as a notebook run', async () => {
  const job = {
    api_version: 'batch/v1',
    kind: 'Job',
    metadata: { generate_name: 'pm-', labels: {}, annotations: {}, name: null, namespace: null },
    spec: {
      backoff_limit: 0,
      template: {
        metadata: { labels: {}, annotations: {} },
        spec: {
          restart_policy: 'Never',
          containers: [
            {
              name: 'job',
              image: 'jupyter/scipy-notebook',
              command: [
                'papermill',
                'analysis.ipynb',
                '/outputs/analysis.ipynb',
                '-p',
                'alpha',
                '0.5',
                '-r',
                'label',
                '3',
                '-k',
                'python3',
              ],
              args: null,
              env: [],
              working_dir: '/code',
            },
          ],
        },
      },
    },
  };
  const res = await alice('POST', 'jobs/', { json: { job, code: null } });
  assert.is(res.status, 200, res.text);
  const name = res.body.metadata.name as string;
  const detail = await alice('GET', `api/v1/jobs/${name}`);
  assert.equal(detail.body.notebook, {
    notebook: 'analysis.ipynb',
    parameters: { alpha: 0.5, label: '3' },
    source: 'command',
    runs: [{ parameters: { alpha: 0.5, label: '3' }, output: '/outputs/analysis.ipynb' }],
  });
  // The command runs as given.
  const created = await admin.batch.readNamespacedJob({ name, namespace });
  assert.equal(created.spec!.template.spec!.containers[0]!.command, job.spec.template.spec.containers[0]!.command);
  const text = await showText(name);
  assert.match(text, /^Command: +papermill analysis.ipynb \/outputs\/analysis.ipynb/m);
  assert.match(text, /^Parameters: +alpha=0.5, label="3"$/m);
});
upstream.run();

const teardown = suite('stack');
teardown('stops cleanly', async () => {
  await stack.stop();
  rmSync(home, { recursive: true, force: true });
});
teardown.run();
