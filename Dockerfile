# syntax=docker/dockerfile:1.7
# One image for both programs: the controller (Deployment) and the poller (CronJob) choose their
# entry point with `command` (see manifests/). Build and publish: docs/install.md.
#
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=0.1.0 \
#     -t ghcr.io/kubewatcher/kubewatcher:0.1.0 --push .
#
# Without Docker, `scripts/build-image --push REF` builds the same image: this file's build stage runs
# its staging step (scripts/lib/image-build.ts) and the final stage copies the staged layers as they
# are, with the same configuration (test/image.test.ts checks both).

# ---- build: install with the pinned pnpm, build the bundles, then stage the image's file tree:
#      /stage/base (Debian's libc6, libgcc-s1, libstdc++6, ca-certificates, tzdata; Node.js from the npm
#      registry; users; /tmp) and /stage/app (the two programs' V8 start-up snapshots, built from the
#      bundles with that Node.js binary, and their source maps).
FROM node:24-bookworm-slim AS build
ENV CI=true
WORKDIR /src
# apt's package lists, for `apt-get download` of the base packages.
RUN apt-get update
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
COPY tsconfig.base.json rolldown.config.ts ./
# The packages' build runs programs.ts (the start-up snapshot of each bundle).
COPY scripts/lib/programs.ts scripts/lib/
COPY packages/ packages/
RUN pnpm -r run build
COPY scripts/bootstrap.sh scripts/
COPY scripts/lib/image-build.ts scripts/lib/image-build-cli.ts scripts/lib/images.ts scripts/lib/
RUN node scripts/lib/image-build-cli.ts --stage /stage

# ---- runtime: nothing but the staged tree; no shell, no package manager; runs as uid/gid 65532.
FROM scratch
COPY --from=build /stage/base/ /
COPY --from=build /stage/app/ /
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kubewatcher" \
      org.opencontainers.image.description="Keeps Kubernetes workloads on the newest image behind the tags they run" \
      org.opencontainers.image.source="https://github.com/kubewatcher/kubewatcher" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    NODE_ENV=production
WORKDIR /app
USER 65532:65532
# node is PID 1 and receives SIGTERM itself (no shell in between); the programs handle it.
ENTRYPOINT ["node"]
# The controller, from its start-up snapshot (the manifests add heap flags).
CMD ["--snapshot-blob", "/app/controller/main.blob", "--"]
