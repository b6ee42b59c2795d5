# One image for the three functions; each Knative Service picks its bundle with `command`.
# Both stages use the same Debian release, so the node binary copied out of the first finds the
# glibc and libstdc++ it was linked against in the second. Pin both by digest in your own builds.
ARG NODE_IMAGE=node:24-bookworm-slim
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# The build ends with a warm-up run that writes V8's code cache (dist/main.cjs.cache, see
# scripts/bundle.ts). V8 accepts a cache only from the same V8 and flags, so the build runs under
# the very node binary the runtime stage copies, not the `node` package npm put on PATH.
RUN /usr/local/bin/node --import tsx scripts/bundle.ts

# The runtime holds node and the bundles, nothing else: no npm, npx, corepack or yarn (nothing is
# installed at run time, and a package manager in a service image is only attack surface), no C
# headers, no node_modules (esbuild inlined every dependency) and no source maps.
FROM ${RUNTIME_IMAGE}
COPY --from=build /usr/local/bin/node /usr/local/bin/node
# A passwd entry for the numeric user, so os.userInfo()/homedir() have an answer; no home is created
# because the root filesystem is read-only in the cluster (knative/services.yaml).
RUN groupadd --gid 10001 kbatch \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kbatch
WORKDIR /app
# The service bundles only: dist/kbatch.mjs (the CLI) runs on users' machines, not in the service.
# Each entry (server, submit, jobs, uploads) runs the shared main.cjs through its code cache.
COPY --from=build /src/dist/server.mjs /src/dist/submit.mjs /src/dist/jobs.mjs /src/dist/uploads.mjs /src/dist/main.cjs /src/dist/main.cjs.cache ./dist/
# HOME too: os.homedir() throws for a user without a passwd entry (a cluster may pick another uid).
# Memory under load (README "Performance"; bench/run.ts starts our server with these same values):
# NODE_OPTIONS caps V8's young generation, which otherwise grows to 2 x 64 MB under concurrent lists and
# submits and stays there (peak RSS 280-300 MB). glibc's fixed mmap threshold gives every freed buffer
# of 128 KiB or more (an API answer, an upload chunk) back to the system at once, instead of letting the
# dynamic threshold move such buffers into the heap, where they stay; two arenas for the few threads.
ENV NODE_ENV=production PORT=8080 KBATCH_HOST=0.0.0.0 HOME=/nonexistent
ENV NODE_OPTIONS=--max-semi-space-size=8 MALLOC_MMAP_THRESHOLD_=131072 MALLOC_ARENA_MAX=2
# Numeric, so the kubelet can check runAsNonRoot without reading the image's /etc/passwd;
# knative/services.yaml sets the same ids.
USER 10001:10001
EXPOSE 8080
CMD ["node", "dist/server.mjs"]
