# nsdetach: see README.md. Targets that mount things need root.
GO ?= go
DEB_TEST_PACKAGES := util-linux coreutils gcc libseccomp-dev pkg-config systemd

.PHONY: all build static image e2e-daemonset test demo bench fuzz deps vet lint cross moby-pins clean dockerd-stock dockerd check-patches check-patches-all oldkernel e2e e2e-rejoin e2e-rejoin-engine e2e-rejoin-docker.io rm-latency drain runc moby-integration

all: build

build:
	$(GO) build -o bin/nsdetach ./cmd/nsdetach

# The release (VERSION): the image's tag, and what `nsdetach version` prints.
NSDETACH_VERSION := $(shell cat VERSION)

## static: bin/nsdetach-static, the CLI the image ships: no cgo, so no libc at run time.
static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(NSDETACH_VERSION)" -o bin/nsdetach-static ./cmd/nsdetach

## image: the DaemonSet's image (Dockerfile), tagged as deploy/kubernetes/nsdetach-daemonset.yaml
## names it, built with the module's Go (golang:GO from a registry).
image:
	docker build --build-arg GO_VERSION="$$($(GO) list -f '{{.Module.GoVersion}}' ./cmd/nsdetach)" \
		--build-arg NSDETACH_VERSION=$(NSDETACH_VERSION) -t "$$($(GO) run ./deploy/dockerrun image)" .

## oldkernel: bin/oldkernel, the old-kernel emulator (docs/oldkernel.md; cgo, libseccomp).
oldkernel: deps
	CGO_ENABLED=1 $(GO) build -o bin/oldkernel ./integration/oldkernel/cmd/oldkernel

deps:
	scripts/deps.sh $(DEB_TEST_PACKAGES)

# Every module of go.work: the library at the root (what moby vendors) and the modules that hold the
# CLI, the moby wrappers, the integration and the deploy tests. Each is vetted and tested with
# GOWORK=off, on its own go.mod, so the library is held to the moby pins it declares.
MODULES = $(shell $(GO) list -m -f '{{.Dir}}')
each-module = set -e; for m in $(MODULES); do echo "== $$m: $(1)"; (cd "$$m" && GOWORK=off $(GO) $(1)); done

## lint: gofmt, go vet and staticcheck in every module, shellcheck on every script (CI).
lint: deps
	scripts/lint.sh

vet:
	$(call each-module,vet ./...)

## test: every test of every module, for real (root: namespaces, overlay and tmpfs mounts), then the
## library's and the CLI's tests again on Linux 3.10's system calls (test-surface-310).
test: deps vet
	$(call each-module,test -count=1 ./...)
	$(MAKE) test-surface-310

## test-surface-310: the tests of mountns, overlay2, daemon, layer, snapshotter and the CLI under
## `bin/oldkernel -surface-3.10`: every system call Linux 3.10 lacks fails with ENOSYS, so the
## old-kernel fallbacks run (scripts/test-surface-310.sh).
test-surface-310: oldkernel
	scripts/test-surface-310.sh

# The platforms moby builds for: the library packages it vendors must compile on each (elsewhere
# than Linux every call returns mountns.ErrNotSupported), on the library module's own pins.
CROSS_PLATFORMS := linux/amd64 linux/arm64 linux/ppc64le linux/s390x linux/riscv64 windows/amd64 windows/arm64 freebsd/amd64 darwin/amd64 darwin/arm64
## cross: build the packages the patch series imports for every platform moby builds for.
cross:
	set -e; for p in $(CROSS_PLATFORMS); do echo "== $$p"; GOWORK=off GOOS=$${p%/*} GOARCH=$${p#*/} CGO_ENABLED=0 $(GO) build ./mountns ./overlay2 ./daemon ./layer ./snapshotter; done

## moby-pins: add this module to pristine moby v26.1.4, v28.5.2 and moby/moby/v2 v2.0.0-beta.24 as a
## fork would (require + replace, go mod tidy, go mod vendor) and show that none of moby's pins moves.
moby-pins:
	scripts/moby-pins.sh

## demo: the incident reproduced and fixed in throwaway namespaces, then replayed on an emulated
## old kernel against moby's overlay2 code and nsdetach's, side by side (root).
demo: deps build
	CGO_ENABLED=1 $(GO) build -o bin/replay ./integration/replay/cmd/replay
	scripts/demo.sh

clean:
	rm -rf bin .build

