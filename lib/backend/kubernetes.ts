import { PassThrough, Readable } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import { fetch } from 'undici';
import { BadGateway, BadRequest, NotFound, Unavailable } from '../http/errors.ts';
import { buildCodeConfigMap, buildNamespacePolicy, buildUploadsClaim, buildUploadWriterJob, isAbandonedUpload, ownerReferenceTo, type CronJobObjects, type JobObjects, type NamespacePolicySettings, type Owner, type OwnerReference } from '../k8s/builders.ts';
import { makePooledApiClient, PooledKubeAuthentication } from '../k8s/connection.ts';
import { annotations, labels, podsOfJobSelector, randomSuffix } from '../k8s/names.ts';
import type { NormalizedUpload } from '../uploads/archive.ts';
import type { StoredCode } from '../uploads/reference.ts';
import type { Backend, ListOptions, LogOptions, PodFilter } from './types.ts';
import { storeStreamedCode, type StreamedUploadOptions } from './kubernetes/streamed-upload.ts';
import { VolumeHelper } from './kubernetes/volume.ts';

export interface KubernetesBackendOptions extends NamespacePolicySettings {
  kubeconfig?: string;
  configMapMaxBytes: number;
  helperImage: string;
  uploadPvcSize: string;
  uploadPvcStorageClass?: string;
  uploadPvcAccessMode: string;
  logPollSeconds: number;
  uploadTtlSeconds: number;
  volumeHelperIdleSeconds: number;
}

function isStatus(error: unknown, code: number): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}

const strategicMerge = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch);

/**
 * A write re-reads a namespace it has not seen for this long: owners never change, but an admin may
 * delete a namespace, and then the next submit must create it again.
 */
const namespaceRecheckMs = 60_000;

/** A chunk of a large upload; 700 KiB of binary stays under the 1 MiB ConfigMap limit once base64'd. */
const chunkBytes = 700 * 1024;

export class KubernetesBackend implements Backend {
  readonly kind = 'kubernetes' as const;
  private readonly kc: k8s.KubeConfig;
  private readonly core: k8s.CoreV1Api;
  private readonly batch: k8s.BatchV1Api;
  private readonly auth: PooledKubeAuthentication;
  private readonly volumes: VolumeHelper;
  /** Owner records of namespaces seen by this process, and when each was last read. */
  private readonly owners = new Map<string, { owner: string | null; seen: number }>();

  constructor(private readonly options: KubernetesBackendOptions) {
    this.kc = new k8s.KubeConfig();
    if (options.kubeconfig) this.kc.loadFromFile(options.kubeconfig);
    else this.kc.loadFromDefault();
    this.auth = new PooledKubeAuthentication(this.kc);
    this.core = makePooledApiClient(this.kc, this.auth, k8s.CoreV1Api);
    this.batch = makePooledApiClient(this.kc, this.auth, k8s.BatchV1Api);
    this.volumes = new VolumeHelper(this.kc, this.core, options);
  }

  async close(): Promise<void> {
    this.volumes.close();
    await this.auth.close();
  }

  /** Large uploads: streamed through the user's volume helper (lib/backend/kubernetes/streamed-upload.ts). */
  async storeCodeStream(owner: Owner, source: Readable, options: StreamedUploadOptions) {
    return storeStreamedCode(this.volumes, owner, source, options);
  }

  /** One read per namespace per process: a recorded owner never changes, so the answer is kept. */
  async namespaceOwner(name: string): Promise<string | null | undefined> {
    const known = this.owners.get(name);
    return known ? known.owner : this.readOwner(name);
  }

  private async readOwner(name: string): Promise<string | null | undefined> {
    try {
      return this.rememberOwner(await this.core.readNamespace({ name }));
    } catch (error) {
      // Not cached: a namespace that does not exist (any more) may be created by another process.
      if (isStatus(error, 404)) {
        this.owners.delete(name);
        return undefined;
      }
      throw error;
    }
  }

  private rememberOwner(namespace: k8s.V1Namespace): string | null {
    const owner = namespace.metadata?.annotations?.[annotations.username] ?? null;
    this.owners.set(namespace.metadata!.name!, { owner, seen: Date.now() });
    return owner;
  }

