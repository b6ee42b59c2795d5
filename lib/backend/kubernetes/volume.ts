import { PassThrough, type Readable, type Writable } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
import { BadGateway, Unavailable } from '../../http/errors.ts';
import { buildUploadsClaim, ownerLabels, type Owner } from '../../k8s/builders.ts';
import { annotations, labels } from '../../k8s/names.ts';

/**
 * The per-user volume helper: one small pod per user namespace that mounts the user's PVC, so bytes
 * can move in and out of the volume through the API server's `exec` (tar over stdin, cat to stdout),
 * the way `kubectl cp` does, with no etcd round trip and no whole-archive buffer.
 *
 * Every command runs relative to the container's working directory, the volume's mount point: the
 * same command then works in a real pod and under KWOK, whose exec runs a local process in a
 * configured directory (test/stack/cluster.ts execDir).
 */

export interface VolumeHelperSettings {
  helperImage: string;
  uploadPvcSize: string;
  uploadPvcStorageClass?: string;
  uploadPvcAccessMode: string;
  /** A helper unused this long is deleted (checked lazily after each use and on the next use). */
  volumeHelperIdleSeconds: number;
}

export const volumeHelperPodName = 'kbatch-volume';
export const volumeHelperContainer = 'volume';
/** Where the user's volume is mounted in the helper, and its working directory. */
export const volumeMountPath = '/volume';
/** The WebSocket client-node's Exec opens (the `ws` package's). */
type WebSocket = Awaited<ReturnType<k8s.Exec['exec']>>;

const helperComponent = 'volume-helper';
/** Not in names.ts yet (owned elsewhere); the last time any replica used the helper, in ms. */
const lastUsedAnnotation = 'kbatch.jupyter.org/last-used';
const startTimeoutMs = 120_000;
/** Bytes of stdin allowed in flight on the WebSocket before the sender waits: the memory bound per exec. */
const stdinHighWater = 1024 * 1024;
const stdinChunk = 64 * 1024;
const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

/** A pure builder: non-root, read-only root filesystem, no token, nothing but the volume and /tmp. */
export function buildVolumeHelperPod(owner: Owner, settings: Pick<VolumeHelperSettings, 'helperImage'>, now: Date): k8s.V1Pod {
  const podLabels = { ...ownerLabels(owner), [labels.component]: helperComponent };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: volumeHelperPodName,
      namespace: owner.namespace,
      labels: podLabels,
      annotations: { [annotations.username]: owner.name, [lastUsedAnnotation]: String(now.getTime()) },
    },
    spec: {
      restartPolicy: 'Always',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      terminationGracePeriodSeconds: 5,
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        // The volume's files belong to the group the user's jobs also write as.
        fsGroup: 1000,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      containers: [
        {
          name: volumeHelperContainer,
          image: settings.helperImage,
          // Idles until exec'd into; exits at once on SIGTERM so an idle sweep is quick.
          command: ['sh', '-c', 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'],
          workingDir: volumeMountPath,
          securityContext: {
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            capabilities: { drop: ['ALL'] },
          },
          resources: { requests: { cpu: '50m', memory: '32Mi' }, limits: { cpu: '1', memory: '256Mi' } },
          volumeMounts: [
            { name: 'volume', mountPath: volumeMountPath },
            { name: 'tmp', mountPath: '/tmp' },
          ],
        },
      ],
      volumes: [
        { name: 'volume', persistentVolumeClaim: { claimName: 'kbatch-uploads' } },
        { name: 'tmp', emptyDir: { sizeLimit: '64Mi' } },
      ],
    },
  };
}

export interface ExecIo {
  /** Streamed with backpressure: at most about 1 MiB in flight. Its end closes the command's stdin. */
  stdin?: Readable;
  /** Receives stdout; paused delivery when it signals backpressure. Not ended by exec. */
  stdout?: Writable;
  signal?: AbortSignal;
}

/** A command that ran and failed: its exit status text and the tail of its stderr. */
export class ExecFailed extends Error {
  constructor(
    readonly status: k8s.V1Status,
    readonly stderr: string,
  ) {
    super(`${status.message ?? status.reason ?? 'command failed'}${stderr ? `: ${stderr.trim()}` : ''}`);
  }

  get exitCode(): number | undefined {
    const cause = this.status.details?.causes?.find((c) => c.reason === 'ExitCode');
    if (cause?.message !== undefined) return Number(cause.message);
    // KWOK reports the Go error text ("cmd wait: ...: exit status 3") instead of an ExitCode cause.
    const match = /exit status (\d+)/.exec(this.status.message ?? '');
    return match ? Number(match[1]) : undefined;
  }
}

export class VolumeHelper {
  private readonly exec: k8s.Exec;
  /** Execs in flight per namespace in this process: a busy helper is never swept. */
  private readonly busy = new Map<string, number>();
  private readonly ready = new Map<string, Promise<void>>();
  private readonly sweepTimers = new Map<string, NodeJS.Timeout>();
  private readonly lastTouched = new Map<string, number>();

