// A real Kubernetes control plane as plain local processes, for integration tests:
// etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok (fake node and kubelet).
// Binaries come from test/cluster/build.sh. See /work/shared/reference/real-cluster.md for the why of
// each flag. Run directly (`npx tsx test/stack/cluster.ts`) to keep a cluster up for manual use.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import * as k8s from '@kubernetes/client-node';

export interface Cluster {
  /** https://127.0.0.1:PORT */
  server: string;
  /** kubeconfig of a system:masters token user */
  adminKubeconfig: string;
  /** kubeconfig of the kbatch service identity, whose rights come only from knative/rbac.yaml */
  kbatchKubeconfig: string;
  /** work dir (PKI, etcd data, kubeconfigs, fake pod logs, process logs in dir/logs) */
  dir: string;
  /**
   * Makes kwok serve `lines` as the container log of every pod in `namespace`, or of the one pod named
   * `opts.podName` (that rule wins over the namespace-wide one). Calling it again with the previous lines
   * plus new ones appends, so a client following the log (?follow=true) receives the new lines.
   * Resolves once kwok serves the new content.
   */
  setLogs(namespace: string, lines: string[], opts?: { podName?: string }): Promise<void>;
  /**
   * Makes kwok serve `exec` into every pod of `namespace` by running the command as a local process
   * in a directory of its own (created empty), with stdin piped: what a pod's volume would hold is
   * then a plain directory a test can read. The namespace's `kbatch-uploads` claim binds to a PV of
   * that directory (made by a test-only provisioner for every namespace, this one or not). Caveat (kwok v0.8, pkg/utils/exec): the command's stdin is never closed, so a
   * command reading stdin must stop by itself (tar does at its end-of-archive blocks). Resolves, with that directory, once kwok serves the rule
   * (proved by an exec through the API server into a probe pod).
   */
  execDir(namespace: string): Promise<string>;
  /** Kills every process group it started and removes `dir`. */
  stop(): Promise<void>;
}

export interface StartClusterOptions {
  /** where etcd, kube-* and kwok live; default: KBATCH_IT_BIN or the cache path build.sh uses */
  binDir?: string;
  /**
   * Writes the API server's audit log (metadata of every request, one JSON line each) to
   * `dir/audit.log`, so a bench can count the calls one identity makes per operation.
   */
  auditLog?: boolean;
}

const repoRoot = path.resolve(import.meta.dirname, '../..');
const kwokConfigFile = path.join(repoRoot, 'test/cluster/kwok/kwok.yaml');
// build.sh copies only the Logs CRD next to the binaries; ClusterLogs is vendored beside the stages.
const clusterLogsCrdFile = path.join(repoRoot, 'test/cluster/kwok/clusterlogs-crd.yaml');
const clusterExecsCrdFile = path.join(repoRoot, 'test/cluster/kwok/clusterexecs-crd.yaml');
const rbacFile = path.join(repoRoot, 'knative/rbac.yaml');

const startTimeoutMs = 90_000;
const fakeNodeName = 'kwok-node-0';
const fieldManager = 'kbatch-it';
const binaries = ['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok'] as const;

export function defaultBinDir(): string {
  if (process.env.KBATCH_IT_BIN) return process.env.KBATCH_IT_BIN;
  const versions = Object.fromEntries(
    fs
      .readFileSync(path.join(repoRoot, 'test/cluster/versions.env'), 'utf8')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line && !line.startsWith('#'))
      .map((line) => line.split('=', 2) as [string, string]),
  );
  const { K8S_VERSION, ETCD_VERSION, KWOK_VERSION } = versions;
  return path.join(os.homedir(), `.cache/kbatch-it/bin-k8s${K8S_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}`);
}