  async ensureNamespace(namespace: k8s.V1Namespace): Promise<string | null> {
    const name = namespace.metadata!.name!;
    const known = this.owners.get(name);
    if (known && Date.now() - known.seen < namespaceRecheckMs) return known.owner;
    const existing = await this.readOwner(name);
    if (existing !== undefined) return existing;
    try {
      const created = await this.core.createNamespace({ body: namespace });
      // The admin's quota and default limits come with the namespace (builders.buildNamespacePolicy).
      const { quota, limitRange } = buildNamespacePolicy(name, this.options);
      if (quota) await this.core.createNamespacedResourceQuota({ namespace: name, body: quota });
      if (limitRange) await this.core.createNamespacedLimitRange({ namespace: name, body: limitRange });
      return this.rememberOwner(created);
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
    }
    // Created by a concurrent request in between: whose it is decides, so read it.
    const owner = await this.readOwner(name);
    if (owner === undefined) throw new Unavailable(`namespace ${name} was created and deleted concurrently; try again`);
    return owner;
  }

  async storeCode(owner: Owner, upload: NormalizedUpload, expiresAt: Date): Promise<StoredCode> {
    await this.deleteAbandonedUploads(owner.namespace);
    const id = randomSuffix(10);
    const meta = { sha256: upload.sha256, files: upload.files, expiresAt };
    if (upload.archive.length <= this.options.configMapMaxBytes) {
      const body = buildCodeConfigMap(owner, `kbatch-code-${id}`, upload.archive, meta);
      await this.core.createNamespacedConfigMap({ namespace: body.metadata!.namespace!, body });
      return { kind: 'configmap', namespace: body.metadata!.namespace!, name: body.metadata!.name! };
    }
    return this.storeCodeInClaim(owner, id, upload, meta);
  }

  private async storeCodeInClaim(owner: Owner, id: string, upload: NormalizedUpload, meta: { sha256: string; files: number; expiresAt: Date }): Promise<StoredCode> {
    const claim = buildUploadsClaim(owner, { ...this.options });
    const namespace = claim.metadata!.namespace!;
    try {
      await this.core.createNamespacedPersistentVolumeClaim({ namespace, body: claim });
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
    }
    const chunkNames: string[] = [];
    try {
      for (let offset = 0, i = 0; offset < upload.archive.length; offset += chunkBytes, i++) {
        const name = `kbatch-code-${id}-${String(i).padStart(4, '0')}`;
        const chunk = buildCodeConfigMap(owner, name, upload.archive.subarray(offset, offset + chunkBytes), meta);
        chunk.binaryData = { part: chunk.binaryData!['code.tgz']! };
        await this.core.createNamespacedConfigMap({ namespace, body: chunk });
        chunkNames.push(name);
      }
      const writer = buildUploadWriterJob(owner, `kbatch-upload-${id}`, chunkNames, id, this.options);
      const created = await this.batch.createNamespacedJob({ namespace, body: writer });
      await Promise.all(chunkNames.map((name) => this.addOwner('configmap', namespace, name, ownerReferenceTo(created))));
    } catch (error) {
      await Promise.allSettled(chunkNames.map((name) => this.core.deleteNamespacedConfigMap({ name, namespace })));
      throw error;
    }
    return { kind: 'pvc', namespace, claim: claim.metadata!.name!, path: id, configMaps: chunkNames };
  }

  /** Stateless garbage collection: each new upload sweeps the user's expired, never-used ones. */
  private async deleteAbandonedUploads(namespace: string): Promise<void> {
    try {
      const { items } = await this.core.listNamespacedConfigMap({ namespace, labelSelector: labels.upload });
      const now = new Date();
      await Promise.allSettled(items.filter((item) => isAbandonedUpload(item, now)).map((item) => this.core.deleteNamespacedConfigMap({ name: item.metadata!.name!, namespace })));
    } catch (error) {
      // Best effort: a first upload has no namespace yet, and a sweep must never fail an upload.
      if (!isStatus(error, 404)) console.error('kbatch: sweeping abandoned uploads failed:', (error as Error).message);
    }
  }

