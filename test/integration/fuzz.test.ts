/**
 * No request, however malformed, ends the process, leaks internals, or leaves anything behind.
 * A few thousand malformed, truncated and oversized requests go to every route through the real Hub
 * (CHP) and the real cluster, as alice and anonymously: random and bit-flipped JSON, wrong content
 * types and encodings, gzip bombs, truncated and corrupt multipart uploads, bad percent-encoding, odd
 * methods and names, large headers; and a few that only Node's own parser sees, sent straight to the
 * server. Every answer must be a JSON ErrorBody with a 4xx (503 only when a dependency is down);
 * afterwards the server is alive, its last-resort handler never fired, and alice's namespace holds
 * nothing. Deterministic for a seed (KBATCH_FUZZ_SEED), bounded in count and time.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { crc32, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { isErrorBody } from '../../lib/contract.ts';
import { startStack } from '../stack/stack.ts';
import { adminClients, client } from './helpers.ts';

const seed = Number(process.env.KBATCH_FUZZ_SEED ?? 20261126);
const stack = await startStack();
const hubUrl = new URL(stack.hub.url);
const prefix = new URL(stack.serviceUrl).pathname; // /services/kbatch/
const token = stack.hub.tokens.alice;
const maxUploadBytes = 8 * 1024 * 1024; // serverSettings in test/stack/stack.ts

/**
 * Cases failing because of code other engineers own. They still run (after the strict phase) and
 * must not end the process, but their status and the last-resort log are reported, not asserted.
 * Remove an entry once its owner's fix is merged: the case then joins the strict phase.
 */
const knownFailures: Record<string, string> = {
  // Emptied after the archives merge fixed these (each was a 500 or a last-resort exception):
  // 'multipart: truncated' (part stream error unhandled in lib/uploads/multipart.ts),
  // 'archive: corrupt deflate', 'archive: bomb with a lying size', 'archive: local header out of range'.
};

// --- deterministic randomness -------------------------------------------------------------------
function mulberry32(a: number) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = mulberry32(seed);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));

// --- cases --------------------------------------------------------------------------------------
interface Case {
  /** The class of case, as listed in knownFailures. */
  kind: string;
  method: string;
  /** Relative to the service prefix. */
  path: string;
  headers?: Record<string, string>;
  body?: Buffer;
  auth: boolean;
  /** Statuses besides 4xx this request may get (a public route answering a harmless request). */
  alsoOk?: number[];
  /**
   * Straight to the server instead of through the Hub: for paths the Hub's proxy never passes on
   * (it answers invalid percent-encoding with the Hub's own HTML 500, and resolves "..").
   */
  direct?: boolean;
}

const decodes = (path: string) => {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
};

// Invalid by construction, in ways no bit flip or truncation can repair: the native spec has no
// `name` (and an unknown field), upstream manifests have no container. So nothing can be created.
const nativeSpec = {
  zzzz: 1,
  command: ['python', 'main.py'],
  args: ['-v'],
  env: { A: 'b' },
  resources: { requests: { cpu: '1', memory: '1Gi' } },
  labels: { team: 'x' },
  completions: 2,
  parallelism: 1,
};
const upstreamJob = {
  job: {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: { generateName: 'fuzz-', labels: { a: 'b' } },
    spec: { backoffLimit: 0, template: { spec: { restartPolicy: 'Never', containers: [] } } },
  },
  code: null,
};
const upstreamCronJob = {
  job: {
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name: 'fuzz' },
    spec: { schedule: '* * * * *', jobTemplate: { spec: { template: { spec: { containers: [] } } } } },
  },
};
const jsonRoutes: { path: string; base: unknown }[] = [
  { path: 'api/v1/jobs', base: nativeSpec },
  { path: 'jobs/', base: upstreamJob },
  { path: 'cronjobs/', base: upstreamCronJob },
];
const namedRoutes = [
  ['GET', 'api/v1/jobs/NAME'],
  ['DELETE', 'api/v1/jobs/NAME'],
  ['GET', 'api/v1/jobs/NAME/logs'],
  ['GET', 'jobs/NAME'],
  ['DELETE', 'jobs/NAME'],
  ['GET', 'jobs/logs/NAME/'],
  ['GET', 'pods/NAME'],
  ['GET', 'pods/logs/NAME/'],
  ['GET', 'cronjobs/NAME'],
  ['DELETE', 'cronjobs/NAME'],
] as const;
const allPaths = [
  '',
  'healthz',
  'openapi.json',
  'profiles/',
  'authorized',
  'api/v1/uploads',
  'api/v1/jobs',
  'api/v1/jobs/x',
  'api/v1/jobs/x/logs',
  'jobs/',
  'jobs/x',
  'jobs/logs/x/',
  'pods/',
  'pods/x',
  'pods/logs/x/',
  'cronjobs/',
  'cronjobs/x',
];
const publicPaths = new Set(['', 'healthz', 'openapi.json', 'profiles/']);

