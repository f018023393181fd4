# Multi-stage build: compile with the Rust toolchain, run on a slim Debian with nothing else.
# libpq and libsqlite3 are bundled into the binary (pq-sys/libsqlite3-sys "bundled").
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Build settings: SQLite compiled with a page cache per connection (see the file).
COPY .cargo ./.cargo
COPY src ./src
COPY migrations ./migrations
COPY openapi ./openapi
COPY examples ./examples
COPY sdk-js/dist ./sdk-js/dist
COPY sdk-js/demo ./sdk-js/demo
RUN cargo build --release --locked --bin consentry

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/consentry consentry \
    && mkdir -p /var/lib/consentry && chown consentry /var/lib/consentry
COPY --from=build /src/target/release/consentry /usr/local/bin/consentry
COPY examples /usr/share/consentry/examples
USER consentry
WORKDIR /var/lib/consentry
ENV CONSENTRY__LISTEN=0.0.0.0:8080
EXPOSE 8080
# Asks the running service (GET /readyz: the database answers and takes writes).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["/usr/local/bin/consentry", "ready"]
ENTRYPOINT ["/usr/local/bin/consentry"]
CMD ["serve"]
