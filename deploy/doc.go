// Package deploy holds no code: it is where the deployment files live
// (systemd/ and kubernetes/), and its tests check them, decoding the
// Kubernetes manifests strictly with the k8s.io/api types.
package deploy
