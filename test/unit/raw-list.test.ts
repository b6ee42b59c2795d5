/**
 * Raw reads (lib/k8s/connection.ts getJson): the native job list reads the API server's JSON without
 * client-node's models and without each object's managedFields, cut on the bytes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as k8s from '@kubernetes/client-node';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { toHttpError } from '../../lib/http/errors.ts';
import { getJson, PooledKubeAuthentication, textWithoutManagedFields, type RawList } from '../../lib/k8s/connection.ts';

const managed = [
  { manager: 'kubectl', operation: 'Update', fieldsType: 'FieldsV1', fieldsV1: { 'f:metadata': { 'f:labels': { '.': {}, 'f:a': {} } } } },
  { manager: 'kube-controller-manager', subresource: 'status', fieldsV1: { 'f:status': { 'f:active': {} } } },
];
function job(name: string, extra: Record<string, unknown> = {}) {
  return {
    metadata: { name, labels: { a: 'ünïcødé ✓' }, annotations: { note: 'x]}' }, ...extra },
    spec: { template: { spec: { containers: [{ name: 'job', image: 'busybox', command: ['echo', '"quoted"'] }] } } },
    status: { startTime: '2026-11-26T03:14:40Z', active: 1 },
  };
}
const withoutManaged = (list: { items: { metadata: Record<string, unknown> }[] }) => ({
  ...list,
  items: list.items.map((item) => {
    const { managedFields: _, ...metadata } = item.metadata;
    return { ...item, metadata };
  }),
});

const cut = suite('managedFields are cut from the bytes');
cut("every item's managedFields go, everything else stays (multi-byte text included)", () => {
  const list = {
    kind: 'JobList',
    metadata: { resourceVersion: '7', continue: 'abc' },
    items: [job('a', { managedFields: managed }), job('b'), job('c', { managedFields: managed })],
  };
  const text = textWithoutManagedFields(Buffer.from(JSON.stringify(list)));
  assert.not.match(text, /managedFields/);
  assert.equal(JSON.parse(text), withoutManaged(list));
});
cut('an answer without managedFields comes back as it was', () => {
  const text = JSON.stringify({ items: [job('a')] });
  assert.is(textWithoutManagedFields(Buffer.from(text)), text);
});
cut('a "]}" inside a manager\'s name cuts early: the result is not JSON, so the caller reads the answer whole', () => {
  const hostile = [{ manager: 'evil]}', operation: 'Update' }, ...managed];
  const text = textWithoutManagedFields(Buffer.from(JSON.stringify({ items: [job('a', { managedFields: hostile })] })));
  assert.throws(() => JSON.parse(text));
});
cut.run();

const read = suite('getJson over the pool');
let server: Server;
let answer: { status: number; body: string } = { status: 200, body: '{}' };
const seen: { url?: string; headers?: Record<string, unknown> } = {};
let kubeConfig: k8s.KubeConfig;
let auth: PooledKubeAuthentication;
read.before(async () => {
  server = createServer((req, res) => {
    seen.url = req.url;
    seen.headers = req.headers;
    res.writeHead(answer.status, { 'content-type': 'application/json' }).end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  kubeConfig = new k8s.KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'c', server: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'secret-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  auth = new PooledKubeAuthentication(kubeConfig);
});
read.after(async () => {
  await auth.close();
  await new Promise((resolve) => server.close(resolve));
});
read('sends the credentials and the query, asks for JSON without compression, and drops managedFields', async () => {
  const list = { metadata: { continue: 'next' }, items: [job('a', { managedFields: managed })] };
  answer = { status: 200, body: JSON.stringify(list) };
  const got = await getJson<RawList<unknown>>(
    kubeConfig,
    auth,
    '/apis/batch/v1/namespaces/ns/jobs',
    { limit: 500, continue: undefined },
    { withoutManagedFields: true },
  );
  assert.equal(got, withoutManaged(list));
  assert.is(seen.url, '/apis/batch/v1/namespaces/ns/jobs?limit=500');
  assert.is(seen.headers?.authorization, 'Bearer secret-token');
  assert.is(seen.headers?.accept, 'application/json');
  assert.is(seen.headers?.['accept-encoding'], undefined);
});
read('a hostile manager name costs the shortcut, not the answer: the list is read whole', async () => {
  const hostile = [{ manager: 'evil]},"spec":{', operation: 'Update' }];
  const list = { items: [job('a', { managedFields: hostile }), job('b', { managedFields: managed })] };
  answer = { status: 200, body: JSON.stringify(list) };
  assert.equal(await getJson(kubeConfig, auth, '/apis/batch/v1/jobs', {}, { withoutManagedFields: true }), list);
});
read("the API server's refusal is the generated clients' error, mapped once", async () => {
  answer = { status: 404, body: JSON.stringify({ kind: 'Status', message: 'namespaces "ns" not found', code: 404 }) };
  const error = await getJson(kubeConfig, auth, '/apis/batch/v1/namespaces/ns/jobs').then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.instance(error, k8s.ApiException);
  const mapped = toHttpError(error);
  assert.is(mapped.status, 404);
  assert.match(mapped.message, /namespaces "ns" not found/);
});
read.run();
