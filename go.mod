module github.com/nsdetach/nsdetach

// This module is what a moby fork vendors: the packages the patch series
// imports (mountns, overlay2, daemon, layer) and their test helpers. Its
// requirements and go line stay at or below the oldest supported moby's pins
// (v26.1.4's vendor.mod), so that adding it to moby moves none of them
// (scripts/build-dockerd.sh and scripts/pins.sh check it). The CLI, the moby
// wrappers, the integration and the deploy tests are modules of their own,
// joined by go.work.
go 1.21

require (
	github.com/moby/sys/mount v0.3.3
	github.com/moby/sys/mountinfo v0.7.1
	github.com/pkg/errors v0.9.1
	github.com/sirupsen/logrus v1.9.3
	golang.org/x/sync v0.5.0
	golang.org/x/sys v0.18.0
)
