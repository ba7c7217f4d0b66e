# Engine builds come from the moby module on the Go module proxy; see scripts/build-dockerd.sh.
VERSION ?= 28.5.2

.PHONY: dockerd-stock dockerd check-patches e2e

dockerd-stock:
	scripts/build-dockerd.sh $(VERSION) stock

dockerd:
	scripts/build-dockerd.sh $(VERSION) patched

# CI: the series applies to a fresh tree and the patched packages compile.
check-patches:
	scripts/build-dockerd.sh $(VERSION) check
