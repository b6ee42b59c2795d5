/**
 * The deployment manifests (knative/*.yaml) and the Dockerfile, read as a cluster would read them:
 * what Knative's admission accepts on a default install, the restricted security context, and an
 * RBAC role that grants exactly the calls the server makes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseAllDocuments } from 'yaml';

const root = resolve(import.meta.dirname, '../..');
const read = (file: string) => readFileSync(join(root, file), 'utf8');

type Obj = { kind?: string; metadata?: { name?: string; namespace?: string }; [key: string]: unknown };
function manifests(file: string): Obj[] {
  return parseAllDocuments(read(file))
    .map((doc) => {
      if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0]!.message}`);
      return doc.toJS() as Obj | null;
    })
    .filter((doc): doc is Obj => doc !== null);
}

/**
 * Knative Serving's config-defaults: max-revision-timeout-seconds defaults to 600
 * (pkg/apis/config/defaults.go, DefaultMaxRevisionTimeoutSeconds) and a Revision whose timeoutSeconds
 * exceeds it is refused (pkg/apis/serving/v1/revision_validation.go, validateTimeoutSeconds).
 */
const knativeDefaultMaxTimeoutSeconds = 600;

/**
 * Container securityContext fields Knative accepts with its default feature flags
 * (pkg/apis/serving/fieldmask.go, SecurityContextMask); a pod-level securityContext needs
 * kubernetes.podspec-securitycontext, which is disabled by default (PodSecurityContextMask).
 */
const knativeContainerSecurityFields = [
  'capabilities',
  'readOnlyRootFilesystem',
  'runAsUser',
  'runAsGroup',
  'runAsNonRoot',
  'allowPrivilegeEscalation',
  'seccompProfile',
  'privileged',
];

interface Container {
  name?: string;
  image?: string;
  securityContext?: Record<string, unknown>;
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  securityContext?: Record<string, unknown>;
  volumes?: { name: string; emptyDir?: unknown }[];
  timeoutSeconds?: number;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
}
const podSpecOf = (obj: Obj) => (obj.spec as { template: { spec: PodSpec } }).template.spec;

/** The final stage's USER of the Dockerfile, as uid and gid. */
function dockerfileUser(): { uid: number; gid: number } {
  const stages = read('Dockerfile').split(/^FROM /m);
  const user = /^USER\s+(\S+)\s*$/m.exec(stages[stages.length - 1]!)?.[1];
  assert.ok(user, 'the final stage sets USER');
  assert.match(user, /^\d+:\d+$/, 'USER is numeric uid:gid, so runAsNonRoot can be checked without /etc/passwd');
  const [uid, gid] = user.split(':').map(Number) as [number, number];
  return { uid, gid };
}

function assertRestricted(where: string, context: Record<string, unknown> | undefined, ids?: { uid: number; gid: number }) {
  assert.ok(context, `${where}: has a securityContext`);
  assert.is(context.runAsNonRoot, true, `${where}: runAsNonRoot`);
  assert.type(context.runAsUser, 'number', `${where}: numeric runAsUser`);
  assert.ok((context.runAsUser as number) > 0, `${where}: runAsUser is not root`);
  if (ids) {
    assert.is(context.runAsUser, ids.uid, `${where}: runAsUser is the Dockerfile's USER`);
    assert.is(context.runAsGroup, ids.gid, `${where}: runAsGroup is the Dockerfile's group`);
  }
  assert.is(context.allowPrivilegeEscalation, false, `${where}: allowPrivilegeEscalation false`);
  assert.is(context.readOnlyRootFilesystem, true, `${where}: readOnlyRootFilesystem`);
  assert.equal(context.capabilities, { drop: ['ALL'] }, `${where}: drops ALL capabilities, adds none`);
  assert.equal(context.seccompProfile, { type: 'RuntimeDefault' }, `${where}: seccomp RuntimeDefault`);
}

const services = manifests('knative/services.yaml').filter((obj) => obj.kind === 'Service');

