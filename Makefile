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

# The incident scenario for the stock and patched builds, side by side (root only). EMULATOR is
# the old-kernel emulator binary (integration/oldkernel/cmd/oldkernel); without it this kernel's
# detach-on-rmdir hides the incident.
EMULATOR ?=
e2e: dockerd-stock
	integration/e2e/compare.sh --version $(VERSION) $(if $(EMULATOR),--emulator $(EMULATOR))
