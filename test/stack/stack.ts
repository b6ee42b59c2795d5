import { resolve } from 'node:path';
import { startCluster, type Cluster } from './cluster.ts';
import { startHub, type Hub } from './hub.ts';
import { freePort, startServer, type KbatchServer } from './server.ts';

const fixtures = resolve(import.meta.dirname, '../fixtures');

export interface Stack {
  cluster: Cluster;
  hub: Hub;
  /** The one-process kbatch server on the Kubernetes backend, as the kbatch identity. */
  server: KbatchServer;
  /** `${hub.url}/services/kbatch/`: every request goes through the Hub's proxy. */
  serviceUrl: string;
  stop(): Promise<void>;
}

export const serverSettings = {
  KBATCH_BACKEND: 'kubernetes',
  JUPYTERHUB_SERVICE_NAME: 'kbatch',
  KBATCH_PROFILE_FILE: resolve(fixtures, 'profiles.yaml'),
  KBATCH_JOB_TEMPLATE_FILE: resolve(fixtures, 'job-template.yaml'),
  KBATCH_LOG_POLL_SECONDS: '1',
  KBATCH_MAX_UPLOAD_BYTES: String(8 * 1024 * 1024),
  KBATCH_CONFIGMAP_MAX_BYTES: String(256 * 1024),
};

/**
 * The real stack: control plane + KWOK, JupyterHub + CHP, and our server between them. The Hub is
 * started first with the server's port reserved, because the server needs the Hub's API URL.
 */
export async function startStack(extraEnv: Record<string, string> = {}): Promise<Stack> {
  const started = Date.now();
  const cluster = await startCluster();
  const port = await freePort();
  let hub: Hub | undefined;
  try {
    hub = await startHub({ serviceUrl: `http://127.0.0.1:${port}` });
    const server = await startServer(
      {
        ...serverSettings,
        KUBECONFIG: cluster.kbatchKubeconfig,
        JUPYTERHUB_API_URL: hub.apiUrl,
        KBATCH_OAUTH_CLIENT_SECRET: hub.oauthClientSecret,
        ...extraEnv,
      },
      { port },
    );
    console.error(`[stack] up in ${((Date.now() - started) / 1000).toFixed(1)}s`);
    const h = hub;
    return {
      cluster,
      hub: h,
      server,
      serviceUrl: `${h.url}/services/kbatch/`,
      async stop() {
        await Promise.allSettled([server.stop(), h.stop()]);
        await cluster.stop();
      },
    };
  } catch (error) {
    await hub?.stop().catch(() => undefined);
    await cluster.stop().catch(() => undefined);
    throw error;
  }
}
