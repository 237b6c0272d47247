// Command tenantload is the open-loop load generator of the multi-tenant
// benchmark (benchmarks/tenants.py, `make bench-tenants`).
//
// It sends GET requests to one address at a fixed arrival rate for a fixed
// time, each to one of N tenants chosen by a Zipf law (tenant of rank k is
// chosen with probability proportional to k^-s, rank 1 the hottest), the
// tenant named by the Host header (-host, a format with one %d for the rank).
// Arrivals are Poisson (exponential gaps) or uniform (equal gaps). The loop is
// open: a request is sent at its planned time whether or not earlier ones
// have been answered, so a slow server cannot slow the load down and hide its
// latency; latency is measured from the planned time (what a client waiting
// for it would see), so a generator that falls behind counts against the
// server, not for it (-max-inflight bounds the requests in flight; one planned
// past it is recorded as an error "overload" and not sent).
//
// It writes one line per request to -out, tab-separated:
//
//	rank  start_us  latency_us  status  first  error
//
// start_us is the planned time since the run began, status 0 when no answer
// came, first 1 for the tenant's first request of the run, error empty or a
// short reason. A summary goes to standard error.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8000/", "URL every request goes to")
	host := flag.String("host", "t%04d.bench", "Host header: a format taking the tenant's rank (1..N)")
	tenants := flag.Int("tenants", 100, "N: tenants, ranked 1 (hottest) to N")
	s := flag.Float64("zipf", 1.1, "Zipf exponent s: rank k is chosen with probability proportional to k^-s")
	rate := flag.Float64("rate", 100, "offered requests per second")
	duration := flag.Duration("duration", 30*time.Second, "how long requests are sent")
	arrivals := flag.String("arrivals", "poisson", "poisson (exponential gaps) or uniform (equal gaps)")
	seed := flag.Uint64("seed", 1, "random seed (tenant choice and gaps)")
	timeout := flag.Duration("timeout", 30*time.Second, "a request without an answer by then is an error")
	maxInflight := flag.Int("max-inflight", 4000, "requests in flight at most; one more planned is an error, not sent")
	out := flag.String("out", "-", "file of per-request lines (- for standard output)")
	flag.Parse()
	if err := run(*url, *host, *tenants, *s, *rate, *duration, *arrivals, *seed, *timeout, *maxInflight, *out); err != nil {
		fmt.Fprintln(os.Stderr, "tenantload:", err)
		os.Exit(1)
	}
}

type record struct {
	rank    int
	start   time.Duration // planned, since the run began
	latency time.Duration
	status  int
	first   bool
	err     string
}

func run(url, hostFormat string, n int, s, rate float64, duration time.Duration, arrivals string, seed uint64,
	timeout time.Duration, maxInflight int, outPath string) error {
	z, err := NewZipf(n, s)
	if err != nil {
		return err
	}
	gaps, err := NewArrivals(arrivals, rate)
	if err != nil {
		return err
	}
	w := os.Stdout
	if outPath != "-" {
		f, err := os.Create(outPath)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	client := &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
			MaxIdleConns:        maxInflight,
			MaxIdleConnsPerHost: maxInflight,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	records := make(chan record, 4096)
	done := make(chan error, 1)
	go func() { done <- writeRecords(w, records) }()

	seen := make([]bool, n+1)
	var inflight atomic.Int64
	var wg sync.WaitGroup
	ctx := context.Background()
	begin := time.Now()
	next := time.Duration(0)
	for next < duration {
		if d := time.Until(begin.Add(next)); d > 0 {
			time.Sleep(d)
		}
		rank := z.Rank(rng.Float64())
		first := !seen[rank]
		seen[rank] = true
		planned := next
		next += gaps.Next(rng.Float64())
		if inflight.Load() >= int64(maxInflight) {
			records <- record{rank: rank, start: planned, first: first, err: "overload"}
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			r := record{rank: rank, start: planned, first: first}
			req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
			if err != nil {
				r.err = "request"
			} else {
				req.Host = fmt.Sprintf(hostFormat, rank)
				resp, err := client.Do(req)
				if err != nil {
					r.err = shortError(err)
				} else {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.status = resp.StatusCode
					if err != nil {
						r.err = shortError(err)
					}
				}
			}
			r.latency = time.Since(begin.Add(planned))
			records <- r
		}()
	}
	wg.Wait()
	close(records)
	return <-done
}

func writeRecords(w io.Writer, records <-chan record) error {
	b := bufio.NewWriterSize(w, 1<<16)
	var total, failed int
	for r := range records {
		total++
		if r.err != "" || r.status != 200 {
			failed++
		}
		first := 0
		if r.first {
			first = 1
		}
		fmt.Fprintf(b, "%d\t%d\t%d\t%d\t%d\t%s\n", r.rank, r.start.Microseconds(), r.latency.Microseconds(), r.status, first, r.err)
	}
	fmt.Fprintf(os.Stderr, "tenantload: %d requests, %d not 200\n", total, failed)
	return b.Flush()
}

// shortError names a failure in one word, for the per-request lines.
func shortError(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Client.Timeout"), strings.Contains(msg, "deadline exceeded"):
		return "timeout"
	case strings.Contains(msg, "connection refused"):
		return "refused"
	case strings.Contains(msg, "connection reset"):
		return "reset"
	case strings.Contains(msg, "EOF"):
		return "eof"
	case strings.Contains(msg, "too many open files"):
		return "fds"
	}
	return "other"
}