FUZZTIME ?= 30s
## fuzz: bounded fuzzing of the mountinfo-to-target code; new finds land in mountns/testdata/fuzz.
fuzz:
	$(GO) test -run '^$$' -fuzz=FuzzMatch -fuzztime=$(FUZZTIME) ./mountns
	cp -n $$($(GO) env GOCACHE)/fuzz/github.com/nsdetach/nsdetach/mountns/FuzzMatch/* mountns/testdata/fuzz/FuzzMatch/ 2>/dev/null || true

## bench: scan and detach benchmarks on a 200-namespace fixture, with the naive baselines (root).
bench: deps
	scripts/bench.sh

# Engine builds come from the moby module on the Go module proxy; see scripts/build-dockerd.sh.
VERSION ?= 28.5.2

dockerd-stock:
	scripts/build-dockerd.sh $(VERSION) stock

dockerd:
	scripts/build-dockerd.sh $(VERSION) patched

# CI: the series applies to a fresh tree and the patched packages compile.
check-patches:
	scripts/build-dockerd.sh $(VERSION) check

# Every engine version with a series under patches/ (patches/README.md has the table).
VERSIONS := $(sort $(patsubst patches/v%/series,%,$(wildcard patches/v*/series)))
check-patches-all:
	set -e; for v in $(VERSIONS); do scripts/build-dockerd.sh $$v check; done

# The incident scenario for the stock and patched builds, side by side, on this kernel and under
# the old-kernel emulator (root only; EMULATOR= skips the emulated half). Without the emulator this
# kernel's detach-on-rmdir hides the incident.
EMULATOR ?= bin/oldkernel
# Engine 29 and later (github.com/moby/moby/v2): a runc that knows the time namespace, built from the
# module proxy (scripts/build-runc.sh), and both storage modes, the graphdriver (overlay2) and the
# containerd image store (snapshotter), the default of a fresh Engine 29 install.
RUNC_VERSION ?= 1.5.3
ENGINE29 := $(filter 29.% 3%,$(VERSION))
STORAGE ?= $(if $(ENGINE29),overlay2 snapshotter,overlay2)
E2E_RUNC = $(if $(ENGINE29),--runc $$(scripts/build-runc.sh $(RUNC_VERSION) | tail -n 1))

## runc: .build/runc-RUNC_VERSION/bin/runc from the module proxy (cgo, -tags seccomp).
runc:
	scripts/build-runc.sh $(RUNC_VERSION)

e2e:
	@[ "$$(id -u)" -eq 0 ] || { echo "make e2e: refusing to run as $$(id -un): the scenario starts dockerd and creates mount namespaces, overlay mounts and containers; run it as root (sudo make e2e)" >&2; exit 1; }
	$(MAKE) dockerd-stock dockerd $(if $(EMULATOR),oldkernel)
	status=0; for s in $(STORAGE); do integration/e2e/compare.sh --version $(VERSION) --storage $$s $(E2E_RUNC) $(if $(EMULATOR),--emulator $(EMULATOR)) || status=1; done; exit $$status

# Stock dockerd restarted through `nsdetach rejoin` (deploy/systemd/docker.service.d/
# 20-nsdetach-rejoin.conf), on this kernel and under the old-kernel emulator: dockerd #2 must run in
# the old shims' namespace, restore must mount nothing twice, and every removal must succeed
# although stock dockerd has no nsdetach fallback (root only).
# Then the same with Debian's own docker.io (20.10, a packaged engine no one here built), unpacked
# by scripts/docker-io.sh and never installed.
e2e-rejoin: e2e-rejoin-engine
	$(MAKE) e2e-rejoin-docker.io

# The stock dockerd of VERSION only, in each of its storage modes (STORAGE).
e2e-rejoin-engine: dockerd-stock build oldkernel
	set -e; for s in $(STORAGE); do \
	integration/e2e/run.sh --dockerd bin/dockerd-stock-$(VERSION) --storage $$s $(E2E_RUNC) --rejoin bin/nsdetach --expect clean --logs .build/e2e/rejoin-$(VERSION)-$$s; \
	integration/e2e/run.sh --dockerd bin/dockerd-stock-$(VERSION) --storage $$s $(E2E_RUNC) --rejoin bin/nsdetach --emulator bin/oldkernel --expect clean --logs .build/e2e/rejoin-$(VERSION)-$$s-oldkernel; \
	done

