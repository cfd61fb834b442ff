# pgpool-rs image: a drop-in for the pgpool2_on_k8s image (pgpool/pgpool).
#
# Same paths as that image, so existing mounts and commands keep working:
#   /config/pgpool.conf, /config/pool_hba.conf, /config/tls/tls.{crt,key}   mounted config
#   /opt/pgpool-II/etc        pool_passwd, .pgpoolkey, pcp.conf written from the environment
#   /opt/pgpool-II/bin        pgpool, pg_md5, pg_enc
#   /var/run/pgpool           Unix sockets and the pid file
# There is no entrypoint script: the binary itself reads /config/pgpool.conf when it is
# mounted (PGPOOL_CONF_VOLUME) and otherwise applies PGPOOL_PARAMS_* and the defaults below,
# which are the ones the original entrypoint exported.
#
#   docker build -t pgpool-rs .

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo 'fn main() {}' > src/bin/pg_md5.rs \
    && echo 'fn main() {}' > src/bin/pg_enc.rs \
    && echo '' > src/lib.rs \
    && echo 'fn main() {}' > benches/micro.rs \
    && cargo build --release --locked --bins \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# touch: the placeholder build left newer timestamps on the real targets' outputs.
RUN touch src/main.rs src/lib.rs src/bin/*.rs \
    && cargo build --release --locked --bins \
    && mkdir -p /out/opt/pgpool-II/bin /out/opt/pgpool-II/etc /out/opt/pgpool-II/tls \
         /out/var/run/pgpool /out/config \
    && cp target/release/pgpool target/release/pg_md5 target/release/pg_enc /out/opt/pgpool-II/bin/

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="pgpool-rs" \
      org.opencontainers.image.description="PostgreSQL proxy configured like Pgpool-II, for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
# The original image's user is postgres, uid/gid 70; keep it so mounted files stay readable.
COPY --from=build --chown=70:70 /out/ /
ENV PATH=/opt/pgpool-II/bin:/usr/local/bin:/usr/bin:/bin \
    PGPOOL_INSTALL_DIR=/opt/pgpool-II \
    PGPOOL_CONF_VOLUME=/config \
    PGPOOL_PARAMS_PORT=9999 \
    PGPOOL_PARAMS_LISTEN_ADDRESSES=* \
    PGPOOL_PARAMS_BACKEND_PORT0=5432 \
    PGPOOL_PARAMS_BACKEND_WEIGHT0=1 \
    PGPOOL_PARAMS_SR_CHECK_PERIOD=0 \
    PGPOOL_PARAMS_HEALTH_CHECK_PERIOD=0 \
    PGPOOL_PARAMS_FAILOVER_ON_BACKEND_ERROR=off \
    PGPOOL_PARAMS_UNIX_SOCKET_DIRECTORIES=/var/run/pgpool \
    PGPOOL_PARAMS_PCP_SOCKET_DIR=/var/run/pgpool
# PGPOOL_ENABLE_POOL_PASSWD (true), PGPOOL_PASSWORD_ENCRYPTION_METHOD (scram-sha-256) and
# PGPOOL_SKIP_PASSWORD_ENCRYPTION (false) default in the binary as in the original entrypoint.
USER 70:70
WORKDIR /opt/pgpool-II
# Clients, PCP, metrics and health (/metrics, /healthz, /readyz).
EXPOSE 9999 9898 9930
# SIGTERM drains (see README "Kubernetes"); no STOPSIGNAL trick needed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/pgpool-II/bin/pgpool"]
CMD ["-n", "-f", "/opt/pgpool-II/etc/pgpool.conf", "-F", "/opt/pgpool-II/etc/pcp.conf", \
     "-a", "/opt/pgpool-II/etc/pool_hba.conf", "-k", "/opt/pgpool-II/etc/.pgpoolkey"]
