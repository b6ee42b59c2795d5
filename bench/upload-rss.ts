/**
 * RSS growth of one process for one large multipart upload: parse (lib/uploads/multipart.ts) and
 * normalise (lib/uploads/archive.ts), as the upload route does before storing. curl sends the file.
 * Usage: npx tsx bench/upload-rss.ts <repo root> <file> [archive|file]   (issue 10: measured before/after)
 */
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';

const [root, file, mode = 'archive'] = process.argv.slice(2);
const { parseMultipart } = await import(`${root}/lib/uploads/multipart.ts`);
const { normalizeUpload } = await import(`${root}/lib/uploads/archive.ts`);
const limits = { maxBytes: 512 * 1024 * 1024, maxFiles: 10_000 };
const mb = (n: number) => Math.round(n / 1048576);
let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
await new Promise((r) => setTimeout(r, 500));
const baseline = process.memoryUsage().rss;
peak = baseline;
let archiveBytes = 0;
const server = createServer(async (req, res) => {
  try {
    const { entries } = await parseMultipart(req, limits);
    const upload = normalizeUpload(entries, limits);
    archiveBytes = upload.archive.length;
    res.end(JSON.stringify({ files: upload.files, bytes: upload.bytes }));
  } catch (e) {
    res.statusCode = 500;
    res.end(String(e));
  }
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const port = (server.address() as { port: number }).port;
const started = Date.now();
const out = await new Promise<string>((resolve) => {
  const curl = spawn('curl', ['-sS', '-F', `${mode}=@${file}`, `http://127.0.0.1:${port}/`]);
  let text = '';
  curl.stdout.on('data', (d) => (text += d));
  curl.on('close', () => resolve(text));
});
const seconds = (Date.now() - started) / 1000;
const atEnd = process.memoryUsage().rss;
await new Promise((r) => setTimeout(r, 3000));
const settled = process.memoryUsage().rss;
clearInterval(sampler);
server.close();
console.log(
  JSON.stringify({
    root,
    mode,
    answer: out.slice(0, 80),
    seconds,
    archiveMiB: mb(archiveBytes),
    baselineMiB: mb(baseline),
    peakGrowthMiB: mb(peak - baseline),
    growthAtAnswerMiB: mb(atEnd - baseline),
    growthAfter3sMiB: mb(settled - baseline),
  }),
);