  async deleteCode(code: StoredCode): Promise<void> {
    if (code.kind === 'configmap') {
      await this.core.deleteNamespacedConfigMap({ name: code.name, namespace: code.namespace }).catch((error) => {
        if (!isStatus(error, 404)) throw error;
      });
    }
  }

  private async addOwner(kind: 'configmap' | 'secret', namespace: string, name: string, owner: OwnerReference): Promise<void> {
    // Strategic merge keys ownerReferences by uid, so a shared upload gains one owner per job.
    const body = { metadata: { ownerReferences: [owner] } };
    if (kind === 'configmap') await this.core.patchNamespacedConfigMap({ name, namespace, body }, strategicMerge);
    else await this.core.patchNamespacedSecret({ name, namespace, body }, strategicMerge);
  }

  async createJob(objects: JobObjects, code: StoredCode | undefined): Promise<k8s.V1Job> {
    const { namespace, job } = objects;
    return this.createOwner(objects, code, async () => {
      const created = await this.batch.createNamespacedJob({ namespace, body: job });
      const remove = () => this.batch.deleteNamespacedJob({ name: created.metadata!.name!, namespace, propagationPolicy: 'Background' });
      return { created, reference: ownerReferenceTo(created), remove };
    });
  }

  async createCronJob(objects: CronJobObjects, code: StoredCode | undefined): Promise<k8s.V1CronJob> {
    const { namespace, cronJob } = objects;
    return this.createOwner(objects, code, async () => {
      const created = await this.batch.createNamespacedCronJob({ namespace, body: cronJob });
      const remove = () => this.batch.deleteNamespacedCronJob({ name: created.metadata!.name!, namespace, propagationPolicy: 'Background' });
      return { created, reference: ownerReferenceTo(created, 'CronJob'), remove };
    });
  }

  /**
   * Secret first, then the owner (Job or CronJob), then ownerReferences on the Secret and the code.
   * Any failure undoes what this call made, so a refused submit leaves nothing behind.
   */
  private async createOwner<T>(
    objects: { namespace: string; secret: k8s.V1Secret },
    code: StoredCode | undefined,
    createOwnerObject: () => Promise<{ created: T; reference: OwnerReference; remove: () => Promise<unknown> }>,
  ): Promise<T> {
    const { namespace, secret } = objects;
    const cleanups: (() => Promise<unknown>)[] = [];
    try {
      if (code?.kind === 'configmap') {
        try {
          await this.core.readNamespacedConfigMap({ name: code.name, namespace: code.namespace });
        } catch (error) {
          if (isStatus(error, 404)) throw new BadRequest('upload: the uploaded code no longer exists (its jobs were deleted); upload it again', 'upload');
          throw error;
        }
      }
      await this.core.createNamespacedSecret({ namespace, body: secret });
      cleanups.push(() => this.core.deleteNamespacedSecret({ name: secret.metadata!.name!, namespace }));
      const { created, reference, remove } = await createOwnerObject();
      cleanups.push(remove);
      await this.addOwner('secret', namespace, secret.metadata!.name!, reference);
      if (code?.kind === 'configmap') await this.addOwner('configmap', namespace, code.name, reference);
      return created;
    } catch (error) {
      const results = await Promise.allSettled(cleanups.reverse().map((cleanup) => cleanup()));
      for (const result of results) {
        if (result.status === 'rejected' && !isStatus(result.reason, 404)) console.error('kbatch: cleanup after failed submit failed:', (result.reason as Error).message);
      }
      throw error;
    }
  }

  async listCronJobs(namespace: string): Promise<k8s.V1CronJob[]> {
    return (await this.batch.listNamespacedCronJob({ namespace })).items;
  }

  async getCronJob(namespace: string, name: string): Promise<k8s.V1CronJob> {
    return this.batch.readNamespacedCronJob({ name, namespace });
  }

  async deleteCronJob(namespace: string, name: string): Promise<k8s.V1CronJob> {
    const cronJob = await this.batch.readNamespacedCronJob({ name, namespace });
    await this.batch.deleteNamespacedCronJob({ name, namespace, propagationPolicy: 'Foreground' });
    return cronJob;
  }

