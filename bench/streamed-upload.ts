/**
 * Streamed uploads (issue 7): one large tar sent to POST /api/v1/uploads (through the Hub's proxy,
 * the one-process server, and exec into the user's volume helper, KWOK running the helper's commands
 * in a local directory), against the floor: the same tar piped by this client straight into a plain
 * `exec tar -x` in the same helper pod. Reports throughput of both, their ratio, and the server's
 * peak RSS growth during the upload (after a 64 MiB warm-up that sizes V8's heap).
 *
 *   npx tsx bench/streamed-upload.ts              # 1024 MiB
 *   npx tsx bench/streamed-upload.ts --mb 200
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import * as k8s from '@kubernetes/client-node';
import { VolumeHelper } from '../lib/backend/kubernetes/volume.ts';
import { writeHeader } from '../lib/uploads/archive.ts';
import { startStack } from '../test/stack/stack.ts';
import { resetPeakRss } from './lib.ts';

const { values: flags } = parseArgs({ options: { mb: { type: 'string', default: '1024' } } });
const totalMb = Number(flags.mb);
const MiB = 1024 * 1024;
const fileMb = 8;

/** A tar of totalMb/8 files of 8 MiB, generated while it is read. */
function* tarChunks(mb: number): Generator<Buffer> {
  const block = randomBytes(MiB);
  for (let i = 0; i < Math.ceil(mb / fileMb); i++) {
    const header = Buffer.alloc(512);
    writeHeader(header, `part-${i}.bin`, fileMb * MiB, 0o644, '0');
    yield header;
    for (let j = 0; j < fileMb; j++) yield block;
  }
  yield Buffer.alloc(10240);
}

function memory(pid: number) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) / 1024;
  return { peakMb: field('VmHWM'), rssMb: field('VmRSS') };
}

async function upload(stack: Awaited<ReturnType<typeof startStack>>, mb: number): Promise<number> {
  const started = performance.now();
  const response = await fetch(new URL('api/v1/uploads', stack.serviceUrl), {
    method: 'POST',
    headers: { authorization: `token ${stack.hub.tokens.alice}`, 'content-type': 'application/x-tar' },
    body: Readable.toWeb(Readable.from(tarChunks(mb))) as ReadableStream,
    duplex: 'half',
  } as RequestInit);
  const text = await response.text();
  if (response.status !== 201) throw new Error(`upload: ${response.status} ${text}`);
  return (performance.now() - started) / 1000;
}

const stack = await startStack({ KBATCH_MAX_UPLOAD_BYTES: String((totalMb + 64) * MiB) });
try {
  const namespace = 'kbatch-alice';
  await stack.cluster.execDir(namespace);
  const pid = stack.server.process.pid!;
  await upload(stack, 64);
  resetPeakRss(pid);
  const before = memory(pid);
  const viaServer = await upload(stack, totalMb);
  const after = memory(pid);

  // The floor: this client pipes the same bytes into `tar -x` in the same helper pod.
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(stack.cluster.kbatchKubeconfig);
  const helper = new VolumeHelper(kc, kc.makeApiClient(k8s.CoreV1Api), {
    helperImage: 'busybox:1.37',
    uploadPvcSize: '1Gi',
    uploadPvcAccessMode: 'ReadWriteOnce',
    volumeHelperIdleSeconds: 300,
  });
  const started = performance.now();
  await helper.run({ name: 'alice', namespace }, ['sh', '-c', 'rm -rf floor && mkdir floor && tar -xf - -C floor'], {
    stdin: Readable.from(tarChunks(totalMb)),
  });
  const plainExec = (performance.now() - started) / 1000;
  helper.close();

  const row = (label: string, seconds: number) =>
    `| ${label} | ${totalMb} MiB | ${seconds.toFixed(1)} s | ${(totalMb / seconds).toFixed(0)} MiB/s |`;
  console.log('| path | size | time | throughput |');
  console.log('|---|---|---|---|');
  console.log(row('POST /api/v1/uploads (Hub proxy, server, exec)', viaServer));
  console.log(row('plain exec tar from the same client', plainExec));
  console.log(`\nthroughput ratio (upload / plain exec): ${(plainExec / viaServer).toFixed(2)}`);
  console.log(
    `server RSS ${before.rssMb.toFixed(0)} MB before, peak ${after.peakMb.toFixed(0)} MB during the upload: +${(after.peakMb - before.rssMb).toFixed(1)} MB`,
  );
} finally {
  await stack.stop();
}
