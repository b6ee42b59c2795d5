/**
 * Who the caller is and where they may act, through the real stack (Hub + CHP + server + cluster):
 * crafted, unicode and symbol-only Hub names each get their own valid namespace, a namespace recorded
 * as someone else's is refused, and a token revoked or expired at the Hub stops working within the
 * cache time (or at its expiry).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { namespaceForUser } from '../../lib/k8s/names.ts';
import { startServer } from '../stack/server.ts';
import { serverSettings, startStack } from '../stack/stack.ts';
import { adminClients, client, codeForm, eventually } from './helpers.ts';

/** Short, so the revocation test waits seconds; the expiry test uses its own server with a long one. */
const cacheSeconds = 3;
const stack = await startStack({ KBATCH_AUTH_CACHE_SECONDS: String(cacheSeconds) });
const admin = adminClients(stack.cluster.adminKubeconfig);
const as = async (name: string) => client(stack.serviceUrl, await stack.hub.createToken(name));
const ownerAnnotation = 'kbatch.jupyter.org/username';
const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

async function submit(call: Awaited<ReturnType<typeof as>>, name: string) {
  const res = await call('POST', 'api/v1/jobs', { json: { name, image: 'busybox', command: ['sh', '-c', 'echo hi; sleep 30'] } });
  assert.is(res.status, 201, res.text);
  return res.body.name as string;
}

// ---------------------------------------------------------------------------------------------
const crafted = suite('a crafted name cannot reach the jobs of the user it used to collide with');
const victimName = 'first.last';
// sha256 of both starts with 23e1b5a: under the 7-hex scheme both were kbatch-first-last--23e1b5a.
const attackerName = '-__first.@.~last_~._';
const victim = await as(victimName);
const attacker = await as(attackerName);
let victimJob = '';

crafted('the two names get different namespaces, each recording its exact owner', async () => {
  victimJob = await submit(victim, 'private');
  await submit(attacker, 'mine');
  const [victimNs, attackerNs] = [namespaceForUser(victimName), namespaceForUser(attackerName)];
  assert.is.not(victimNs, attackerNs);
  assert.is((await admin.core.readNamespace({ name: victimNs })).metadata!.annotations![ownerAnnotation], victimName);
  assert.is((await admin.core.readNamespace({ name: attackerNs })).metadata!.annotations![ownerAnnotation], attackerName);
  assert.is((await attacker('GET', 'authorized')).body.namespace, attackerNs);
});
crafted('the attacker lists only their own jobs, natively and through the upstream API', async () => {
  const native = await attacker('GET', 'api/v1/jobs');
  assert.is(native.status, 200);
  assert.not.ok(native.body.items.some((job: { name: string }) => job.name === victimJob));
  const upstream = await attacker('GET', 'jobs/');
  assert.is(upstream.status, 200);
  assert.not.ok(upstream.body.items.some((job: { metadata: { name: string } }) => job.metadata.name === victimJob));
  const pods = await attacker('GET', `pods/?job_name=${victimJob}`);
  assert.equal(pods.body.items, []);
});
crafted("the attacker cannot show, read the logs of, or delete the victim's job", async () => {
  assert.is((await attacker('GET', `api/v1/jobs/${victimJob}`)).status, 404);
  assert.is((await attacker('GET', `jobs/${victimJob}`)).status, 404);
  assert.is((await attacker('GET', `api/v1/jobs/${victimJob}/logs`)).status, 404);
  assert.is((await attacker('DELETE', `api/v1/jobs/${victimJob}`)).status, 404);
  assert.is((await attacker('DELETE', `jobs/${victimJob}`)).status, 404);
  const mine = await victim('GET', `api/v1/jobs/${victimJob}`);
  assert.is(mine.status, 200, "the victim's job survived");
});
crafted.run();

// ---------------------------------------------------------------------------------------------
const unicode = suite('unicode and symbol-only Hub names submit and list');
// JupyterHub refuses names of dots only ("..."), so ".-." stands in for a name of symbols and dots.
for (const name of ['田中太郎', '😀', '-', '.-.']) {
  unicode(`${name}: a valid namespace owned by exactly "${name}", a job submitted and listed`, async () => {
    const call = await as(name);
    const job = await submit(call, 'hello');
    const namespace = namespaceForUser(name);
    assert.ok(namespace.length <= 63 && dnsLabel.test(namespace), namespace);
    assert.is((await admin.core.readNamespace({ name: namespace })).metadata!.annotations![ownerAnnotation], name);
    const listed = await call('GET', 'api/v1/jobs');
    assert.is(listed.status, 200, listed.text);
    assert.ok(listed.body.items.some((item: { name: string }) => item.name === job));
    assert.is((await call('GET', 'authorized')).body.name, name);
  });
}
unicode.run();