export async function startCluster(opts: StartClusterOptions = {}): Promise<Cluster> {
  const started = performance.now();
  const binDir = opts.binDir ?? defaultBinDir();
  const missing = [...binaries, 'kwok-logs-crd.yaml'].filter((f) => !fs.existsSync(path.join(binDir, f)));
  if (missing.length > 0) {
    throw new Error(`missing ${missing.join(', ')} in ${binDir}; run: bash test/cluster/build.sh`);
  }

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kbatch-cluster-'));
  const processes = new ProcessGroup(path.join(dir, 'logs'));
  const stop = stopOnExitOrSignal(dir, processes);
  const deadline = Date.now() + startTimeoutMs;
  try {
    const [etcdPort, etcdPeerPort, apiPort, kcmPort, schedulerPort, kwokPort] = (await freePorts(6)) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const server = `https://127.0.0.1:${apiPort}`;
    const pki = writePki(dir);
    const tokens = writeTokens(dir);
    const kubeconfig = (name: string, token: string) => writeKubeconfig(dir, name, server, pki.caCert, token);
    const admin = kubeconfig('admin', tokens.admin);
    const kbatch = kubeconfig('kbatch', tokens.kbatch);
    const bin = (name: string) => path.join(binDir, name);

    processes.start('etcd', bin('etcd'), [
      '--name=node0',
      `--data-dir=${dir}/etcd`,
      `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
      `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
      `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
      `--initial-cluster=node0=http://127.0.0.1:${etcdPeerPort}`,
      // Test data is throwaway; fsync dominates etcd latency on CI disks.
      '--unsafe-no-fsync=true',
      '--auto-compaction-retention=1',
    ]);
    // etcd is up in well under a second; waiting here makes a broken etcd fail as itself.
    await waitFor('etcd /health', deadline, processes, async () => (await httpGet(`http://127.0.0.1:${etcdPort}/health`)).status === 200);
    processes.start('kube-apiserver', bin('kube-apiserver'), [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      '--bind-address=127.0.0.1',
      // Without it the apiserver looks for a non-loopback interface and dies in sandboxes without one.
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiPort}`,
      `--cert-dir=${dir}/pki`,
      `--tls-cert-file=${pki.apiserverCert}`,
      `--tls-private-key-file=${pki.apiserverKey}`,
      `--client-ca-file=${pki.caCert}`,
      `--token-auth-file=${tokens.file}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${pki.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${pki.serviceAccountKey}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--authorization-mode=Node,RBAC',
      '--allow-privileged=true',
      // The kubernetes Service may not point at loopback IPs, and nothing in-cluster needs it.
      '--endpoint-reconciler-type=none',
      // Logs are proxied to kwok at the fake node's InternalIP (127.0.0.1) and kwok's port.
      '--kubelet-preferred-address-types=InternalIP,Hostname',
      // As kwokctl does: no request queueing when a test bursts.
      '--enable-priority-and-fairness=false',
      '--profiling=false',
      ...(opts.auditLog ? auditArgs(dir) : []),
    ]);
    await waitFor(
      'kube-apiserver /readyz',
      deadline,
      processes,
      async () => (await probe(`${server}/readyz`, { ca: pki.caCertPem })) === 200,
    );

    processes.start('kube-controller-manager', bin('kube-controller-manager'), [
      `--kubeconfig=${kubeconfig('kcm', tokens.kcm)}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${kcmPort}`,
      '--leader-elect=false',
      // '*' includes job, ttl-after-finished, garbage-collector, serviceaccount, namespace, cronjob, nodelifecycle.
      '--controllers=*',
      `--root-ca-file=${pki.caCert}`,
      '--kube-api-qps=200',
      '--kube-api-burst=400',
    ]);
    processes.start('kube-scheduler', bin('kube-scheduler'), [
      `--kubeconfig=${kubeconfig('scheduler', tokens.scheduler)}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${schedulerPort}`,
      '--leader-elect=false',
    ]);

    const kc = loadKubeconfig(admin);
    const objects = k8s.KubernetesObjectApi.makeApiClient(kc);
    const crds = [
      ...k8s.loadAllYaml(fs.readFileSync(path.join(binDir, 'kwok-logs-crd.yaml'), 'utf8')),
      ...k8s.loadAllYaml(fs.readFileSync(clusterLogsCrdFile, 'utf8')),
      ...k8s.loadAllYaml(fs.readFileSync(clusterExecsCrdFile, 'utf8')),
    ].filter(Boolean) as k8s.V1CustomResourceDefinition[];
    await Promise.all(crds.map((crd) => apply(objects, crd)));
    const apiext = kc.makeApiClient(k8s.ApiextensionsV1Api);
    // kwok starts watching Logs/ClusterLogs right away; the kinds must be served by then.
    await waitFor('kwok CRDs established', deadline, processes, async () => {
      const states = await Promise.all(crds.map((crd) => apiext.readCustomResourceDefinition({ name: crd.metadata!.name! })));
      return states.every((crd) => crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'));
    });

    const kwokHome = path.join(dir, 'kwok-home');
    fs.mkdirSync(kwokHome);
    processes.start(
      'kwok',
      bin('kwok'),
      [
        `--kubeconfig=${kubeconfig('kwok', tokens.kwok)}`,
        `--config=${kwokConfigFile}`,
        '--enable-crds=Logs,ClusterLogs,ClusterExec',
        '--manage-all-nodes=true',
        '--node-ip=127.0.0.1',
        '--node-name=localhost',
        `--node-port=${kwokPort}`,
        `--server-address=127.0.0.1:${kwokPort}`,
        // kwok renews the node Lease; node-lifecycle marks the node NotReady without it.
        '--node-lease-duration-seconds=40',
        '--cidr=10.244.0.0/16',
      ],
      // kwok merges $KWOK_WORKDIR/kwok.yaml (default ~/.kwok) into its config; keep it empty.
      { KWOK_WORKDIR: kwokHome },
    );

    for (const obj of k8s.loadAllYaml(fs.readFileSync(rbacFile, 'utf8')).filter(Boolean)) {
      await apply(objects, obj as k8s.KubernetesObject);
    }
    await apply(objects, fakeNode());

    const core = kc.makeApiClient(k8s.CoreV1Api);
    await Promise.all([
      // The not-ready taint (TaintNodesByCondition) goes only after node-lifecycle sees the node Ready.
      waitFor(`node ${fakeNodeName} Ready and schedulable`, deadline, processes, async () => {
        const node = await core.readNode({ name: fakeNodeName });
        const ready = node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
        const tainted = node.spec?.taints?.some((t) => t.key.startsWith('node.kubernetes.io/'));
        return Boolean(ready) && !tainted;
      }),
      // Proves the controller-manager runs; ServiceAccount admission rejects pods until it exists.
      waitFor('ServiceAccount default/default', deadline, processes, async () => {
        await core.readNamespacedServiceAccount({ name: 'default', namespace: 'default' });
        return true;
      }),
      waitFor(
        'kube-scheduler /healthz',
        deadline,
        processes,
        async () => (await probe(`https://127.0.0.1:${schedulerPort}/healthz`, { insecure: true })) === 200,
      ),
    ]);

    console.error(`[cluster] ready in ${((performance.now() - started) / 1000).toFixed(1)}s at ${server} (${dir})`);
    const logs = new FakeLogs(dir, objects, kwokPort);
    const execs = new FakeExecs(dir, objects, kc);
    const provisioner = new FakeProvisioner(dir, core);
    provisioner.start();
    return {
      server,
      adminKubeconfig: admin,
      kbatchKubeconfig: kbatch,
      dir,
      setLogs: (namespace, lines, logOpts) => logs.set(namespace, lines, logOpts?.podName),
      execDir: (namespace) => execs.dirFor(namespace),
      async stop() {
        provisioner.stop();
        await stop();
      },
    };
  } catch (err) {
    console.error(`[cluster] start failed after ${((performance.now() - started) / 1000).toFixed(1)}s`);
    processes.printLogTails();
    await stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------
// Processes

const stopSignals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Returns the idempotent stop() of the cluster, and makes sure it also runs when the test process is
 * interrupted (Ctrl-C, CI timeout), then dies of the same signal. If the process exits without stop(),
 * the 'exit' hook SIGKILLs everything synchronously. Only SIGKILL of the test process leaves strays.
 */
function stopOnExitOrSignal(dir: string, processes: ProcessGroup): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  const onExit = () => {
    processes.killAllNow();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    // Repeated signals (tsx relays Ctrl-C to its child too) must not cut the graceful stop short.
    void stop().finally(() => process.kill(process.pid, signal));
  };
  const stop = () =>
    (stopping ??= (async () => {
      await processes.stopAll();
      fs.rmSync(dir, { recursive: true, force: true });
      process.removeListener('exit', onExit);
      for (const signal of stopSignals) process.removeListener(signal, onSignal);
    })());
  process.once('exit', onExit);
  for (const signal of stopSignals) process.on(signal, onSignal);
  return stop;
}

class ProcessGroup {
  private readonly children: { name: string; child: ChildProcess; exited: Promise<void> }[] = [];

  constructor(private readonly logDir: string) {
    fs.mkdirSync(logDir, { recursive: true });
  }

  start(name: string, file: string, args: string[], env: Record<string, string> = {}): void {
    const out = fs.openSync(path.join(this.logDir, `${name}.log`), 'a');
    // detached: each process leads its own process group, so stop() also reaches anything it forks.
    const child = spawn(file, args, { detached: true, stdio: ['ignore', out, out], env: { ...process.env, ...env } });
    fs.closeSync(out);
    const exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', () => resolve());
    });
    this.children.push({ name, child, exited });
  }

  /** Name and exit status of a process that died, if any. */
  deadProcess(): string | undefined {
    const dead = this.children.find(({ child }) => child.exitCode !== null || child.signalCode !== null);
    return dead && `${dead.name} exited (${dead.child.exitCode ?? dead.child.signalCode})`;
  }

  async stopAll(): Promise<void> {
    // Clients first (kwok, scheduler, controller-manager), then apiserver, then etcd: fewer error logs.
    const order = [...this.children].reverse();
    const dependents = order.filter((p) => p.name !== 'kube-apiserver' && p.name !== 'etcd');
    await Promise.all(dependents.map((p) => stopOne(p.child, p.exited)));
    for (const p of order.filter((p) => !dependents.includes(p))) await stopOne(p.child, p.exited);
  }

  killAllNow(): void {
    for (const { child } of this.children) signalGroup(child, 'SIGKILL');
  }

  printLogTails(lines = 25): void {
    for (const { name } of this.children) {
      const file = path.join(this.logDir, `${name}.log`);
      const text = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      console.error(`----- ${name} (${file}), last ${lines} lines -----`);
      console.error(
        text
          .split('\n')
          .slice(-lines - 1)
          .join('\n'),
      );
    }
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is already gone.
  }
}