const weirdValues: unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  1e308,
  -0,
  '',
  'x'.repeat(300),
  [],
  {},
  [[]],
  JSON.parse('{"__proto__": {"a": 1}}'),
  { constructor: 'x' },
  { toString: 1 },
  '\u0000',
  '\ud800',
  '😀',
  ['a', 1, null],
  { '': '' },
];
const weirdKeys = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', '', ' ', '\u0000', 'a'.repeat(200), 'zzzz'];

/** Replaces or adds one node of a JSON document with a confusing value. */
function confuse(document: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(document)) as unknown;
  const nodes: Record<string, unknown>[] = [];
  const walk = (value: unknown) => {
    if (value && typeof value === 'object') {
      nodes.push(value as Record<string, unknown>);
      for (const child of Object.values(value)) walk(child);
    }
  };
  walk(copy);
  const target = pick(nodes);
  const keys = Object.keys(target);
  const key = keys.length && random() < 0.7 ? pick(keys) : pick(weirdKeys);
  target[key] = pick(weirdValues);
  return copy;
}

function mutate(text: Buffer): Buffer {
  const copy = Buffer.from(text);
  switch (int(6)) {
    case 0: // bit flips
      for (let i = 0, n = 1 + int(8); i < n; i++) copy[int(copy.length)]! ^= 1 << int(8);
      return copy;
    case 1: // truncation
      return copy.subarray(0, int(copy.length));
    case 2: // random bytes spliced in
      return Buffer.concat([copy.subarray(0, int(copy.length)), bytes(1 + int(32)), copy.subarray(int(copy.length))]);
    case 3: // a slice duplicated
      return Buffer.concat([copy, copy.subarray(int(copy.length))]);
    case 4: // random bytes only
      return bytes(int(2048));
    default: // deep nesting, up to far beyond any sane limit
      return Buffer.from('['.repeat(65 + int(100_000)) + ']'.repeat(int(3)));
  }
}

const multipartBoundary = 'fuzzboundary0123';
function multipart(parts: { name: string; filename?: string; type?: string; data: Buffer }[], close = true): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    chunks.push(
      Buffer.from(
        `--${multipartBoundary}\r\nContent-Disposition: form-data; name="${part.name}"${part.filename ? `; filename="${part.filename}"` : ''}\r\n${part.type ? `Content-Type: ${part.type}\r\n` : ''}\r\n`,
      ),
    );
    chunks.push(part.data, Buffer.from('\r\n'));
  }
  if (close) chunks.push(Buffer.from(`--${multipartBoundary}--\r\n`));
  return Buffer.concat(chunks);
}
const multipartType = `multipart/form-data; boundary=${multipartBoundary}`;

/** A small real zip (one stored file), then cut: no central directory, so no repair by flips. */
function truncatedZip(): Buffer {
  const name = Buffer.from('main.py');
  const data = Buffer.from('print("hello")\n');
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(20, 4);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(name.length, 26);
  const whole = Buffer.concat([local, name, data]);
  return whole.subarray(0, 1 + int(whole.length - 1));
}

