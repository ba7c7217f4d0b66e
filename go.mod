module github.com/nsdetach/nsdetach

go 1.23.0

require (
	github.com/containerd/continuity v0.4.5
	github.com/moby/sys/mountinfo v0.7.2
	github.com/pkg/errors v0.9.1
	github.com/sirupsen/logrus v1.9.3
	golang.org/x/sys v0.33.0
)

require (
	github.com/containerd/log v0.1.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	google.golang.org/protobuf v1.35.1 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
