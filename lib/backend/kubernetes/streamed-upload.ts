import type { Readable } from 'node:stream';
import type { Owner } from '../../k8s/builders.ts';
import { randomSuffix } from '../../k8s/names.ts';
import type { StoredCode } from '../../uploads/reference.ts';
import { sanitizedTar, type StreamedTarSummary } from '../../uploads/tar-stream.ts';
import type { UploadLimits } from '../../uploads/archive.ts';
import { ExecFailed, type VolumeHelper } from './volume.ts';

/** Streamed uploads live under this directory of the user's volume, one directory per upload. */
export const uploadsDir = 'uploads';

export interface StreamedUploadOptions {
  gzip: boolean;
  limits: UploadLimits;
  /** Upload directories older than this (plus an hour) are swept by the next upload. */
  uploadTtlSeconds: number;
  /**
   * Names the upload (default: random). A keyed submit's code is named after its Job and its code,
   * so a retry finds what an earlier attempt stored, which that attempt's Job may already use.
   */
  id?: string;
}

/**
 * Streams a tar (or tar.gz) from `source` into the owner's volume through the helper's exec, with
 * the archive rules applied on the way (TarSanitizer). The tar unpacks into a hidden directory that
 * is renamed into place only when complete; a refused or broken upload removes it, so the volume
 * never holds part of an upload under a name a job could use (and one the removal missed is swept
 * with the expired uploads).
 *
 * Memory: one zlib window, one tar header, and the helper's stdin high-water mark (about 1 MiB).
 */
export async function storeStreamedCode(
  helper: VolumeHelper,
  owner: Owner,
  source: Readable,
  options: StreamedUploadOptions,
): Promise<{ code: StoredCode; summary: StreamedTarSummary }> {
  const id = options.id ?? randomSuffix(10);
  if (!streamedPath.test(`${uploadsDir}/${id}`)) throw new Error(`not a name for an upload: ${JSON.stringify(id)}`);
  const partial = `${uploadsDir}/.partial-${id}`;
  const target = `${uploadsDir}/${id}`;
  const { tar: sanitizer, refusal } = sanitizedTar(source, options);

  // Relative to the helper's working directory (the volume), so it runs the same under KWOK.
  const sweepMinutes = Math.ceil(options.uploadTtlSeconds / 60) + 60;
  const script = [
    'set -e',
    `mkdir -p ${uploadsDir}`,
    `find ${uploadsDir} -mindepth 1 -maxdepth 1 -mmin +${sweepMinutes} -exec rm -rf {} + || true`,
    `mkdir ${partial}`,
    // A failing tar removes its own partial directory; the cleanup below covers a killed shell.
    `tar -xf - -C ${partial} || { rm -rf ${partial}; exit 1; }`,
    // Named by a keyed submit and stored by an earlier attempt: the same code, kept as it is.
    `if [ -e ${target} ]; then rm -rf ${partial}; else mv ${partial} ${target}; fi`,
  ].join('; ');
  try {
    await helper.run(owner, ['sh', '-c', script], { stdin: sanitizer });
  } catch (error) {
    await helper
      .run(owner, ['sh', '-c', removal(partial)])
      .catch((cleanup: Error) =>
        console.error(`kbatch: removing the refused upload ${partial} in ${owner.namespace} failed:`, cleanup.message),
      );
    // The sanitizer's refusal (400/413) explains a broken exec better than the exec does.
    const refused = refusal();
    if (refused) throw refused;
    if (error instanceof ExecFailed) throw new ExecFailed(error.status, `unpacking the upload failed: ${error.stderr}`);
    throw error;
  }
  return {
    code: { kind: 'pvc', namespace: owner.namespace, claim: 'kbatch-uploads', path: target },
    summary: sanitizer.summary(),
  };
}

/**
 * An aborted exec may still be running for a moment (KWOK kills only the shell and may start it
 * after this cleanup begins; a kubelet need not kill anything): removing a directory that is still
 * written into, or not made yet, can miss it, so it must stay gone for a second before this ends.
 */
function removal(path: string): string {
  return `i=0; while [ $i -lt 10 ]; do rm -rf ${path} 2>/dev/null; sleep 1; [ -e ${path} ] || exit 0; i=$((i+1)); done; exit 1`;
}

/** What storeStreamedCode names an upload (safe in a shell line): nothing else of the volume is ever removed through here. */
const streamedPath = new RegExp(`^${uploadsDir}/[a-z0-9][a-z0-9.-]*$`);

/** Removes a stored upload (its submit failed after storing it); gone already is fine. */
export async function deleteStreamedCode(helper: VolumeHelper, owner: Owner, path: string): Promise<void> {
  // Uploads of writer Jobs (before streaming) sit at the volume's root: the age sweep takes them.
  if (!streamedPath.test(path)) return;
  await helper.run(owner, ['sh', '-c', `rm -rf ${path}`]);
}