const knative = suite('Knative Services are accepted by a default Knative install');
knative('there is one Service per function', () => {
  assert.equal(services.map((s) => s.metadata?.name).sort(), ['kbatch-jobs', 'kbatch-submit', 'kbatch-uploads']);
});
for (const service of services) {
  const name = service.metadata!.name!;
  const spec = podSpecOf(service);
  knative(`${name}: timeoutSeconds is within the default max-revision-timeout-seconds`, () => {
    assert.type(spec.timeoutSeconds, 'number');
    assert.ok(
      spec.timeoutSeconds! > 0 && spec.timeoutSeconds! <= knativeDefaultMaxTimeoutSeconds,
      `${spec.timeoutSeconds} > ${knativeDefaultMaxTimeoutSeconds}`,
    );
  });
  knative(`${name}: no pod-level securityContext (disabled by Knative's default feature flags)`, () => {
    assert.is(spec.securityContext, undefined);
  });
  knative(`${name}: only container securityContext fields Knative allows by default`, () => {
    for (const container of spec.containers) {
      for (const key of Object.keys(container.securityContext ?? {}))
        assert.ok(knativeContainerSecurityFields.includes(key), `${key} is not allowed by Knative's defaults`);
    }
  });
  knative(`${name}: runs as the kbatch identity`, () => assert.is(spec.serviceAccountName, 'kbatch'));
  knative(`${name}: ready on /readyz (dependencies reachable), alive on /healthz (the process alone)`, () => {
    const container = spec.containers[0] as {
      readinessProbe?: { httpGet?: { path?: string } };
      livenessProbe?: { httpGet?: { path?: string } };
    };
    assert.is(container.readinessProbe?.httpGet?.path, '/readyz');
    assert.is(container.livenessProbe?.httpGet?.path, '/healthz');
  });
}
knative("the example PodMonitor scrapes /metrics on exactly the three Services' pods", () => {
  const [monitor] = manifests('knative/optional/monitoring.yaml') as (Obj & {
    spec: { selector: { matchExpressions: { key: string; values: string[] }[] }; podMetricsEndpoints: { path: string }[] };
  })[];
  assert.is(monitor!.kind, 'PodMonitor');
  const expression = monitor!.spec.selector.matchExpressions[0]!;
  assert.is(expression.key, 'serving.knative.dev/service');
  assert.equal([...expression.values].sort(), services.map((s) => s.metadata!.name!).sort());
  assert.is(monitor!.spec.podMetricsEndpoints[0]!.path, '/metrics');
});
knative.run();

