import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { KbatchApi } from '../../cli/api.ts';
import { ApiClient } from '../../cli/client.ts';
import { LogCursor, followLogs, parseLogLine, printLogs, timestampNanos } from '../../cli/logs.ts';

const lines = suite('timestamped log lines');
lines('nanosecond and millisecond stamps compare as times, not text', () => {
  assert.ok(timestampNanos('2024-05-01T12:00:00.5Z')! > timestampNanos('2024-05-01T12:00:00.123456789Z')!);
  assert.is(timestampNanos('2024-05-01T12:00:00Z'), timestampNanos('2024-05-01T14:00:00.000+02:00'));
});
lines('a pod prefix, the stamp and the text are split apart', () => {
  const line = parseLogLine('[job-x-1] 2024-05-01T12:00:00.000000001Z hello  world')!;
  assert.equal([line.prefix, line.stamp, line.text], ['[job-x-1] ', '2024-05-01T12:00:00.000000001Z', 'hello  world']);
  assert.is(parseLogLine('2024-05-01T12:00:00Z ')!.text, '');
  assert.is(parseLogLine('2024-05-01T12:00:00Z')!.text, '');
  assert.is(parseLogLine('no stamp here'), undefined);
});
lines.run();

const cursor = suite('the resume cursor');
const at = (ms: number, text: string, prefix = '') =>
  parseLogLine(`${prefix}${new Date(Date.UTC(2024, 4, 1, 12) + ms).toISOString()} ${text}`)!;
cursor('drops what was already printed, including lines that share the last timestamp', () => {
  const c = new LogCursor();
  for (const l of [at(0, 'a'), at(10, 'b'), at(10, 'c')]) assert.ok(c.accept(l));
  c.beginReplay();
  const replayed = [at(0, 'a'), at(10, 'b'), at(10, 'c'), at(10, 'd'), at(20, 'e')].filter((l) => c.accept(l)).map((l) => l.text);
  assert.equal(replayed, ['d', 'e']);
});
cursor('tracks each pod separately and resumes from the oldest last line, a second early', () => {
  const c = new LogCursor();
  c.accept(at(5000, 'a1', '[a] '));
  c.accept(at(9000, 'b1', '[b] '));
  assert.is(c.resumeSince(), new Date(Date.UTC(2024, 4, 1, 12) + 4000).toISOString());
  c.beginReplay();
  assert.not.ok(c.accept(at(5000, 'a1', '[a] ')));
  assert.ok(c.accept(at(6000, 'a2', '[a] ')));
  assert.not.ok(c.accept(at(9000, 'b1', '[b] ')));
  assert.ok(c.accept(at(9500, 'c1', '[c] ')), 'a pod first seen after the resume is printed');
});
cursor('nothing received yet: no resume point', () => {
  assert.is(new LogCursor().resumeSince(), undefined);
});
cursor.run();

// ---- following against a server that misbehaves on purpose ----

type Script = (req: IncomingMessage, res: ServerResponse, attempt: number, query: URLSearchParams) => void;

async function fakeServer(script: Script): Promise<{ server: Server; client: KbatchApi; requests: URLSearchParams[] }> {
  const requests: URLSearchParams[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    requests.push(url.searchParams);
    script(req, res, requests.length, url.searchParams);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, client: new KbatchApi(new ApiClient(`http://127.0.0.1:${port}/services/kbatch/`, 'tok')), requests };
}

const t0 = Date.UTC(2024, 4, 1, 12);
const stamp = (ms: number) => new Date(t0 + ms).toISOString();
/** Six lines; lines 3 and 4 share a timestamp, the case a naive `since` resume gets wrong. */
const all = [
  [0, 'one'],
  [100, 'two'],
  [200, 'three'],
  [200, 'four'],
  [300, 'five'],
  [400, 'six'],
] as const;
const logText = (from = 0) =>
  all
    .filter(([ms]) => ms >= from)
    .map(([ms, text]) => `${stamp(ms)} ${text}\n`)
    .join('');

function collect() {
  let text = '';
  return { write: (t: string) => void (text += t), text: () => text };
}

const plain = suite('job logs without --follow');
plain('prints the body as sent, passing the options through', async () => {
  const { server, client, requests } = await fakeServer((_req, res) => res.end('a\nb\n'));
  try {
    const out = collect();
    await printLogs(client, 'job-x', { follow: false, timestamps: true, pod: 'job-x-abcde', since: stamp(0), tail: 10 }, out.write);
    assert.is(out.text(), 'a\nb\n');
    assert.equal(Object.fromEntries(requests[0]!), { pod: 'job-x-abcde', since: stamp(0), timestamps: 'true', tail: '10' });
  } finally {
    server.close();
  }
});
plain('a stream the server aborted is an error after the lines that did arrive', async () => {
  const { server, client } = await fakeServer((_req, res) =>
    res.end('a\n\n[kbatch] stream aborted: Kubernetes API unreachable (ECONNRESET)\n'),
  );
  try {
    const out = collect();
    await printLogs(client, 'job-x', { follow: false, timestamps: false }, out.write);
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /could not finish the logs of job job-x: Kubernetes API unreachable/);
  } finally {
    server.close();
  }
});
plain.run();

