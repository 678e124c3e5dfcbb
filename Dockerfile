# The agentflow image: one binary, every service (`agentflow api`,
# `consumer`, `registry`, `bridge`, `migrate`, `demo-agents`, `serve`, the CLI).
#   docker build -t agentflow .
#   docker run --rm agentflow --help
# Dockerfile.consumer is this file plus the consumer's CMD; keep the two in
# step (tests/deploy checks they differ only there).
#
# Packages come from scripts/install-deps.sh, the script `make test` and CI
# run: the build stage installs the build list, the run stage the --runtime
# list (which scripts/check-runtime-deps.sh compares with `ldd agentflow`).
# Works with the classic builder and BuildKit alike.

# ---- build: Debian 12, the same packages and CMake build as the tests ----
FROM debian:12 AS build
WORKDIR /src
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
# RelWithDebInfo, as `make` builds what the tests run; the debug info stays
# in this stage (/out/agentflow.debug) and the image gets a stripped binary.
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
 && cmake --build /build --target agentflow \
 && mkdir -p /out \
 && objcopy --only-keep-debug /build/agentflow /out/agentflow.debug \
 && objcopy --strip-debug --add-gnu-debuglink=/out/agentflow.debug /build/agentflow /out/agentflow

# ---- run: Debian 12 slim, runtime libraries only, non-root ----
FROM debian:12-slim AS runtime
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh --runtime \
 && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
 && groupadd --system --gid 10001 agentflow \
 && useradd --system --uid 10001 --gid agentflow --home-dir /var/lib/agentflow --create-home \
      --shell /usr/sbin/nologin agentflow
COPY --from=build /out/agentflow /usr/local/bin/agentflow
# Fails the build if a library of the binary is missing from the run stage.
RUN if ldd /usr/local/bin/agentflow | grep "not found"; then exit 1; fi \
 && agentflow --version
USER 10001:10001
WORKDIR /var/lib/agentflow
# `serve` keeps its SQLite data here; mount a volume to keep it.
ENV AGENTFLOW_DATA_DIR=/var/lib/agentflow/data
# api 8000, registry 8080, consumer health 8081, bridge health 8082, demo agents 9000
EXPOSE 8000 8080 8081 8082 9000
ENTRYPOINT ["agentflow"]
CMD ["--help"]
