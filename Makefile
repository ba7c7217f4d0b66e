# nsdetach: see README.md. Targets that mount things need root.
GO ?= go
DEB_TEST_PACKAGES := util-linux coreutils gcc libseccomp-dev

.PHONY: all build test demo bench fuzz deps vet clean

all: build

build:
	$(GO) build -o bin/nsdetach ./cmd/nsdetach

deps:
	scripts/deps.sh $(DEB_TEST_PACKAGES)

vet:
	$(GO) vet ./...

## test: every test, for real (root: namespaces, overlay and tmpfs mounts).
test: deps vet
	$(GO) test -count=1 ./...

## demo: the incident reproduced and fixed in throwaway namespaces (root).
demo: deps build
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