// ---------------------------------------------------------------------------------------------
const foreign = suite("a namespace recorded as someone else's is refused, for reads and writes");
const erinNs = namespaceForUser('erin');
let erin: Awaited<ReturnType<typeof as>>;
foreign.before(async () => {
  erin = await as('erin');
  await admin.core.createNamespace({ body: { metadata: { name: erinNs, annotations: { [ownerAnnotation]: 'mallory' } } } });
  // Something to protect: a job already in there, which erin must neither see nor delete.
  await admin.batch.createNamespacedJob({
    namespace: erinNs,
    body: {
      metadata: { name: 'mallorys-job' },
      spec: { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'job', image: 'busybox' }] } } },
    },
  });
});
const refusals: [string, string, () => Promise<{ status: number; body: any; text: string }>][] = [
  ['native list', 'GET api/v1/jobs', () => erin('GET', 'api/v1/jobs')],
  ['native show', 'GET api/v1/jobs/mallorys-job', () => erin('GET', 'api/v1/jobs/mallorys-job')],
  ['native logs', 'GET api/v1/jobs/mallorys-job/logs', () => erin('GET', 'api/v1/jobs/mallorys-job/logs')],
  ['native delete', 'DELETE api/v1/jobs/mallorys-job', () => erin('DELETE', 'api/v1/jobs/mallorys-job')],
  ['native submit', 'POST api/v1/jobs', () => erin('POST', 'api/v1/jobs', { json: { name: 'x', image: 'busybox', command: ['true'] } })],
  ['upload', 'POST api/v1/uploads', () => erin('POST', 'api/v1/uploads', { form: codeForm({ 'main.py': 'print(1)' }) })],
  ['upstream list', 'GET jobs/', () => erin('GET', 'jobs/')],
  ['upstream delete', 'DELETE jobs/mallorys-job', () => erin('DELETE', 'jobs/mallorys-job')],
  ['upstream pods', 'GET pods/', () => erin('GET', 'pods/')],
  ['upstream cronjobs', 'GET cronjobs/', () => erin('GET', 'cronjobs/')],
  ['whoami', 'GET authorized', () => erin('GET', 'authorized')],
];
for (const [what, request, call] of refusals) {
  foreign(`${what} (${request}) is 403 NamespaceOwnedByOther`, async () => {
    const res = await call();
    assert.is(res.status, 403, res.text);
    assert.is(res.body.reason, 'NamespaceOwnedByOther');
    assert.not.match(res.body.detail, /mallory/);
  });
}
foreign('nothing was changed in the namespace', async () => {
  const jobs = await admin.batch.listNamespacedJob({ namespace: erinNs });
  assert.equal(
    jobs.items.map((job) => job.metadata!.name),
    ['mallorys-job'],
  );
  const ns = await admin.core.readNamespace({ name: erinNs });
  assert.is(ns.metadata!.annotations![ownerAnnotation], 'mallory');
});
foreign.run();

// ---------------------------------------------------------------------------------------------
const revocation = suite('a token revoked or expired at the Hub stops working');
revocation(`a revoked token is refused within the cache time (${cacheSeconds} s)`, async () => {
  const token = await stack.hub.createToken('alice');
  const call = client(stack.serviceUrl, token);
  assert.is((await call('GET', 'api/v1/jobs')).status, 200);
  // Revoke it at the Hub, as the user would on the token page: the token deletes itself.
  const self = await (await fetch(`${stack.hub.apiUrl}/user`, { headers: { authorization: `token ${token}` } })).json();
  const deleted = await fetch(`${stack.hub.apiUrl}/users/alice/tokens/${self.token_id}`, {
    method: 'DELETE',
    headers: { authorization: `token ${token}` },
  });
  assert.is(deleted.status, 204);
  const revokedAt = Date.now();
  await eventually(
    'the revoked token to be refused',
    async () => (await call('GET', 'api/v1/jobs')).status === 401,
    (cacheSeconds + 2) * 1000,
    100,
  );
  const seconds = (Date.now() - revokedAt) / 1000;
  assert.ok(seconds <= cacheSeconds + 0.5, `refused only after ${seconds} s`);
});
revocation('a token is refused once it expires, even when the cache time is much longer', async () => {
  // Directly, not through the Hub's proxy: the proxy routes to the stack's server, whose cache is short.
  const server = await startServer({
    ...serverSettings,
    KUBECONFIG: stack.cluster.kbatchKubeconfig,
    JUPYTERHUB_API_URL: stack.hub.apiUrl,
    KBATCH_AUTH_CACHE_SECONDS: '60',
  });
  try {
    const token = await stack.hub.createToken('alice', { expiresIn: 3 });
    const call = client(server.url, token);
    const self = await (await fetch(`${stack.hub.apiUrl}/user`, { headers: { authorization: `token ${token}` } })).json();
    const model = await (
      await fetch(`${stack.hub.apiUrl}/users/alice/tokens/${self.token_id}`, { headers: { authorization: `token ${token}` } })
    ).json();
    const expiresAt = Date.parse(model.expires_at);
    assert.is((await call('GET', 'api/v1/jobs')).status, 200);
    await new Promise((r) => setTimeout(r, Math.max(0, expiresAt - Date.now()) + 100));
    const res = await call('GET', 'api/v1/jobs');
    assert.is(res.status, 401, `still served ${((Date.now() - expiresAt) / 1000).toFixed(1)} s after it expired`);
  } finally {
    await server.stop();
  }
});
revocation.run();

// ---------------------------------------------------------------------------------------------
const teardown = suite('teardown');
teardown('stops the stack', async () => {
  await stack.stop();
});
teardown.run();