/** A zip with a central directory; each entry's fields can lie (sizes, offsets, compressed data). */
function zip(entries: { name: string; method: 0 | 8; data: Buffer; size: number; offset?: number }[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let position = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(entry.method, 8);
    local.writeUInt32LE(crc32(entry.data), 14);
    local.writeUInt32LE(entry.data.length, 18);
    local.writeUInt32LE(entry.size, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(entry.method, 10);
    central.writeUInt32LE(crc32(entry.data), 16);
    central.writeUInt32LE(entry.data.length, 20);
    central.writeUInt32LE(entry.size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(entry.offset ?? position, 42);
    locals.push(local, name, entry.data);
    centrals.push(central, name);
    position += 30 + name.length + entry.data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(position, 16);
  return Buffer.concat([...locals, directory, end]);
}

/** Archives no reader may accept: a corrupt deflate stream, a bomb lying about its size, an offset out of range. */
const hostileArchives: [string, Buffer][] = [
  // 0xff starts a deflate block of the reserved type 3: invalid whatever follows.
  ['corrupt deflate', zip([{ name: 'main.py', method: 8, data: Buffer.alloc(64, 0xff), size: 100 }])],
  ['bomb with a lying size', zip([{ name: 'zeros.bin', method: 8, data: deflateRawSync(Buffer.alloc(64 * 1024 * 1024)), size: 10 }])],
  ['local header out of range', zip([{ name: 'main.py', method: 0, data: Buffer.from('print(1)\n'), size: 9, offset: 0x7ffffff0 }])],
];

function buildCases(): Case[] {
  const cases: Case[] = [];
  const add = (c: Case) => cases.push(c);
  const json = { 'content-type': 'application/json' };

  for (const route of jsonRoutes) {
    const base = Buffer.from(JSON.stringify(route.base));
    for (let i = 0; i < 400; i++)
      add({ kind: 'json: mutated', method: 'POST', path: route.path, headers: json, body: mutate(base), auth: random() < 0.85 });
    for (let i = 0; i < 150; i++)
      add({
        kind: 'json: confused types',
        method: 'POST',
        path: route.path,
        headers: json,
        body: Buffer.from(JSON.stringify(confuse(route.base))),
        auth: true,
      });
    for (const type of [
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/xml',
      'text/xml',
      'application/octet-stream',
      'multipart/form-data',
      'application/json; charset=latin1',
      'image/png',
      ';;;',
      'application/json, text/plain',
      'application/jsonp',
    ]) {
      for (const auth of [true, false])
        add({ kind: 'json: wrong content type', method: 'POST', path: route.path, headers: { 'content-type': type }, body: base, auth });
    }
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    for (const [encoding, body] of [
      ['gzip', bomb],
      ['x-gzip', bomb],
      ['deflate', deflateSync(Buffer.alloc(8 * 1024 * 1024))],
      ['br', bytes(1024)],
      ['gzip, identity', bomb],
      ['compress', bytes(100)],
    ] as const) {
      for (const auth of [true, false])
        add({
          kind: 'json: compressed (bomb)',
          method: 'POST',
          path: route.path,
          headers: { ...json, 'content-encoding': encoding },
          body,
          auth,
        });
    }
    const over = route.path === 'api/v1/jobs' ? 1024 * 1024 + 1 : 2 * maxUploadBytes + 1;
    add({
      kind: 'json: oversized',
      method: 'POST',
      path: route.path,
      headers: json,
      body: Buffer.from(`{"a":"${'x'.repeat(over)}"}`),
      auth: true,
    });
    add({ kind: 'json: oversized', method: 'POST', path: route.path, headers: json, body: Buffer.alloc(over + 10, 0x20), auth: false });
    add({ kind: 'json: empty', method: 'POST', path: route.path, headers: json, body: Buffer.alloc(0), auth: true });
  }

  const validFile = multipart([{ name: 'file', filename: 'main.py', data: Buffer.from('print(1)\n') }]);
  const specPart = { name: 'spec', data: Buffer.from(JSON.stringify(nativeSpec)) };
  for (const path of ['api/v1/uploads', 'api/v1/jobs']) {
    for (let i = 0; i < 50; i++) {
      const whole = multipart(
        [...(path === 'api/v1/jobs' ? [specPart] : []), { name: 'file', filename: `f${i}.py`, data: bytes(int(4096)) }],
        false,
      );
      const cut = whole.subarray(0, int(whole.length));
      add({
        kind: 'multipart: truncated',
        method: 'POST',
        path,
        headers: { 'content-type': multipartType },
        body: random() < 0.5 ? cut : mutate(cut).subarray(0, cut.length),
        auth: true,
      });
    }
    for (let i = 0; i < 25; i++) {
      add({
        kind: 'multipart: corrupt archive',
        method: 'POST',
        path,
        headers: { 'content-type': multipartType },
        body: multipart([
          ...(path === 'api/v1/jobs' ? [specPart] : []),
          {
            name: 'archive',
            filename: pick(['code.zip', 'code.tar.gz', 'code.tgz', 'code.tar']),
            data: random() < 0.5 ? truncatedZip() : gzipSync(bytes(2048)).subarray(0, 200 + int(1000)),
          },
        ]),
        auth: true,
      });
    }
    for (const [what, archive] of hostileArchives) {
      add({
        kind: `archive: ${what}`,
        method: 'POST',
        path,
        headers: { 'content-type': multipartType },
        body: multipart([...(path === 'api/v1/jobs' ? [specPart] : []), { name: 'archive', filename: 'code.zip', data: archive }]),
        auth: true,
      });
    }
    for (const type of [
      'multipart/form-data',
      'multipart/form-data; boundary=',
      'multipart/form-data; boundary=other',
      'multipart/mixed; boundary=fuzzboundary0123',
      'multipart/form-data; boundary="unclosed',
    ]) {
      add({ kind: 'multipart: bad boundary', method: 'POST', path, headers: { 'content-type': type }, body: validFile, auth: true });
    }
    for (let i = 0; i < 10; i++)
      add({
        kind: 'multipart: garbage',
        method: 'POST',
        path,
        headers: { 'content-type': multipartType },
        body: bytes(int(8192)),
        auth: true,
      });
    add({ kind: 'multipart: anonymous', method: 'POST', path, headers: { 'content-type': multipartType }, body: validFile, auth: false });
    add({
      kind: 'multipart: wrong type',
      method: 'POST',
      path,
      headers: { 'content-type': 'application/zip' },
      body: validFile,
      auth: true,
    });
    // Over the upload limit with valid framing: refused while streaming, never stored.
    add({
      kind: 'multipart: oversized',
      method: 'POST',
      path,
      headers: { 'content-type': multipartType },
      body: multipart([
        ...(path === 'api/v1/jobs' ? [specPart] : []),
        { name: 'file', filename: 'big.bin', data: Buffer.alloc(maxUploadBytes + 1024, 1) },
      ]),
      auth: true,
    });
  }

  const names = [
    '..',
    '.',
    '%2E%2E',
    '%2e',
    '%',
    '%zz',
    '%E0%A4%A',
    '%C0%AF',
    '%00',
    'a%2Fb',
    'a%00b',
    '%FF%FE',
    'x'.repeat(2000),
    'UPPER',
    '-',
    'a..b',
    'a b',
    '%20',
    '😀',
    '%F0%9F%98%80',
    'kube-system',
    'default',
    '*',
    '%3F',
    '%23x',
    ';x',
    'a%3Fb',
  ];
  for (const [method, template] of namedRoutes) {
    for (const name of names)
      add({
        kind: 'names: odd',
        method,
        path: template.replace('NAME', name),
        auth: true,
        direct: !decodes(name) || /^(\.|%2e)/i.test(name),
      });
    for (let i = 0; i < 30; i++)
      add({
        kind: 'names: random',
        method,
        path: template.replace('NAME', encodeURIComponent(bytes(1 + int(40)).toString('latin1'))),
        auth: random() < 0.7,
      });
  }
  const badQueries = [
    'limit=abc',
    'limit=0',
    'limit=-5',
    'limit=1e400',
    'limit=99999',
    'since=garbage',
    'since=2026-13-45T99:99:99Z',
    'tail=-1',
    'tail=abc',
    'follow=%',
    'pod=..',
    'continue=%ZZ',
    'limit=%',
  ];
  for (const query of badQueries) {
    add({
      kind: 'query: bad',
      method: 'GET',
      path: `api/v1/jobs?${query}`,
      auth: true,
      alsoOk: query.startsWith('limit') || query.startsWith('continue') ? [] : [200],
    });
    add({ kind: 'query: bad', method: 'GET', path: `api/v1/jobs/nope/logs?${query}`, auth: true });
  }
  for (const path of allPaths) {
    for (const method of ['PUT', 'PATCH', 'OPTIONS', 'PROPFIND', 'MKCOL', 'PURGE', 'LOCK', 'SEARCH', 'REPORT', 'COPY']) {
      add({
        kind: 'methods: odd',
        method,
        path,
        auth: random() < 0.5,
        headers: json,
        body: random() < 0.3 ? Buffer.from('{}') : undefined,
      });
    }
    if (!publicPaths.has(path))
      add({
        kind: 'auth: none or bad',
        method: path.startsWith('api/v1/uploads') ? 'POST' : 'GET',
        path,
        auth: false,
        headers:
          random() < 0.5 ? { authorization: pick(['token', 'Bearer ', 'token ' + 'x'.repeat(5000), 'Basic YTpi', 'token \u00ff']) } : {},
      });
  }
  for (let i = 0; i < 5; i++) {
    add({ kind: 'headers: large', method: 'GET', path: 'api/v1/jobs/nope', auth: true, headers: { 'x-large': 'y'.repeat(11 * 1024) } });
    add({
      kind: 'headers: many',
      method: 'GET',
      path: 'api/v1/jobs/nope',
      auth: true,
      headers: Object.fromEntries(Array.from({ length: 90 }, (_, j) => [`x-h${j}`, 'v'.repeat(40)])),
    });
  }
  add({ kind: 'paths: unknown', method: 'GET', path: 'api/v2/jobs', auth: true });
  add({ kind: 'paths: unknown', method: 'GET', path: '../../hub/api/users', auth: true, direct: true });
  add({ kind: 'paths: unknown', method: 'GET', path: `api/v1/${'a/'.repeat(500)}`, auth: false });
  // Shuffled so that slow and fast, authenticated and anonymous cases interleave.
  for (let i = cases.length - 1; i > 0; i--) {
    const j = int(i + 1);
    [cases[i], cases[j]] = [cases[j]!, cases[i]!];
  }
  return cases;
}

// --- sending -------------------------------------------------------------------------------------
interface Answer {
  status: number;
  contentType: string;
  text: string;
  error?: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 8 });
function send(c: Case, target: { port: number; prefix: string } = { port: Number(hubUrl.port), prefix }, retried = false): Promise<Answer> {
  return new Promise((resolve) => {
    const headers: Record<string, string | number> = { ...c.headers };
    if (c.auth) headers.authorization = `token ${token}`;
    if (c.body) headers['content-length'] = c.body.length;
    // Node's client refuses to send spaces, controls and non-ASCII in a path: those go percent-encoded.
    const path = (target.prefix + c.path).replace(/[^\x21-\x7e]/gu, (ch) => encodeURIComponent(ch));
    const req = request({ host: '127.0.0.1', port: target.port, method: c.method, path, headers, agent, timeout: 20_000 }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size < 256 * 1024) chunks.push(chunk);
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode!,
          contentType: String(res.headers['content-type'] ?? ''),
          text: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', (error) => resolve({ status: res.statusCode!, contentType: '', text: '', error: error.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (error) => {
      // A kept-alive socket the Hub's proxy closed as this request went out (it closes sockets idle
      // for 5 s, and this run keeps some idle while others drain refused 16 MiB bodies): the request
      // never reached anyone. Node's documented remedy is to send it again (request.reusedSocket).
      if (req.reusedSocket && (error as NodeJS.ErrnoException).code === 'ECONNRESET' && !retried) return resolve(send(c, target, true));
      resolve({ status: 0, contentType: '', text: '', error: error.message });
    });
    req.end(c.body);
  });
}

