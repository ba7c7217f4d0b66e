# nsdetach: see README.md. Targets that mount things need root.
GO ?= go
DEB_TEST_PACKAGES := util-linux coreutils gcc libseccomp-dev pkg-config

.PHONY: all build test demo bench fuzz deps vet clean dockerd-stock dockerd check-patches check-patches-all oldkernel e2e e2e-rejoin rm-latency runc moby-integration

all: build

build:
	$(GO) build -o bin/nsdetach ./cmd/nsdetach

## oldkernel: bin/oldkernel, the old-kernel emulator (DESIGN.md §6; cgo, libseccomp).
oldkernel: deps
	CGO_ENABLED=1 $(GO) build -o bin/oldkernel ./integration/oldkernel/cmd/oldkernel

deps:
	scripts/deps.sh $(DEB_TEST_PACKAGES)

vet:
	$(GO) vet ./...

## test: every test, for real (root: namespaces, overlay and tmpfs mounts).
test: deps vet
	$(GO) test -count=1 ./...

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
e2e-rejoin: dockerd-stock build oldkernel
	integration/e2e/run.sh --dockerd bin/dockerd-stock-$(VERSION) --rejoin bin/nsdetach --expect clean --logs .build/e2e/rejoin
	integration/e2e/run.sh --dockerd bin/dockerd-stock-$(VERSION) --rejoin bin/nsdetach --emulator bin/oldkernel --expect clean --logs .build/e2e/rejoin-oldkernel

## moby-integration: moby's own integration tests of removal, restart, ipc modes and live-restore
## against the stock and the patched dockerd (root; STORAGE= as for e2e).
moby-integration:
	@[ "$$(id -u)" -eq 0 ] || { echo "make moby-integration: refusing to run as $$(id -un): run it as root" >&2; exit 1; }
	$(MAKE) dockerd-stock dockerd
	status=0; for s in $(STORAGE); do scripts/moby-integration.sh $(VERSION) --storage $$s $(E2E_RUNC) || status=1; done; exit $$status

## rm-latency: docker rm latency of 50 containers after a restart, stock vs patched (root).
rm-latency:
	@[ "$$(id -u)" -eq 0 ] || { echo "make rm-latency: refusing to run as $$(id -un): run it as root" >&2; exit 1; }
	$(MAKE) dockerd-stock dockerd $(if $(EMULATOR),oldkernel)
	status=0; for s in $(STORAGE); do integration/e2e/rm-latency.sh --version $(VERSION) --storage $$s $(E2E_RUNC) $(if $(EMULATOR),--emulator $(EMULATOR)) || status=1; done; exit $$status
