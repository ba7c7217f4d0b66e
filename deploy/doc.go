// Package deploy is where the deployment files live (systemd/, kubernetes/,
// prometheus/) and what reads them: the strict decoding of the DaemonSet
// with the k8s.io/api types, and its translation into the `docker run` that
// runs its pod the same way (DockerRunOf, printed by deploy/dockerrun for
// the e2e harness and `make image`). Its tests check the files.
//
// When not to use it: there is nothing here for a moby fork to import.
// docs/operating.md says which drop-in to install on which node; install
// one of the two, not both.
package deploy
