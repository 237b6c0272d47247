// Package pool serves HTTP with the sandbox's instances: a tenant's pool
// (instances kept warm, at most MaxInstances, a bounded wait queue,
// replacement after MaxRequests or a failure, idle reaping), the warm set
// that keeps tenants' pools within one memory budget, and the HTTP adapter
// that turns a request into the host ABI's exchange (PEP 3333 environ, body,
// response). Status (status.go) is the one place that maps a failure to
// the client's status; Handler is the http.Handler of one app. The package
// imports no wazero: instances, snapshots and memory are the sandbox's.
package pool