  constructor(
    kc: k8s.KubeConfig,
    private readonly core: k8s.CoreV1Api,
    private readonly settings: VolumeHelperSettings,
  ) {
    this.exec = new k8s.Exec(kc);
  }

  /**
   * Runs `command` in the owner's helper (created on demand) with the volume as working directory.
   * Resolves when it exited 0; rejects with ExecFailed otherwise, or when `signal` aborts.
   */
  async run(owner: Owner, command: string[], io: ExecIo = {}): Promise<void> {
    const { namespace } = owner;
    this.busy.set(namespace, (this.busy.get(namespace) ?? 0) + 1);
    clearTimeout(this.sweepTimers.get(namespace));
    // Other replicas read the annotation: keep it fresh while a long transfer runs.
    const keepAlive = setInterval(() => void this.touch(namespace, true), (this.settings.volumeHelperIdleSeconds * 1000) / 3);
    keepAlive.unref();
    try {
      await this.ensure(owner);
      await this.execOnce(namespace, command, io);
    } finally {
      clearInterval(keepAlive);
      const left = (this.busy.get(namespace) ?? 1) - 1;
      if (left > 0) this.busy.set(namespace, left);
      else {
        this.busy.delete(namespace);
        this.scheduleSweep(namespace);
      }
    }
  }

  /** Stops the sweep timers (the helpers themselves stay; the next process sweeps them). */
  close(): void {
    for (const timer of this.sweepTimers.values()) clearTimeout(timer);
    this.sweepTimers.clear();
  }

  /** Deletes the namespace's helper when unused for the idle time by every replica. */
  async sweep(namespace: string, now = Date.now()): Promise<boolean> {
    if (this.busy.has(namespace)) return false;
    let pod: k8s.V1Pod;
    try {
      pod = await this.core.readNamespacedPod({ name: volumeHelperPodName, namespace });
    } catch (error) {
      if (isStatus(error, 404)) return false;
      throw error;
    }
    const lastUsed = Number(pod.metadata?.annotations?.[lastUsedAnnotation] ?? 0);
    if (now - lastUsed < this.settings.volumeHelperIdleSeconds * 1000) return false;
    this.ready.delete(namespace);
    this.lastTouched.delete(namespace);
    const preconditions = { resourceVersion: pod.metadata?.resourceVersion };
    await this.core.deleteNamespacedPod({ name: volumeHelperPodName, namespace, body: { preconditions } }).catch((error) => {
      // 409: someone used it (touched the annotation) since it was read; 404: already gone.
      if (!isStatus(error, 404) && !isStatus(error, 409)) throw error;
    });
    return true;
  }

  private scheduleSweep(namespace: string): void {
    const timer = setTimeout(
      () => {
        this.sweepTimers.delete(namespace);
        this.sweep(namespace).catch((error) =>
          console.error(`kbatch: sweeping the volume helper in ${namespace} failed:`, (error as Error).message),
        );
      },
      this.settings.volumeHelperIdleSeconds * 1000 + 1000,
    );
    timer.unref();
    this.sweepTimers.set(namespace, timer);
  }

  /**
   * One start per namespace at a time; a helper found gone or broken is made again. Each transfer
   * reads the pod once (another replica's sweep may have deleted it), which costs one GET.
   */
  private async ensure(owner: Owner): Promise<void> {
    const { namespace } = owner;
    let ready = this.ready.get(namespace);
    if (!ready) {
      ready = this.start(owner);
      this.ready.set(namespace, ready);
      const forget = () => this.ready.delete(namespace);
      ready.then(forget, forget);
    }
    await ready;
    await this.touch(namespace);
  }