/** What is wrong with an answer, or undefined when it is a proper JSON 4xx. */
function problem(c: Case, answer: Answer): string | undefined {
  if (answer.error) return `no answer: ${answer.error}`;
  if (c.alsoOk?.includes(answer.status)) return undefined;
  if (publicPaths.has(c.path.split('?')[0]!) && c.method === 'GET' && answer.status === 200) return undefined;
  if (!answer.contentType.includes('application/json'))
    return `status ${answer.status}, not JSON (${answer.contentType}): ${answer.text.slice(0, 120)}`;
  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch {
    return `status ${answer.status}, unparseable JSON`;
  }
  if (!isErrorBody(body)) return `status ${answer.status}, not an ErrorBody: ${answer.text.slice(0, 120)}`;
  if (body.status !== answer.status) return `body status ${body.status} != ${answer.status}`;
  if (/\n\s+at |node_modules|\/work\/|\/app\/|\.ts:\d|\.m?js:\d/.test(answer.text)) return `leaks internals: ${answer.text.slice(0, 200)}`;
  const dependencyDown = answer.status === 503 && body.reason === 'Unavailable';
  if ((answer.status < 400 || answer.status >= 500) && !dependencyDown)
    return `status ${answer.status} ${body.reason}: ${body.detail.slice(0, 160)}`;
  return undefined;
}