async function stopOne(child: ChildProcess, exited: Promise<void>): Promise<void> {
  signalGroup(child, 'SIGTERM');
  const graceful = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
  // The leader may be gone while something it forked lives on; SIGKILL the whole group either way.
  signalGroup(child, 'SIGKILL');
  if (!graceful) await exited;
}

async function waitFor(what: string, deadline: number, processes: ProcessGroup, check: () => Promise<boolean>): Promise<void> {
  let lastError: unknown;
  for (;;) {
    const dead = processes.deadProcess();
    if (dead) throw new Error(`${dead} while waiting for ${what}`);
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${startTimeoutMs / 1000}s waiting for ${what}${detail}`);
    }
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------------
// PKI, tokens, kubeconfigs

interface Pki {
  caCert: string;
  caCertPem: string;
  apiserverCert: string;
  apiserverKey: string;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

function writePki(dir: string): Pki {
  const pki = path.join(dir, 'pki');
  fs.mkdirSync(pki);
  const file = (name: string) => path.join(pki, name);
  // Own config so the system openssl.cnf cannot change the extensions. P-256 keys: instant to generate.
  fs.writeFileSync(
    file('openssl.cnf'),
    [
      '[req]',
      'distinguished_name = dn',
      '[dn]',
      '[ca]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '[server]',
      'basicConstraints = critical,CA:FALSE',
      'keyUsage = critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage = serverAuth',
      'subjectAltName = IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,' +
        'DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local',
      '',
    ].join('\n'),
  );
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: pki, stdio: ['ignore', 'ignore', 'pipe'] });
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    '-config',
    'openssl.cnf',
    '-extensions',
    'ca',
    ...newKey,
    '-days',
    '3650',
    '-subj',
    '/CN=kbatch-it-ca',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
  );
  openssl(
    'req',
    '-new',
    '-config',
    'openssl.cnf',
    ...newKey,
    '-subj',
    '/CN=kube-apiserver',
    '-keyout',
    'apiserver.key',
    '-out',
    'apiserver.csr',
  );
  openssl(
    'x509',
    '-req',
    '-in',
    'apiserver.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '3650',
    '-extfile',
    'openssl.cnf',
    '-extensions',
    'server',
    '-out',
    'apiserver.crt',
  );
  const sa = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  fs.writeFileSync(file('sa.key'), sa.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  fs.writeFileSync(file('sa.pub'), sa.publicKey.export({ type: 'spki', format: 'pem' }));
  return {
    caCert: file('ca.crt'),
    caCertPem: fs.readFileSync(file('ca.crt'), 'utf8'),
    apiserverCert: file('apiserver.crt'),
    apiserverKey: file('apiserver.key'),
    serviceAccountKey: file('sa.key'),
    serviceAccountPublicKey: file('sa.pub'),
  };
}

function writeTokens(dir: string) {
  const token = () => randomBytes(16).toString('hex');
  const tokens = { admin: token(), kcm: token(), scheduler: token(), kwok: token(), kbatch: token() };
  const file = path.join(dir, 'tokens.csv');
  // token,user,uid,"groups": control-plane components run as system:masters, as kwokctl does.
  fs.writeFileSync(
    file,
    [
      `${tokens.admin},admin,uid-admin,"system:masters"`,
      `${tokens.kcm},kube-controller-manager,uid-kcm,"system:masters"`,
      `${tokens.scheduler},kube-scheduler,uid-scheduler,"system:masters"`,
      `${tokens.kwok},kwok,uid-kwok,"system:masters"`,
      // What the kbatch ServiceAccount's token would authenticate as, without needing TokenRequest.
      `${tokens.kbatch},system:serviceaccount:kbatch:kbatch,uid-kbatch,` +
        '"system:serviceaccounts,system:serviceaccounts:kbatch,system:authenticated"',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return { file, ...tokens };
}

function writeKubeconfig(dir: string, name: string, server: string, caFile: string, token: string): string {
  const file = path.join(dir, `${name}.kubeconfig`);
  const config = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'kbatch-it', cluster: { server, 'certificate-authority': caFile } }],
    users: [{ name, user: { token } }],
    contexts: [{ name: 'kbatch-it', context: { cluster: 'kbatch-it', user: name } }],
    'current-context': 'kbatch-it',
  };
  fs.writeFileSync(file, JSON.stringify(config, null, 2), { mode: 0o600 });
  return file;
}

function loadKubeconfig(file: string): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(file);
  return kc;
}

// ---------------------------------------------------------------------------------------------------
// Objects

/** Create-or-update with server-side apply; idempotent, so a partial earlier attempt does no harm. */
async function apply(objects: k8s.KubernetesObjectApi, obj: k8s.KubernetesObject): Promise<void> {
  await objects.patch(obj, undefined, undefined, fieldManager, true, k8s.PatchStrategy.ServerSideApply);
}

function fakeNode(): k8s.V1Node {
  // No status.addresses: kwok fills in 127.0.0.1 and its own port, which is where logs are fetched from.
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: fakeNodeName,
      annotations: { 'node.alpha.kubernetes.io/ttl': '0', 'kwok.x-k8s.io/node': 'fake' },
      labels: {
        'kubernetes.io/hostname': fakeNodeName,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        type: 'kwok',
      },
    },
    spec: {},
  };
}

// ---------------------------------------------------------------------------------------------------
// Fake container logs

class FakeLogs {
  private readonly written = new Map<string, string[]>();

  constructor(
    private readonly dir: string,
    private readonly objects: k8s.KubernetesObjectApi,
    private readonly kwokPort: number,
  ) {}

  async set(namespace: string, lines: string[], podName?: string): Promise<void> {
    const entries = lines.flatMap((line) => line.split('\n'));
    const file = path.join(this.dir, 'podlogs', namespace, podName ? `pod-${podName}.log` : 'all-pods.log');
    this.writeFile(file, entries);
    const spec = { logs: [{ logsFile: file, follow: true }] };
    await apply(
      this.objects,
      podName
        ? ({ apiVersion: 'kwok.x-k8s.io/v1alpha1', kind: 'Logs', metadata: { name: podName, namespace }, spec } as k8s.KubernetesObject)
        : ({
            apiVersion: 'kwok.x-k8s.io/v1alpha1',
            kind: 'ClusterLogs',
            metadata: { name: `namespace-${namespace}` },
            spec: { ...spec, selector: { matchNamespaces: [namespace] } },
          } as k8s.KubernetesObject),
    );
    await this.waitServed(namespace, podName ?? `kbatch-probe-${randomBytes(4).toString('hex')}`, entries);
  }

  /** CRI log format, as a container runtime writes it; appends when the old lines are a prefix. */
  private writeFile(file: string, entries: string[]): void {
    const previous = this.written.get(file);
    const criLine = (line: string) => `${new Date().toISOString()} stdout F ${line}\n`;
    if (previous && previous.length <= entries.length && previous.every((line, i) => line === entries[i])) {
      fs.appendFileSync(file, entries.slice(previous.length).map(criLine).join(''));
    } else {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, entries.map(criLine).join(''));
    }
    this.written.set(file, entries);
  }

  /** kwok picks up Logs/ClusterLogs through a watch; ask it directly until it serves the new content. */
  private async waitServed(namespace: string, podName: string, entries: string[]): Promise<void> {
    const expected = entries.map((line) => `${line}\n`).join('');
    const url = `http://127.0.0.1:${this.kwokPort}/containerLogs/${namespace}/${podName}/main`;
    const deadline = Date.now() + 10_000;
    let last = '';
    while (Date.now() < deadline) {
      const { status, body } = await httpGet(url);
      if (status === 200 && body === expected) return;
      last = `${status} ${body.slice(0, 200)}`;
      await sleep(50);
    }
    throw new Error(`kwok does not serve the logs set for ${namespace}/${podName}; last answer: ${last}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Exec into fake pods

class FakeExecs {
  private readonly ready = new Map<string, Promise<string>>();

  constructor(
    private readonly dir: string,
    private readonly objects: k8s.KubernetesObjectApi,
    private readonly kc: k8s.KubeConfig,
  ) {}

  dirFor(namespace: string): Promise<string> {
    let ready = this.ready.get(namespace);
    if (!ready) {
      ready = this.configure(namespace);
      this.ready.set(namespace, ready);
      ready.catch(() => this.ready.delete(namespace));
    }
    return ready;
  }

  private async configure(namespace: string): Promise<string> {
    const workDir = execWorkDir(this.dir, namespace);
    fs.mkdirSync(workDir, { recursive: true });
    await apply(this.objects, {
      apiVersion: 'kwok.x-k8s.io/v1alpha1',
      kind: 'ClusterExec',
      metadata: { name: `namespace-${namespace}` },
      // The probe namespace shares the rule, so the probe proves it is served without creating (and
      // so claiming) the user's namespace, which kbatch makes with its owner record on first use.
      spec: { selector: { matchNamespaces: [namespace, probeNamespace(namespace)] }, execs: [{ local: { workDir } }] },
    } as k8s.KubernetesObject);
    // The user's volume is that same directory: FakeProvisioner binds the namespace's kbatch-uploads
    // claim to a PV of it, so exec and (what stands for) the job's mounts see the same files.
    await this.waitServed(probeNamespace(namespace), workDir);
    return workDir;
  }

  /** kwok reads ClusterExec through a watch: exec `pwd` into a probe pod until it answers workDir. */
  private async waitServed(namespace: string, workDir: string): Promise<void> {
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const name = `kbatch-exec-probe-${randomBytes(4).toString('hex')}`;
    const deadline = Date.now() + 30_000;
    const until = async (what: string, check: () => Promise<boolean>) => {
      let last: unknown;
      while (Date.now() < deadline) {
        try {
          if (await check()) return;
        } catch (err) {
          last = err;
        }
        await sleep(100);
      }
      throw new Error(`kwok exec in ${namespace}: timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    };
    await core.createNamespace({ body: { metadata: { name: namespace } } }).catch((err) => {
      if ((err as { code?: number }).code !== 409) throw err;
    });
    await until('the default ServiceAccount', async () => Boolean(await core.readNamespacedServiceAccount({ name: 'default', namespace })));
    await core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name },
        spec: { automountServiceAccountToken: false, containers: [{ name: 'probe', image: 'probe' }] },
      },
    });
    try {
      await until('the probe pod to run', async () => (await core.readNamespacedPod({ name, namespace })).status?.phase === 'Running');
      const exec = new k8s.Exec(this.kc);
      await until('exec to run in the work dir', async () => (await execOnce(exec, namespace, name, ['pwd'])).trim() === workDir);
    } finally {
      await core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }).catch(() => undefined);
    }
  }
}

