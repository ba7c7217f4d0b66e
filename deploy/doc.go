// Package deploy holds no code: it is where the deployment files live
// (systemd/ drop-ins for docker.service, kubernetes/ with the DaemonSet that
// runs nsdetach serve), and its tests check them, decoding the Kubernetes
// manifests strictly with the k8s.io/api types and checking the privileges
// the DaemonSet is granted.
//
// When not to use it: there is nothing to import. docs/operating.md says
// which drop-in to install on which node; install one of the two, not both.
package deploy
