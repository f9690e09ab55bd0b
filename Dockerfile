# syntax=docker/dockerfile:1.7
# One image for both programs: the controller (Deployment) and the poller (CronJob) choose their
# entry point with `command` (see manifests/). Build and publish: docs/install.md.
#
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=0.1.0 \
#     -t ghcr.io/kubewatcher/kubewatcher:0.1.0 --push .

# ---- build: install with the pinned pnpm, compile, then lay out each program with only its
#      production dependencies under /app/packages/<name>.
FROM node:24-bookworm-slim AS build
ENV CI=true
WORKDIR /src
# Manifests first, so the dependency layer is reused until the lockfile changes.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY packages/shared/package.json packages/shared/
COPY packages/controller/package.json packages/controller/
COPY packages/poller/package.json packages/poller/
# The pnpm that package.json's `packageManager` pins, from the npm registry (as scripts/bootstrap.sh
# does; corepack would work too, but fails whenever its bundled signing keys lag a pnpm release).
RUN npm install --global --no-audit --no-fund --loglevel=error \
      "$(node -p 'require("./package.json").packageManager.split("+")[0]')"
RUN --mount=type=cache,id=kubewatcher-pnpm-store,target=/pnpm/store \
    pnpm install --frozen-lockfile --store-dir /pnpm/store
COPY tsconfig.base.json ./
COPY packages/ packages/
RUN pnpm -r run build
# `--legacy`: the workspace does not set inject-workspace-packages, so pnpm 10 deploys the classic
# way: the package's `files` (dist/) plus a node_modules of its production dependencies, with
# @kubewatcher/shared copied in (its dist/) rather than linked.
RUN --mount=type=cache,id=kubewatcher-pnpm-store,target=/pnpm/store \
    for p in controller poller; do \
      pnpm --filter "@kubewatcher/$p" deploy --prod --legacy --store-dir /pnpm/store "/app/packages/$p" || exit 1; \
    done

# ---- runtime: distroless Node.js 24, no shell, no package manager; runs as uid/gid 65532.
FROM gcr.io/distroless/nodejs24-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kubewatcher" \
      org.opencontainers.image.description="Keeps Kubernetes workloads on the newest image behind the tags they run" \
      org.opencontainers.image.source="https://github.com/kubewatcher/kubewatcher" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
# distroless keeps node at /nodejs/bin/node, off the default PATH; putting it on PATH lets the
# manifests say `command: [node, ...]` and this image say ENTRYPOINT ["node"].
ENV PATH=/nodejs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    NODE_ENV=production
# Owned by root and not writable by the runtime user: the process cannot change its own code.
COPY --from=build --chown=0:0 /app /app
WORKDIR /app
USER 65532:65532
# node is PID 1 and receives SIGTERM itself (no shell in between); the programs handle it.
ENTRYPOINT ["node"]
CMD ["/app/packages/controller/dist/main.js"]