/** The directory that stands for a namespace's volume: exec runs there (FakeExecs), the claim's PV points there. */
function execWorkDir(dir: string, namespace: string): string {
  return path.join(dir, 'exec', namespace);
}

// ---------------------------------------------------------------------------------------------------
// A test-only volume provisioner

/**
 * The test cluster has no storage provisioner, and every kbatch job mounts the user's
 * `kbatch-uploads` claim (its /outputs): a claim left unbound would keep its pods unscheduled. This
 * polls for unbound `kbatch-uploads` claims in every namespace and makes each a hostPath PV bound
 * ahead (claimRef with the claim's uid) whose path is the namespace's exec directory, so exec into
 * the volume helper and the files a test writes "as the job" are one directory. A PV left Released
 * by an earlier claim of that name (a deleted and recreated namespace) is replaced.
 */
class FakeProvisioner {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly dir: string,
    private readonly core: k8s.CoreV1Api,
  ) {}

  start(): void {
    const tick = async () => {
      try {
        await this.provision();
      } catch {
        // The API server may be stopping; try again on the next tick.
      }
      if (!this.stopped) this.timer = setTimeout(() => void tick(), 200).unref();
    };
    void tick();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private async provision(): Promise<void> {
    const { items } = await this.core.listPersistentVolumeClaimForAllNamespaces({ fieldSelector: 'metadata.name=kbatch-uploads' });
    for (const claim of items) {
      if (claim.spec?.volumeName || claim.status?.phase !== 'Pending' || claim.metadata?.deletionTimestamp) continue;
      const namespace = claim.metadata!.namespace!;
      const name = `kbatch-uploads-${namespace}`;
      const workDir = execWorkDir(this.dir, namespace);
      fs.mkdirSync(workDir, { recursive: true });
      const existing = await this.core.readPersistentVolume({ name }).catch(() => undefined);
      if (existing) {
        const boundTo = existing.spec?.claimRef?.uid;
        if (boundTo && boundTo !== claim.metadata!.uid) await this.core.deletePersistentVolume({ name }).catch(() => undefined);
        continue;
      }
      await this.core
        .createPersistentVolume({
          body: {
            metadata: { name },
            spec: {
              capacity: { storage: '100Gi' },
              accessModes: ['ReadWriteOnce', 'ReadWriteMany'],
              persistentVolumeReclaimPolicy: 'Retain',
              storageClassName: claim.spec?.storageClassName ?? '',
              hostPath: { path: workDir },
              claimRef: { namespace, name: 'kbatch-uploads', uid: claim.metadata!.uid },
            },
          },
        })
        .catch(() => undefined);
    }
  }
}