  private async start(owner: Owner): Promise<void> {
    const { namespace } = owner;
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      let pod: k8s.V1Pod | undefined;
      try {
        pod = await this.core.readNamespacedPod({ name: volumeHelperPodName, namespace });
      } catch (error) {
        if (!isStatus(error, 404)) throw error;
      }
      if (pod && (pod.metadata?.deletionTimestamp || pod.status?.phase === 'Failed' || pod.status?.phase === 'Succeeded')) {
        // Terminating (an idle sweep) or dead: wait for it to go, then make a new one.
        if (!pod.metadata?.deletionTimestamp)
          await this.core.deleteNamespacedPod({ name: volumeHelperPodName, namespace, gracePeriodSeconds: 0 }).catch(() => undefined);
      } else if (pod?.status?.phase === 'Running' && pod.status.containerStatuses?.every((c) => c.ready)) {
        return;
      } else if (!pod) {
        await this.create(owner);
      }
      if (Date.now() > deadline)
        throw new Unavailable(`the volume helper pod in ${namespace} did not start within ${startTimeoutMs / 1000}s`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  private async create(owner: Owner): Promise<void> {
    const { namespace } = owner;
    const claim = buildUploadsClaim(owner, this.settings);
    try {
      await this.core.createNamespacedPersistentVolumeClaim({ namespace, body: claim });
    } catch (error) {
      if (!isStatus(error, 409)) throw error;
    }
    try {
      await this.core.createNamespacedPod({ namespace, body: buildVolumeHelperPod(owner, this.settings, new Date()) });
    } catch (error) {
      // Made by a concurrent request or another replica: use that one.
      if (!isStatus(error, 409)) throw error;
    }
  }

  /** Records use on the pod, at most every few seconds per namespace unless forced. */
  private async touch(namespace: string, force = false): Promise<void> {
    const now = Date.now();
    if (!force && now - (this.lastTouched.get(namespace) ?? 0) < 5000) return;
    this.lastTouched.set(namespace, now);
    const body = { metadata: { annotations: { [lastUsedAnnotation]: String(now) } } };
    await this.core.patchNamespacedPod({ name: volumeHelperPodName, namespace, body }, mergePatch).catch((error) => {
      if (!isStatus(error, 404)) console.error(`kbatch: marking the volume helper in ${namespace} used failed:`, (error as Error).message);
    });
  }

  private execOnce(namespace: string, command: string[], io: ExecIo): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let conn: WebSocket | undefined;
      let stderr = '';
      const finish = (error?: Error) => {
        if (settled) return;
        settled = true;
        io.signal?.removeEventListener('abort', onAbort);
        if (error) {
          io.stdin?.destroy();
          // Cut, not closed: a socket paused for backpressure would hold a close handshake (and
          // the command) until ws's 30 s close timeout.
          conn?.terminate();
          reject(error);
        } else resolve();
      };
      const onAbort = () => finish(io.signal?.reason instanceof Error ? io.signal.reason : new Error('aborted'));
      if (io.signal?.aborted) return onAbort();
      io.signal?.addEventListener('abort', onAbort, { once: true });

      // client-node writes stdout without heeding backpressure and ends the stream it is given, so
      // stdout goes through a PassThrough whose fullness pauses the socket instead.
      const stdout = new PassThrough();
      const stderrSink = new PassThrough();
      stderrSink.on('data', (chunk: Buffer) => {
        if (stderr.length < 4096) stderr += chunk.toString();
      });
      if (io.stdout) {
        const target = io.stdout;
        stdout.on('data', (chunk: Buffer) => {
          if (!target.write(chunk) && conn) {
            conn.pause();
            target.once('drain', () => conn?.resume());
          }
        });
      } else stdout.resume();
      // client-node writes stdin chunks without backpressure either; it gets a stream that never
      // speaks (it only makes the request ask for stdin) and the frames are sent below.
      const stdinPlaceholder = io.stdin ? new PassThrough() : null;
      this.exec
        .exec(namespace, volumeHelperPodName, volumeHelperContainer, command, stdout, stderrSink, stdinPlaceholder, false, (status) => {
          // Status is the last frame: everything written before it has arrived.
          if (status.status === 'Success') finish();
          else finish(new ExecFailed(status, stderr));
        })
        .then((ws) => {
          conn = ws;
          if (settled) return ws.terminate();
          ws.on('close', () =>
            setTimeout(() => finish(new BadGateway(`exec in ${namespace}/${volumeHelperPodName} closed without an exit status`)), 100),
          );
          ws.on('error', (error: Error) => finish(new BadGateway(`exec in ${namespace}/${volumeHelperPodName}: ${error.message}`)));
          if (io.stdin) void pumpStdin(ws, io.stdin).catch((error: Error) => finish(error));
        })
        .catch((error: unknown) =>
          finish(new BadGateway(`exec in ${namespace}/${volumeHelperPodName} failed: ${(error as Error).message ?? String(error)}`)),
        );
    });
  }
}

/** Sends `stdin` as stream-0 frames, waiting while more than stdinHighWater bytes are unsent; then closes stdin (v5 protocol). */
async function pumpStdin(ws: WebSocket, stdin: Readable): Promise<void> {
  if (ws.protocol !== 'v5.channel.k8s.io')
    throw new BadGateway(
      `exec: the API server speaks ${ws.protocol || 'an old protocol'}; closing stdin needs v5.channel.k8s.io (Kubernetes 1.30+)`,
    );
  for await (const data of stdin) {
    const buffer = Buffer.isBuffer(data) ? data : Buffer.from(data as string);
    for (let offset = 0; offset < buffer.length; offset += stdinChunk) {
      const part = buffer.subarray(offset, offset + stdinChunk);
      const frame = Buffer.allocUnsafe(part.length + 1);
      frame[0] = 0;
      part.copy(frame, 1);
      if (ws.readyState !== ws.OPEN) throw new BadGateway('exec: the connection closed while sending input');
      const sent = new Promise<void>((resolve, reject) => ws.send(frame, (error?: Error) => (error ? reject(error) : resolve())));
      if (ws.bufferedAmount > stdinHighWater) await sent;
      else sent.catch(() => undefined);
    }
  }
  // 255 = close, 0 = stdin: the command sees end of input and the exec stays open for its status.
  await new Promise<void>((resolve, reject) => ws.send(Buffer.from([255, 0]), (error?: Error) => (error ? reject(error) : resolve())));
}

function isStatus(error: unknown, code: number): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === code;
}