async function runAll(cases: Case[], concurrency = 8): Promise<{ c: Case; answer: Answer; problem?: string }[]> {
  const results: { c: Case; answer: Answer; problem?: string }[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        const answer = await send(c, c.direct ? { port: stack.server.port, prefix } : undefined);
        results.push({ c, answer, problem: problem(c, answer) });
      }
    }),
  );
  return results;
}

const serverLog = () => readFileSync(stack.server.logFile, 'utf8');
const lastResortLines = () =>
  serverLog()
    .split('\n')
    .filter((line) => line.includes('last resort'));
async function healthy(): Promise<boolean> {
  const answer = await send({ kind: 'health', method: 'GET', path: 'healthz', auth: false });
  return answer.status === 200 && stack.server.process.exitCode === null;
}

/** Failures grouped by kind, with one example per distinct problem. */
function report(results: { c: Case; problem?: string }[]): string {
  const byKind = new Map<string, Map<string, string>>();
  for (const r of results) {
    if (!r.problem) continue;
    const examples = byKind.get(r.c.kind) ?? new Map<string, string>();
    const shape = r.problem.replace(/"[^"]*"/g, '"…"').slice(0, 70);
    if (!examples.has(shape))
      examples.set(
        shape,
        `${r.c.method} ${r.c.path.slice(0, 80)}${r.c.auth ? '' : ' (anonymous)'}: ${r.problem.replace(/\s+/g, ' ').slice(0, 300)}`,
      );
    byKind.set(r.c.kind, examples);
  }
  const count = (kind: string) => results.filter((r) => r.problem && r.c.kind === kind).length;
  return [...byKind]
    .map(([kind, examples]) => `${kind}: ${count(kind)} failing\n  ${[...examples.values()].slice(0, 12).join('\n  ')}`)
    .join('\n');
}

