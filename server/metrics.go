package server

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/wsgi-wasm/wsgi-wasm/outbound"
	"github.com/wsgi-wasm/wsgi-wasm/pool"
	"github.com/wsgi-wasm/wsgi-wasm/sandbox"
)

// metrics are the server's Prometheus series. The only label with many
// values is tenant, bounded by the number of tenant folders; codes are
// grouped by class (2xx..5xx), so series stay at a few per tenant even with
// hundreds of tenants.
type metrics struct {
	registry  *prometheus.Registry
	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	inFlight  *prometheus.GaugeVec
	failures  *prometheus.CounterVec

	outOpened, outRefused, outBytes *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgi_wasm_requests_total", Help: "Requests answered, by tenant and status class.",
		}, []string{"tenant", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "wsgi_wasm_request_duration_seconds", Help: "Time from routing to the end of the response, by tenant.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"tenant"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wsgi_wasm_requests_in_flight", Help: "Requests being served, by tenant.",
		}, []string{"tenant"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsgi_wasm_guest_failures_total", Help: "Guest calls that trapped, exited or passed their deadline, by tenant.",
		}, []string{"tenant", "kind"}),
	}
	m.outOpened = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgi_wasm_outbound_connections_total", Help: "Outbound connections tenants opened, by tenant.",
	}, []string{"tenant"})
	m.outRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgi_wasm_outbound_refused_total", Help: "Outbound connections refused before anything left the host, by tenant and reason (rule, address, limit).",
	}, []string{"tenant", "reason"})
	m.outBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "wsgi_wasm_outbound_bytes_total", Help: "Bytes tenants sent (out) and received (in) over outbound connections, TLS included, by tenant.",
	}, []string{"tenant", "direction"})
	m.registry.MustRegister(m.requests, m.durations, m.inFlight, m.failures, m.outOpened, m.outRefused, m.outBytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wsgi_wasm_warm_tenants", Help: "Tenants with a pool in the warm set."},
			func() float64 { return float64(s.warm.Stats().Tenants) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wsgi_wasm_warm_memory_bytes", Help: "RAM held by all warm instances: their private pages, plus each tenant's shared snapshot pages once."},
			func() float64 { return float64(s.warm.Stats().Cost) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wsgi_wasm_evictions_total", Help: "Pools evicted or refused by the warm set."},
			func() float64 { return float64(s.warm.Stats().Evictions) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wsgi_wasm_instances_started_total", Help: "Instances started fresh: interpreter start and the app's import (cold starts)."},
			func() float64 { return float64(s.engine.InstancesStarted()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wsgi_wasm_snapshots_ready", Help: "Loaded tenants whose snapshot is verified and open, ready to restore from (and warmed up, for tenants with a warmup path)."},
			func() float64 { return float64(s.snapshotsReady()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wsgi_wasm_instances_restored_total", Help: "Instances restored from a snapshot of their app."},
			func() float64 { return float64(s.engine.InstancesRestored()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wsgi_wasm_runs_without_write_set", Help: "Restores and first requests of instances restored without their snapshot's write set running now (at most GOMAXPROCS at once)."},
			func() float64 { r, _, _ := s.engine.RestoresWithoutWriteSet(); return float64(r) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wsgi_wasm_runs_without_write_set_waiting", Help: "Restores and first requests of instances without their snapshot's write set waiting for their turn."},
			func() float64 { _, w, _ := s.engine.RestoresWithoutWriteSet(); return float64(w) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wsgi_wasm_instances_restored_without_write_set_total", Help: "Instances restored from a snapshot whose write set was not recorded yet (their first request takes its page faults one at a time)."},
			func() float64 { _, _, n := s.engine.RestoresWithoutWriteSet(); return float64(n) }),
		dataCollector{s},
	)
	if p := s.cfg.CheckIns; p != nil {
		m.registry.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wsgi_wasm_checkins_parked_total", Help: "Guest check-ins that found clients' bytes waiting and gave their CPU to the network (internal/netyield)."},
				func() float64 { return float64(p.Stats().Parked) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "wsgi_wasm_checkins_woken_total", Help: "Parked check-ins woken by the read of those bytes; the rest waited for the fallback timer."},
				func() float64 { return float64(p.Stats().Woken) }),
		)
	}
	return m
}

// outbound is a tenant's share of the outbound series, for its Gate.
func (m *metrics) outbound(tenant string) *outbound.Metrics {
	return &outbound.Metrics{
		Opened:   m.outOpened.WithLabelValues(tenant),
		Refused:  m.outRefused.MustCurryWith(prometheus.Labels{"tenant": tenant}),
		BytesOut: m.outBytes.WithLabelValues(tenant, "out"),
		BytesIn:  m.outBytes.WithLabelValues(tenant, "in"),
	}
}

var (
	dataBytesDesc = prometheus.NewDesc("wsgi_wasm_data_bytes", "What a tenant's data folder holds (its files' sizes summed), for folders mounted since start.", []string{"tenant"}, nil)
	dataLimitDesc = prometheus.NewDesc("wsgi_wasm_data_limit_bytes", "A tenant's data folder quota (policy data_max_mb).", []string{"tenant"}, nil)
	dataFullDesc  = prometheus.NewDesc("wsgi_wasm_data_writes_refused_total", "Writes to a tenant's data folder refused by its quota.", []string{"tenant"}, nil)
)

// dataCollector reports the data folders' quotas, one series each per
// tenant with a writable data folder.
type dataCollector struct{ s *Server }

func (c dataCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dataBytesDesc
	ch <- dataLimitDesc
	ch <- dataFullDesc
}

func (c dataCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.RLock()
	defer c.s.mu.RUnlock()
	for name, l := range c.s.tenants {
		if l.app.DataDir == "" {
			continue
		}
		used, limit, refused, ok := c.s.engine.DataUsage(l.app.DataDir)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(dataBytesDesc, prometheus.GaugeValue, float64(used), name)
		ch <- prometheus.MustNewConstMetric(dataLimitDesc, prometheus.GaugeValue, float64(limit), name)
		ch <- prometheus.MustNewConstMetric(dataFullDesc, prometheus.CounterValue, float64(refused), name)
	}
}

func (m *metrics) observe(tenant string, status int, d time.Duration, o pool.Outcome) {
	m.requests.WithLabelValues(tenant, strconv.Itoa(status/100)+"xx").Inc()
	m.durations.WithLabelValues(tenant).Observe(d.Seconds())
	switch {
	case o.Err == nil:
	case errors.Is(o.Err, sandbox.ErrDeadline):
		m.failures.WithLabelValues(tenant, "timeout").Inc()
	case errors.Is(o.Err, pool.ErrQueueFull), errors.Is(o.Err, pool.ErrPoolClosed):
	default:
		m.failures.WithLabelValues(tenant, "trap").Inc()
	}
}

// AdminHandler serves /metrics, /livez and /readyz for the admin listener.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.RLock()
		n := len(s.tenants)
		s.mu.RUnlock()
		if n == 0 {
			http.Error(w, "no tenant loaded", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}
