# The nsdetach image that deploy/kubernetes/nsdetach-daemonset.yaml runs: the
# static CLI on an empty base (no shell, no libc, nothing else to patch).
# Build it with `make image`, which passes the module's Go version and the
# release from VERSION and tags it as the DaemonSet names it. Both the
# classic builder and BuildKit build it.
ARG GO_VERSION=1.23.0

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY . .
ARG NSDETACH_VERSION=dev
# The same target as on a workstation: one place for the build flags.
RUN make static NSDETACH_VERSION="${NSDETACH_VERSION}"

FROM scratch
ARG NSDETACH_VERSION=dev
LABEL org.opencontainers.image.title="nsdetach" \
      org.opencontainers.image.description="Find and detach mounts that leaked into other mount namespaces" \
      org.opencontainers.image.source="https://github.com/nsdetach/nsdetach" \
      org.opencontainers.image.version="${NSDETACH_VERSION}"
COPY --from=build /src/bin/nsdetach-static /nsdetach
# Root, for the capabilities the DaemonSet adds (they act for uid 0 only).
USER 0:0
ENTRYPOINT ["/nsdetach"]
CMD ["serve", "--listen=:9733"]
