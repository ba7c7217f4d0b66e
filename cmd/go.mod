// The nsdetach CLI (cmd/nsdetach) and its internal packages: cobra, Prometheus
// and the library at the repository root.
module github.com/nsdetach/nsdetach/cmd

go 1.23.0

require (
	github.com/moby/sys/mountinfo v0.7.2
	github.com/nsdetach/nsdetach v0.0.0-00010101000000-000000000000
	github.com/prometheus/client_golang v1.22.0
	github.com/sirupsen/logrus v1.9.3
	github.com/spf13/cobra v1.9.1
	golang.org/x/sys v0.33.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2 // indirect
	github.com/prometheus/client_model v0.6.1 // indirect
	github.com/prometheus/common v0.62.0 // indirect
	github.com/prometheus/procfs v0.15.1 // indirect
	github.com/spf13/pflag v1.0.6 // indirect
	google.golang.org/protobuf v1.36.9 // indirect
)

// This checkout's library (and wrapper) instead of a tagged release, as go.work
// does for development. Modules that require this one ignore these lines.
replace github.com/nsdetach/nsdetach => ..
