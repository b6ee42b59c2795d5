/**
 * RSS growth of one process for one large upload, without a cluster: a multipart upload is parsed
 * and spooled (lib/uploads/multipart.ts), turned into code (lib/uploads/code.ts) and, when too large
 * to hold, streamed through the same checks a store applies (lib/uploads/tar-stream.ts) into a sink;
 * a bare tar.gz body goes straight through those checks. curl sends the file from disk.
 * Usage: npx tsx bench/upload-rss.ts <repo root> <file> [archive|file|streamed]   (issue 10: ≤ 32 MB)
 *        WARM_ROUNDS=N repeats the warm-up transfer N more times, printing each one's growth.
 */
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const [root, file, mode = 'archive'] = process.argv.slice(2);
const { withMultipart } = await import(`${root}/lib/uploads/multipart.ts`);
const { codeFromMultipart } = await import(`${root}/lib/uploads/code.ts`);
const { sanitizedTar } = await import(`${root}/lib/uploads/tar-stream.ts`);
const limits = { maxBytes: 1024 * 1024 * 1024, maxFiles: 10_000 };
const mb = (n: number) => Math.round(n / 1048576);
let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
await new Promise((r) => setTimeout(r, 500));
const baseline = process.memoryUsage().rss;
peak = baseline;

const sink = () =>
  new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });
/** What a store does with a stream: the checks, then somewhere to put the bytes. */
async function store(source: import('node:stream').Readable, gzip: boolean) {
  const { tar, refusal } = sanitizedTar(source, { gzip, limits });
  await pipeline(tar, sink()).catch((error: Error) => {
    throw refusal() ?? error;
  });
  return tar.summary();
}

const server = createServer(async (req, res) => {
  try {
    if (mode === 'streamed') {
      const summary = await store(req, true);
      res.end(JSON.stringify({ files: summary.files, bytes: summary.bytes }));
      return;
    }
    const answer = await withMultipart(req, limits, async (multipart: never) => {
      const upload = codeFromMultipart(multipart, limits);
      if (upload.kind === 'archive') return { kind: 'archive', files: upload.files, bytes: upload.bytes };
      const source = upload.open();
      try {
        return { kind: 'stream', ...(await store(source, upload.gzip)) };
      } finally {
        source.destroy();
      }
    });
    res.end(JSON.stringify(answer));
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const port = (server.address() as { port: number }).port;
const curlArgs = mode === 'streamed' ? ['-H', 'content-type: application/gzip', '--data-binary', `@${file}`] : ['-F', `${mode}=@${file}`];
const send = () =>
  new Promise<string>((resolve) => {
    const curl = spawn('curl', ['-sS', ...curlArgs, `http://127.0.0.1:${port}/`]);
    let text = '';
    curl.stdout.on('data', (d) => (text += d));
    curl.on('close', () => resolve(text));
  });
// The first transfer after start sizes V8's heap and the buffer pools (tens of MB, once): the
// measure is a transfer of a warm process, as a server's uploads are after its first.
const firstGrowthMiB = mb((await send(), peak) - baseline);
for (let extra = Number(process.env.WARM_ROUNDS ?? 0); extra > 0; extra--) {
  peak = process.memoryUsage().rss;
  const before = peak;
  await send();
  console.error(`warm-up transfer: +${mb(peak - before)} MiB at peak, rss ${mb(process.memoryUsage().rss)} MiB`);
}
await new Promise((r) => setTimeout(r, 1000));
const warm = process.memoryUsage().rss;
peak = warm;
const started = Date.now();
const out = await send();
const seconds = (Date.now() - started) / 1000;
const atEnd = process.memoryUsage().rss;
await new Promise((r) => setTimeout(r, 3000));
const settled = process.memoryUsage().rss;
clearInterval(sampler);
server.close();
console.log(
  JSON.stringify({
    mode,
    answer: out.slice(0, 100),
    seconds,
    baselineMiB: mb(baseline),
    firstTransferGrowthMiB: firstGrowthMiB,
    warmMiB: mb(warm),
    peakGrowthMiB: mb(peak - warm),
    growthAtAnswerMiB: mb(atEnd - warm),
    growthAfter3sMiB: mb(settled - warm),
  }),
);