const restricted = suite('every container runs restricted: numeric non-root user, no capabilities, read-only root');
restricted('the Dockerfile runs as a numeric non-root user', () => {
  assert.ok(dockerfileUser().uid > 0);
});
for (const service of services) {
  restricted(`${service.metadata!.name}`, () => {
    for (const container of podSpecOf(service).containers)
      assertRestricted(service.metadata!.name!, container.securityContext, dockerfileUser());
  });
}
restricted('the functions that take multipart bodies spool to a disk-backed /tmp emptyDir, bounded; the others write nothing', () => {
  for (const service of services) {
    const spec = podSpecOf(service);
    const tmp = spec.containers[0]!.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
    if (!['kbatch-submit', 'kbatch-uploads'].includes(service.metadata!.name!)) {
      assert.is(tmp, undefined, `${service.metadata!.name} mounts no /tmp`);
      continue;
    }
    assert.ok(tmp, `${service.metadata!.name} mounts /tmp`);
    const emptyDir = spec.volumes?.find((volume) => volume.name === tmp.name)?.emptyDir as { medium?: string; sizeLimit?: string };
    assert.ok(emptyDir?.sizeLimit, `${service.metadata!.name}: /tmp is an emptyDir with a sizeLimit`);
    assert.is(emptyDir.medium, undefined, 'on disk, not in memory (Memory would count against the container)');
  }
});
const gateway = manifests('knative/gateway.yaml');
restricted('the gateway runs nginx unprivileged, writing only to its /tmp emptyDir', () => {
  const deployment = gateway.find((obj) => obj.kind === 'Deployment')!;
  const spec = podSpecOf(deployment);
  assert.is(spec.automountServiceAccountToken, false, 'nginx needs no Kubernetes credentials');
  for (const container of spec.containers) {
    assertRestricted('gateway', container.securityContext);
    const tmp = container.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
    assert.ok(tmp, '/tmp is mounted');
    assert.ok(spec.volumes?.find((volume) => volume.name === tmp.name)?.emptyDir, '/tmp is an emptyDir');
  }
  const config = (gateway.find((obj) => obj.kind === 'ConfigMap')!.data as Record<string, string>)['nginx.conf']!;
  assert.match(config, /^\s*pid \/tmp\//m, 'the pid file is in /tmp');
  for (const directive of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
    assert.match(config, new RegExp(`^\\s*${directive}_temp_path /tmp/`, 'm'), `${directive}_temp_path is in /tmp`);
  }
  assert.not.match(config, /^\s*user\s/m, 'no user directive (only meaningful for a root master)');
});
restricted.run();

const image = suite('the image: a marked placeholder, and nothing but node and the bundles');
const placeholder = 'registry.example.invalid/kbatch';
image('every Service uses the placeholder that kustomization.yaml replaces', () => {
  for (const service of services) {
    for (const container of podSpecOf(service).containers) assert.is(container.image, `${placeholder}:replace-me`);
  }
  const kustomization = manifests('knative/kustomization.yaml')[0] as { resources: string[]; images: { name: string }[] };
  assert.equal(
    kustomization.images.map((i) => i.name),
    [placeholder],
  );
  const listed = readdirSync(join(root, 'knative'))
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .sort();
  assert.equal([...kustomization.resources].sort(), listed, 'kustomization.yaml deploys every manifest');
});
image('the runtime stage copies node and the bundles only (no package manager, no source maps)', () => {
  const stages = read('Dockerfile')
    .split(/^FROM /m)
    .slice(1);
  const final = stages[stages.length - 1]!;
  assert.not.match(final.split('\n')[0]!, /node/i, 'the final stage is not built on the node image (which carries npm, corepack, yarn)');
  const copies = final.split('\n').filter((line) => line.startsWith('COPY'));
  assert.equal(copies, [
    'COPY --from=build /usr/local/bin/node /usr/local/bin/node',
    'COPY --from=build /src/dist/server.mjs /src/dist/submit.mjs /src/dist/jobs.mjs /src/dist/uploads.mjs /src/dist/main.cjs /src/dist/main.cjs.cache ./dist/',
  ]);
  assert.match(read('scripts/bundle.ts'), /sourcemap: false/);
});
image("every service process runs with the image's memory settings (the bench measures with the same)", () => {
  const dockerfile = read('Dockerfile');
  assert.match(dockerfile, /^ENV .*\bNODE_OPTIONS=--max-semi-space-size=\d+/m, 'the Dockerfile caps the young generation');
  assert.match(dockerfile, /^ENV .*\bMALLOC_MMAP_THRESHOLD_=\d+/m, 'large freed buffers go back to the system');
  for (const service of services) {
    for (const container of podSpecOf(service).containers as (Container & { env?: { name: string }[] })[]) {
      const overridden = container.env?.filter((e) => /^(NODE_OPTIONS|MALLOC_)/.test(e.name)) ?? [];
      assert.equal(overridden, [], `${service.metadata?.name}: the image's memory settings are overridden`);
    }
  }
  assert.match(read('bench/run.ts'), /\.\.\.deployedMemoryEnv\(\)/, "the bench starts our server with the image's settings");
});
image.run();

const secrets = suite('no usable secret is shipped');
secrets('no manifest carries the upload signing key', () => {
  for (const file of readdirSync(join(root, 'knative')).filter((f) => f.endsWith('.yaml'))) {
    for (const obj of manifests(`knative/${file}`)) {
      assert.is.not(obj.kind, 'Secret', `${file} ships a Secret`);
      const data = obj.data as Record<string, string> | undefined;
      assert.not.ok(data && 'KBATCH_UPLOAD_SECRET' in data, `${file} sets KBATCH_UPLOAD_SECRET`);
    }
  }
});
secrets('the Services read it from the kbatch-secrets Secret, which the README says how to create', () => {
  for (const service of services) {
    const envFrom =
      (podSpecOf(service).containers[0] as { envFrom?: { secretRef?: { name: string; optional?: boolean } }[] }).envFrom ?? [];
    const ref = envFrom.find((source) => source.secretRef)?.secretRef;
    assert.equal(ref, { name: 'kbatch-secrets' }, 'required (not optional), so a missing key stops the start');
  }
  assert.match(read('README.md'), /create secret generic kbatch-secrets[^\n]*\n?[^\n]*KBATCH_UPLOAD_SECRET="?\$\(openssl rand -hex 32\)/);
});
secrets.run();

/**
 * The Kubernetes calls the server makes, read from its source: `core.createNamespacedSecret(...)` is
 * create on secrets, `batch.readNamespacedJob(...)` get on batch jobs, and the pod log URL get on pods/log.
 */
function callsInSource(): Set<string> {
  const verbs: Record<string, string> = {
    create: 'create',
    read: 'get',
    list: 'list',
    patch: 'patch',
    replace: 'update',
    delete: 'delete',
    deleteCollection: 'deletecollection',
  };
  const groups: Record<string, string> = { core: '', batch: 'batch' };
  const calls = new Set<string>();
  const files = (dir: string): string[] =>
    readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) =>
      entry.isDirectory() ? files(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
    );
  for (const file of files('lib')) {
    const source = read(file);
    for (const match of source.matchAll(
      /\b(\w+)\.(deleteCollection|create|read|list|patch|replace|delete)(Namespaced)?([A-Z]\w*)\(\s*\{/g,
    )) {
      let [, client, verb, , type] = match as unknown as [string, string, string, string, string];
      // Kubernetes API clients are named after their group (core, batch, rbacApi ...); `this.createOwner({`
      // and other methods of ours are not calls to the API.
      if (!/^(core|batch|apps|rbac|networking|policy|storage|coordination|autoscaling|custom)|Api$/i.test(client)) continue;
      const group = Object.entries(groups).find(([prefix]) => client.toLowerCase().startsWith(prefix))?.[1];
      assert.ok(group !== undefined, `${file}: unknown API client ${client}; teach this test its API group`);
      // listJobForAllNamespaces (the admin view) is list on jobs, cluster-wide: granted by the ClusterRole binding.
      type = type.replace(/ForAllNamespaces$/, '');
      const resource = type.endsWith('Log') ? `${type.slice(0, -3).toLowerCase()}s/log` : `${type.toLowerCase()}s`;
      calls.add(`${group}/${resource}:${verbs[verb]}`);
    }
    // Raw reads (lib/k8s/connection.ts getJson) name their path: a collection is a list, a name a get.
    for (const [, path] of source.matchAll(/\bgetJson<[^(]*\([^,]+,[^,]+,\s*[`'](\/apis?\/[^`']+)[`']/g)) {
      const segments = path!.split('/').filter(Boolean);
      const group = segments[0] === 'apis' ? segments[1]! : '';
      const rest = segments.slice(segments[0] === 'apis' ? 3 : 2);
      const [resource, name] = rest[0] === 'namespaces' ? rest.slice(2) : rest;
      calls.add(`${group}/${resource}:${name === undefined ? 'list' : 'get'}`);
    }
    if (/\/pods\/\$\{[^}]+\}\/log/.test(source)) calls.add('/pods/log:get');
    // Exec over a WebSocket is a GET that the API server authorizes as both get and create on pods/exec.
    if (/new k8s\.Exec\b/.test(source)) for (const verb of ['get', 'create']) calls.add(`/pods/exec:${verb}`);
    if (/new k8s\.Watch\b/.test(source)) assert.unreachable(`${file} watches; add its resources to this test`);
  }
  return calls;
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}
const rbac = manifests('knative/rbac.yaml');
const clusterRole = rbac.find((obj) => obj.kind === 'ClusterRole') as Obj & { rules: Rule[] };
function granted(): Set<string> {
  const grants = new Set<string>();
  for (const rule of clusterRole.rules) {
    for (const group of rule.apiGroups)
      for (const resource of rule.resources) for (const verb of rule.verbs) grants.add(`${group}/${resource}:${verb}`);
  }
  return grants;
}

const roles = suite('the kbatch ClusterRole grants exactly what the server calls');
roles('no wildcard', () => {
  for (const rule of clusterRole.rules) {
    for (const list of [rule.apiGroups, rule.resources, rule.verbs]) assert.not.ok(list.includes('*'), JSON.stringify(rule));
  }
});
roles('Secrets can be created, owned and deleted, never read: no get, list or watch', () => {
  for (const verb of ['get', 'list', 'watch']) assert.not.ok(granted().has(`/secrets:${verb}`), `secrets:${verb} is granted`);
});
roles('every call the server makes is granted', () => {
  const grants = granted();
  const calls = callsInSource();
  assert.ok(calls.has('/secrets:create') && calls.has('batch/jobs:create'), "the source scan finds the server's calls");
  const missing = [...calls].filter((call) => !grants.has(call));
  assert.equal(missing, [], `knative/rbac.yaml lacks ${missing.join(', ')}`);
});
roles('nothing is granted that the server does not call', () => {
  const calls = callsInSource();
  const unused = [...granted()].filter((grant) => !calls.has(grant));
  assert.equal(unused, [], `knative/rbac.yaml grants unused ${unused.join(', ')}`);
});
roles('bound to the kbatch ServiceAccount only', () => {
  const binding = rbac.find((obj) => obj.kind === 'ClusterRoleBinding') as Obj & { roleRef: { name: string }; subjects: unknown[] };
  assert.is(binding.roleRef.name, clusterRole.metadata!.name);
  assert.equal(binding.subjects, [{ kind: 'ServiceAccount', name: 'kbatch', namespace: 'kbatch' }]);
});
roles.run();
