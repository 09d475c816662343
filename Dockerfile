# The one modelsync image: controller, lambda server, mirror and the bump-pr Tekton step.
#   docker build -t modelsync:0.1.0 .
# Build stage: the release binary of the `modelsync` package.
FROM rust:1.89-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p modelsync \
 && install -D -m 0755 target/release/modelsync /out/modelsync

# Runtime: Debian slim with CA certificates (https git and the GitHub API), libssl (libgit2's
# https) and bash (the bump-model-pr Task's step script). Runs as an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --home-dir /home/nonroot --create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /out/modelsync /usr/local/bin/modelsync
USER 65532:65532
ENV HOME=/home/nonroot
ENTRYPOINT ["/usr/local/bin/modelsync"]
CMD ["--help"]
