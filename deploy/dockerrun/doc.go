// Command dockerrun prints how `docker run` runs the pod of the nsdetach
// DaemonSet, translated field by field from the manifest (deploy.DockerRunOf),
// so that the e2e harness (integration/e2e/daemonset.sh) and `make image` use
// the manifest as their one source of truth. It fails on a field of the pod
// spec that it cannot translate.
//
//	dockerrun [-f MANIFEST] [-data-root DIR] run|image|port|healthz
//
// run prints docker run's arguments after "run", one per line (flags, image,
// the container's arguments); image the image the manifest names; port and
// healthz the probes' container port and path.
//
// When not to use it: on a Kubernetes node, where the DaemonSet itself runs
// the pod; it is for harnesses that have only docker. It translates the
// fields the manifest uses, not pod specs in general.
package main