function probeNamespace(namespace: string): string {
  return `kwok-exec-probe-${createHash('sha256').update(namespace).digest('hex').slice(0, 12)}`;
}

/** Stdout of a command run through the API server's exec, failing on a non-Success status. */
function execOnce(exec: k8s.Exec, namespace: string, pod: string, command: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const stdout = new Writable({
      write(chunk: Buffer, _enc, done) {
        out += chunk.toString();
        done();
      },
    });
    exec
      .exec(namespace, pod, 'probe', command, stdout, null, null, false, (status) => {
        if (status.status === 'Success') resolve(out);
        else reject(new Error(status.message ?? JSON.stringify(status)));
      })
      .then((ws) => ws.on('close', () => setTimeout(() => reject(new Error('exec closed without a status')), 50)))
      .catch(reject);
  });
}

// ---------------------------------------------------------------------------------------------------
// Small helpers

function auditArgs(dir: string): string[] {
  const policy = path.join(dir, 'audit-policy.yaml');
  fs.writeFileSync(policy, 'apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n');
  return [
    `--audit-policy-file=${policy}`,
    `--audit-log-path=${path.join(dir, 'audit.log')}`,
    '--audit-log-mode=blocking',
    '--audit-log-format=json',
  ];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function freePorts(count: number): Promise<number[]> {
  // All listeners stay open until every port is known, so the same port is never handed out twice.
  const servers = Array.from({ length: count }, () => net.createServer());
  return Promise.all(
    servers.map(
      (srv) =>
        new Promise<number>((resolve, reject) => {
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port));
        }),
    ),
  ).finally(() => servers.forEach((srv) => srv.close()));
}

/** Status code of a GET, 0 when nothing answers. */
function probe(url: string, opts: { ca?: string; insecure?: boolean }): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get(url, { ca: opts.ca, rejectUnauthorized: !opts.insecure, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: 0, body }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', (err) => resolve({ status: 0, body: err.message }));
  });
}

// ---------------------------------------------------------------------------------------------------
// Standalone: keep a cluster up until Ctrl-C.

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const cluster = await startCluster();
  console.log(`server:            ${cluster.server}`);
  console.log(`admin kubeconfig:  ${cluster.adminKubeconfig}`);
  console.log(`kbatch kubeconfig: ${cluster.kbatchKubeconfig}`);
  console.log(`process logs:      ${cluster.dir}/logs`);
  // The child processes keep the event loop alive; startCluster's signal handling stops them on Ctrl-C.
  console.log('Ctrl-C (or SIGTERM) stops the cluster and removes its directory.');
}