e2e-rejoin-docker.io: build oldkernel
	d=$$(scripts/docker-io.sh) && \
	integration/e2e/run.sh --dockerd $$d/usr/sbin/dockerd --docker $$d/usr/bin/docker --rejoin bin/nsdetach --expect clean --logs .build/e2e/rejoin-docker.io && \
	integration/e2e/run.sh --dockerd $$d/usr/sbin/dockerd --docker $$d/usr/bin/docker --rejoin bin/nsdetach --emulator bin/oldkernel --expect clean --logs .build/e2e/rejoin-docker.io-oldkernel

## moby-integration: moby's own integration tests of removal, restart, ipc modes and live-restore
## against the stock and the patched dockerd (root; STORAGE= as for e2e).
moby-integration:
	@[ "$$(id -u)" -eq 0 ] || { echo "make moby-integration: refusing to run as $$(id -un): run it as root" >&2; exit 1; }
	$(MAKE) dockerd-stock dockerd
	status=0; for s in $(STORAGE); do scripts/moby-integration.sh $(VERSION) --storage $$s $(E2E_RUNC) || status=1; done; exit $$status

## drain: a node drain after a restart under the old-kernel emulator: 100 stops and `docker rm` with
## the patched dockerd; total time and the library's scans per removal (root).
drain: oldkernel dockerd
	integration/e2e/drain.sh --version $(VERSION)

## rm-latency: docker rm latency of 50 containers after a restart, stock vs patched (root).
rm-latency:
	@[ "$$(id -u)" -eq 0 ] || { echo "make rm-latency: refusing to run as $$(id -un): run it as root" >&2; exit 1; }
	$(MAKE) dockerd-stock dockerd $(if $(EMULATOR),oldkernel)
	status=0; for s in $(STORAGE); do integration/e2e/rm-latency.sh --version $(VERSION) --storage $$s $(E2E_RUNC) $(if $(EMULATOR),--emulator $(EMULATOR)) || status=1; done; exit $$status

## e2e-daemonset: the DaemonSet's image (Dockerfile, final stage; the binary from `make static`)
## built by the incident's dockerd (stock, under the old-kernel emulator) and run as
## deploy/kubernetes/nsdetach-daemonset.yaml says, against the leaks the removals left (root).
e2e-daemonset: dockerd-stock oldkernel static
	integration/e2e/run.sh --dockerd bin/dockerd-stock-$(VERSION) --emulator bin/oldkernel --daemonset bin/nsdetach-static --expect incident --logs .build/e2e/daemonset

# The incident and its remedies under real systemd, in a Debian guest (integration/vm/): the image
# (mmdebstrap from this host's Debian mirror: systemd, docker.io, containerd, runc, busybox-static,
# Debian's kernel) is built once and cached under .build/vm/image; qemu boots it with KVM when
# /dev/kvm exists, else with TCG. vm-boot only boots it to a shell with docker.service up (CI).
VM_DIR ?= .build/vm
VM_CASES ?= stock shared rejoin patched detach
.PHONY: vm-image vm-boot vm-e2e
vm-image:
	@[ "$$(id -u)" -eq 0 ] || { echo "make $@: run it as root (mmdebstrap, qemu)" >&2; exit 1; }
	integration/vm/build-image.sh $(VM_DIR)/image

vm-boot: vm-image
	integration/vm/vm-e2e.sh --image $(VM_DIR)/image --smoke

# The patched engine of the "patched" row, with the guest's Debian containerd 1.6 and runc 1.1:
# 26.1.4, the series nearest that containerd (29.x starts on a fresh data root in the containerd
# image store, not overlay2, the store this scenario and Debian's 20.10 use).
VM_DOCKERD_VERSION ?= 26.1.4
VM_JOBS ?= 1
vm-e2e: vm-image build oldkernel
	$(MAKE) dockerd VERSION=$(VM_DOCKERD_VERSION)
	mkdir -p $(VM_DIR)/bin
	rm -f $(VM_DIR)/bin/nsdetach $(VM_DIR)/bin/oldkernel $(VM_DIR)/bin/dockerd-patched
	cp bin/nsdetach bin/oldkernel $(VM_DIR)/bin/
	cp bin/dockerd-$(VM_DOCKERD_VERSION) $(VM_DIR)/bin/dockerd-patched
	integration/vm/vm-e2e.sh --image $(VM_DIR)/image --bin $(VM_DIR)/bin --cases "$(VM_CASES)" --jobs $(VM_JOBS)