// --- the suites ----------------------------------------------------------------------------------
const all = buildCases();
const strict = all.filter((c) => !(c.kind in knownFailures));
const known = all.filter((c) => c.kind in knownFailures);
const namespace = (await client(stack.serviceUrl, token)('GET', 'authorized')).body.namespace as string;

const fuzz = suite(`fuzz (seed ${seed}, ${all.length} requests)`);
fuzz('every malformed request through the Hub gets a JSON 4xx, and the server stays up', async () => {
  const started = Date.now();
  const results = await runAll(strict);
  const seconds = (Date.now() - started) / 1000;
  console.error(`[fuzz] ${strict.length} requests in ${seconds.toFixed(1)}s`);
  assert.ok(await healthy(), 'the server answers its health check');
  const failures = report(results);
  assert.is(failures, '', `\n${failures}`);
  assert.equal(lastResortLines(), [], 'the last-resort handler never fired');
  assert.ok(seconds < 60, `took ${seconds}s`);
});
fuzz("what only Node's parser sees, sent straight to the server, is JSON too", async () => {
  const raw = (payload: string) =>
    new Promise<string>((resolve) => {
      const socket = connect(stack.server.port, '127.0.0.1');
      let text = '';
      socket.on('data', (chunk) => (text += chunk.toString('latin1')));
      socket.on('close', () => resolve(text));
      socket.on('error', () => resolve(text));
      socket.setTimeout(5000, () => socket.destroy());
      socket.end(payload);
    });
  const requests = [
    `FOO ${prefix}healthz HTTP/1.1\r\nHost: x\r\n\r\n`,
    `GET ${prefix}healthz HTTP/9.9\r\nHost: x\r\n\r\n`,
    `GET  HTTP/1.1\r\n\r\n`,
    `GET ${prefix}api/v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`,
    `POST ${prefix}api/v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nnot a chunk\r\n`,
    `POST ${prefix}api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello`,
    `GET ${prefix}healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n`,
    '\u0000\u0001\u0002 garbage\r\n\r\n',
  ];
  for (const payload of requests) {
    const text = await raw(payload);
    const [head = '', body = ''] = text.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 4\d\d /, JSON.stringify(payload.slice(0, 60)));
    assert.match(head, /content-type: application\/json/i);
    assert.ok(isErrorBody(JSON.parse(body)), body);
  }
  // A body cut off mid-way (the client vanishes): nobody reads an answer, the server must just go on.
  for (let i = 0; i < 5; i++)
    await raw(
      `POST ${prefix}api/v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: token ${token}\r\nContent-Type: ${multipartType}\r\nContent-Length: 100000\r\n\r\n--${multipartBoundary}\r\nContent-Disposition: form-data; name="file"; filename="a.py"\r\n\r\nprint(1)`,
    );
  assert.ok(await healthy());
  assert.equal(lastResortLines(), []);
});
fuzz("an upload far over the limit gets a JSON 413 through the Hub's proxy, never its HTML 503", async () => {
  // 64 MiB against an 8 MiB limit: the server answers first, then drains the rest before closing.
  const body = multipart([{ name: 'file', filename: 'huge.bin', data: randomBytes(64 * 1024 * 1024) }]);
  for (let i = 0; i < 3; i++) {
    const answer = await send({
      kind: 'upload: far over',
      method: 'POST',
      path: 'api/v1/uploads',
      headers: { 'content-type': multipartType },
      body,
      auth: true,
    });
    assert.is(answer.status, 413, `${answer.status} ${answer.contentType} ${answer.text.slice(0, 200)} ${answer.error ?? ''}`);
    assert.ok(isErrorBody(JSON.parse(answer.text)));
  }
  assert.ok(await healthy());
});
fuzz('known failures owned elsewhere still do not end the process (reported, not asserted)', async () => {
  if (!known.length) return;
  const results = await runAll(known);
  assert.ok(await healthy(), 'the server answers its health check');
  for (const r of results) assert.not.ok(r.answer.error && /ECONNREFUSED/.test(r.answer.error), 'the server went away');
  const failures = report(results);
  const lastResort = lastResortLines();
  console.error(
    `[fuzz] known failures, ${known.length} requests (${Object.entries(knownFailures)
      .map(([kind, owner]) => `${kind}: ${owner}`)
      .join('; ')})`,
  );
  console.error(
    failures || lastResort.length
      ? `${failures}\n${lastResort.length} last-resort line(s), e.g. ${lastResort[0] ?? ''}`
      : 'none fail any more: remove them from knownFailures',
  );
});
fuzz("nothing was created in alice's namespace", async () => {
  const { core, batch } = adminClients(stack.cluster.adminKubeconfig);
  const exists = await core.readNamespace({ name: namespace }).then(
    () => true,
    () => false,
  );
  if (!exists) return;
  const jobs = (await batch.listNamespacedJob({ namespace })).items.map((o) => o.metadata?.name);
  const cronJobs = (await batch.listNamespacedCronJob({ namespace })).items.map((o) => o.metadata?.name);
  const configMaps = (await core.listNamespacedConfigMap({ namespace })).items
    .map((o) => o.metadata?.name)
    .filter((name) => name !== 'kube-root-ca.crt');
  const secrets = (await core.listNamespacedSecret({ namespace })).items.map((o) => o.metadata?.name);
  const claims = (await core.listNamespacedPersistentVolumeClaim({ namespace })).items.map((o) => o.metadata?.name);
  assert.equal({ jobs, cronJobs, configMaps, secrets, claims }, { jobs: [], cronJobs: [], configMaps: [], secrets: [], claims: [] });
});
fuzz.after(async () => {
  agent.destroy();
  await stack.stop();
});
fuzz.run();
