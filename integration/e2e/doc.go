// Package e2e runs warmpod under a real single-node Kubernetes cluster: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and the kubelet, built from source through the Go module proxy
// (build-cluster.sh) and started by the tests on loopback only, with the kubelet talking CRI to a warmpod
// daemon of the run's own. The tests drive it with client-go.
//
// It is a module of its own so that client-go and its dependencies stay out of warmpod's module. Run it
// with "make e2e" (as root; see run.sh).
package e2e