const following = suite('job logs --follow');
following('a dropped connection resumes with since=<last line> and loses or repeats nothing', async () => {
  const { server, client, requests } = await fakeServer((_req, res, attempt, query) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    if (attempt === 1) {
      // Three whole lines, half of the fourth, then the connection dies.
      res.write(logText().split('\n').slice(0, 3).join('\n') + '\n' + `${stamp(200)} fo`);
      setTimeout(() => res.socket!.destroy(), 50);
      return;
    }
    const since = Date.parse(query.get('since')!);
    res.end(logText(since - t0));
  });
  try {
    const out = collect();
    const reconnects: string[] = [];
    await followLogs(client, 'job-x', { follow: true, timestamps: false }, out.write, {
      jobFinished: async () => true,
      sleep: async () => {},
      onReconnect: (_n, reason) => reconnects.push(reason),
    });
    assert.is(out.text(), 'one\ntwo\nthree\nfour\nfive\nsix\n');
    assert.is(requests.length, 2);
    assert.is(requests[0]!.get('timestamps'), 'true', 'timestamps are always asked for');
    assert.is(requests[0]!.get('follow'), 'true');
    assert.is(requests[0]!.get('since'), null);
    assert.ok(Date.parse(requests[1]!.get('since')!) <= t0 + 200, 'resumes no later than the last line received');
    assert.is(reconnects.length, 1);
  } finally {
    server.close();
  }
});
following('--timestamps keeps the stamps the CLI asked for anyway', async () => {
  const { server, client } = await fakeServer((_req, res) => res.end(logText()));
  try {
    const out = collect();
    await followLogs(client, 'job-x', { follow: true, timestamps: true }, out.write, { jobFinished: async () => true });
    assert.is(out.text(), logText());
  } finally {
    server.close();
  }
});
following('the server\'s in-band "stream aborted" marker counts as a drop', async () => {
  const { server, client } = await fakeServer((_req, res, attempt) => {
    if (attempt === 1) res.end(`${stamp(0)} one\n${stamp(100)} two\n\n[kbatch] stream aborted: Kubernetes API unreachable (ECONNRESET)\n`);
    else res.end(logText());
  });
  try {
    const out = collect();
    await followLogs(client, 'job-x', { follow: true, timestamps: false }, out.write, {
      jobFinished: async () => true,
      sleep: async () => {},
    });
    assert.is(out.text(), 'one\ntwo\nthree\nfour\nfive\nsix\n');
  } finally {
    server.close();
  }
});
following('a clean end while the job still runs (a proxy timeout) resumes too', async () => {
  let finished = false;
  const { server, client, requests } = await fakeServer((_req, res, attempt) => {
    if (attempt === 1) res.end(`${stamp(0)} one\n`);
    else {
      finished = true;
      res.end(logText());
    }
  });
  try {
    const out = collect();
    await followLogs(client, 'job-x', { follow: true, timestamps: false }, out.write, {
      jobFinished: async () => finished,
      sleep: async () => {},
    });
    assert.is(out.text(), 'one\ntwo\nthree\nfour\nfive\nsix\n');
    assert.is(requests.length, 2);
  } finally {
    server.close();
  }
});
following('prefixed lines of several pods are deduplicated per pod', async () => {
  const pods = (from: number) =>
    [
      [0, '[p-a] ', 'a1'],
      [50, '[p-b] ', 'b1'],
      [100, '[p-a] ', 'a2'],
      [150, '[p-b] ', 'b2'],
    ]
      .filter(([ms]) => (ms as number) >= from)
      .map(([ms, prefix, text]) => `${prefix}${stamp(ms as number)} ${text}\n`)
      .join('');
  const { server, client } = await fakeServer((_req, res, attempt, query) => {
    res.writeHead(200);
    if (attempt === 1) {
      res.write(pods(0).split('\n').slice(0, 2).join('\n') + '\n');
      setTimeout(() => res.socket!.destroy(), 50);
    } else res.end(pods(Date.parse(query.get('since')!) - t0));
  });
  try {
    const out = collect();
    await followLogs(client, 'job-x', { follow: true, timestamps: false }, out.write, {
      jobFinished: async () => true,
      sleep: async () => {},
    });
    assert.is(out.text(), '[p-a] a1\n[p-b] b1\n[p-a] a2\n[p-b] b2\n');
  } finally {
    server.close();
  }
});
following('gives up with a clear error when the server stays away', async () => {
  const { server, client } = await fakeServer((_req, res, attempt) => {
    if (attempt > 1) return res.socket!.destroy();
    res.writeHead(200);
    res.write(`${stamp(0)} one\n`);
    setTimeout(() => res.socket!.destroy(), 20);
  });
  try {
    await followLogs(client, 'job-x', { follow: true, timestamps: false }, () => {}, {
      jobFinished: async () => false,
      sleep: async () => {},
      maxReconnects: 2,
    });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /lost the log stream of job job-x/);
  } finally {
    server.close();
  }
});
following('a server that cannot be reached at all fails at once, without retries', async () => {
  const { server, client } = await fakeServer(() => {});
  server.close();
  server.closeAllConnections();
  let slept = 0;
  try {
    await followLogs(client, 'job-x', { follow: true, timestamps: false }, () => {}, {
      jobFinished: async () => true,
      sleep: async () => void slept++,
    });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /cannot reach kbatch at http:\/\/127\.0\.0\.1:\d+\/services\/kbatch\/ \(ECONNREFUSED\)/);
    assert.is(slept, 0);
  }
});
following('a 404 is not retried: the job does not exist', async () => {
  const { server, client, requests } = await fakeServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ detail: 'jobs.batch "job-x" not found', status: 404 }));
  });
  try {
    await followLogs(client, 'job-x', { follow: true, timestamps: false }, () => {}, {
      jobFinished: async () => true,
      sleep: async () => {},
    });
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match((error as Error).message, /job job-x not found/);
    assert.is(requests.length, 1);
  } finally {
    server.close();
  }
});
following.run();
