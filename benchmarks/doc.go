// Package benchmarks measures wsgi-wasm. tenants.py (`make bench-tenants`)
// writes TENANTS.md: many tenants under Zipf traffic from tenantload (an
// open-loop Go load generator), against uWSGI Emperor and gunicorn behind
// nginx. Two harnesses write RESULTS.md:
//
//   - bench.py (`make bench`): the same hello-world Flask and plain-WSGI apps
//     under gunicorn, uWSGI and `wsgi-wasm serve`, driven by wrk; cold start
//     over many tenants; density (RSS per warm tenant); a CPU profile; SVG
//     plots. install.sh installs or unpacks the Debian packages it compares
//     against. TestHarnessSmoke runs it with tiny durations.
//
//   - gobench.py (`make bench-go`): the Go benchmarks of this package
//     (testing.B): the cost of interruption on a Flask request, the host ABI
//     path (environ round trip, bodies in and out in MB/s, host overhead per
//     request) and instance cold start. Each has a test that checks it
//     computes the right thing. By hand:
//
//     go test ./benchmarks -run XXX -bench . -benchmem -count 10 | benchstat -
//
// TestGuestProfile (`make profile-guest`, only with $GUESTPROF_DIR set)
// writes PROFILE.md and pprof profiles: the guest's time by wasm function
// for a hello-Flask request and the speed workloads (internal/guestprof),
// and a hello-Flask request's guest time against the bare app call.
package benchmarks
