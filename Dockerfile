# One image holding the six service binaries; each container runs one of them
# (docker-compose.yml and k8s/ choose which with the command).
#
#   docker build -t printyard .
#   docker run --rm printyard printyard-api --help
#
# Two build arguments let the same file build where Docker Hub is out of reach
# (scripts/compose-check): RUNTIME_BASE, the image the runtime stage stands on, and
# BINARIES=prebuilt, which takes the service binaries from .compose/bin in the build context
# (built on the host) instead of building them in the `build` stage. Unused stages are not built
# (BuildKit).
ARG RUNTIME_BASE=debian:bookworm-slim
ARG BINARIES=build

# The dashboard (web/), which the api binary carries: npm packages as the lock pins them.
FROM node:20-bookworm-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run check && npm run build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
COPY --from=web /web/dist web/dist
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p printyard-api -p printyard-gateway -p printyard-archive \
      -p printyard-scheduler -p printyard-stats -p printyard-notifier -p printyard-filament \
 && mkdir -p /out \
 && find target/release -maxdepth 1 -type f -executable -name 'printyard-*' -exec cp {} /out/ \;

# Binaries built elsewhere, for BINARIES=prebuilt.
FROM scratch AS prebuilt
COPY .compose/bin/ /out/

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_BASE} AS runtime
# ffmpeg: the gateway decodes RTSPS cameras (X1, X1E, P2S, H2D, H2S) with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates ffmpeg \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home printyard
COPY --from=binaries /out/ /usr/local/bin/
USER 10001
# The admin listener (probes, metrics); api also serves /api/v1 on 8000.
EXPOSE 9090 8000
CMD ["printyard-api"]