  async listJobs(namespace: string, options: ListOptions) {
    const list = await this.batch.listNamespacedJob({ namespace, limit: options.limit, _continue: options.continueToken });
    return { items: list.items, continueToken: list.metadata?._continue || undefined };
  }

  async getJob(namespace: string, name: string): Promise<k8s.V1Job> {
    return this.batch.readNamespacedJob({ name, namespace });
  }

  async deleteJob(namespace: string, name: string): Promise<k8s.V1Job> {
    const job = await this.batch.readNamespacedJob({ name, namespace });
    await this.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: 'Foreground' });
    return job;
  }

  async listPods(namespace: string, filter: PodFilter = {}): Promise<k8s.V1Pod[]> {
    const labelSelector = filter.jobName === undefined ? undefined : podsOfJobSelector(filter.jobName);
    return (await this.core.listNamespacedPod({ namespace, labelSelector })).items;
  }

  async getPod(namespace: string, name: string): Promise<k8s.V1Pod> {
    return this.core.readNamespacedPod({ name, namespace });
  }

  async podLogs(namespace: string, pod: string, options: LogOptions, signal: AbortSignal): Promise<Readable> {
    const current = await this.getPod(namespace, pod);
    const container = options.container ?? current.spec?.containers[0]?.name ?? 'job';
    const cluster = this.kc.getCurrentCluster();
    if (!cluster) throw new BadGateway('No Kubernetes cluster configured');
    const url = new URL(`${cluster.server}/api/v1/namespaces/${encodeURIComponent(namespace)}/pods/${encodeURIComponent(pod)}/log`);
    url.searchParams.set('container', container);
    if (options.follow) url.searchParams.set('follow', 'true');
    if (options.sinceTime) url.searchParams.set('sinceTime', options.sinceTime);
    if (options.tailLines !== undefined) url.searchParams.set('tailLines', String(options.tailLines));
    if (options.timestamps) url.searchParams.set('timestamps', 'true');

    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const context = new k8s.RequestContext(url.toString(), k8s.HttpMethod.GET);
    await this.auth.applySecurityAuthentication(context);
    const response = await fetch(url, {
      headers: context.getHeaders(),
      dispatcher: context.getDispatcher() as import('undici').Dispatcher | undefined,
      signal: controller.signal,
    });
    if (!response.ok || !response.body) {
      signal.removeEventListener('abort', onAbort);
      const text = await response.text().catch(() => '');
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        /* plain text error */
      }
      if (response.status === 404) throw new NotFound(message || `pod ${pod} not found`);
      throw new k8s.ApiException(response.status, message, JSON.stringify({ message }), {});
    }
    const output = new PassThrough();
    const source = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream);
    source.pipe(output);
    source.on('error', (error) => {
      source.unpipe(output);
      if (controller.signal.aborted) output.end();
      else output.destroy(error);
    });
    output.on('close', () => {
      controller.abort();
      signal.removeEventListener('abort', onAbort);
    });
    if (options.follow) this.endWhenFinished(namespace, pod, controller, () => {
      source.unpipe(output);
      output.end();
    });
    return output;
  }

  /**
   * The kubelet (and KWOK) keep a follow stream open after some container exits; the API has no
   * "wait for completion" flag, so we watch the pod phase and end the stream once it is final.
   */
  private endWhenFinished(namespace: string, pod: string, controller: AbortController, end: () => void): void {
    const poll = async () => {
      while (!controller.signal.aborted) {
        await new Promise((resolve) => setTimeout(resolve, this.options.logPollSeconds * 1000));
        if (controller.signal.aborted) return;
        let phase: string | undefined;
        try {
          phase = (await this.getPod(namespace, pod)).status?.phase;
        } catch (error) {
          if (isStatus(error, 404)) phase = 'Gone';
          else continue;
        }
        if (phase === 'Succeeded' || phase === 'Failed' || phase === 'Gone') {
          // Give the last lines in flight a moment to arrive before closing.
          await new Promise((resolve) => setTimeout(resolve, 500));
          end();
          controller.abort();
          return;
        }
      }
    };
    void poll();
  }
}
