# Terminus worker image: `docker build -t terminus .`, or via docker-compose.yml.

# Build needs (scripts/prereqs): a C toolchain and make (in the rust image),
# pkg-config, libssl-dev, zlib1g-dev; no cmake, no libsasl2 (no gssapi feature).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin terminus \
 && cp target/release/terminus /usr/local/bin/terminus

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin terminus
COPY --from=build /usr/local/bin/terminus /usr/local/bin/terminus
USER 10001:10001
ENTRYPOINT ["terminus"]
CMD ["run"]
