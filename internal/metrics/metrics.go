// Package metrics is aod's one Prometheus registry: what the runner
// observes as it happens (turn and provisioning durations, layer builds,
// egress refusals, webhook attempts) and what the server reads at scrape time (sessions by
// status, the queue, running sprites, open streams, events appended).
// Names start with aod_. Served on --metrics-listen, off by default.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	// TurnSeconds is how long turns ran, by how they ended.
	TurnSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "aod_turn_duration_seconds", Help: "How long a session's turn ran, by outcome.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
	}, []string{"outcome"})
	// ProvisionSeconds is how long provisioning took, by outcome.
	ProvisionSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "aod_provisioning_duration_seconds", Help: "How long preparing a session's sprite took, by outcome.",
		Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 900},
	}, []string{"outcome"})
	// LayerBuilds counts environment package layer builds, by outcome.
	LayerBuilds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aod_layer_builds_total", Help: "Environment package layer builds, by outcome.",
	}, []string{"outcome"})
	// WebhookAttempts counts attempts to deliver a webhook, by result:
	// succeeded, retrying (failed, to be tried again) or failed (for good).
	WebhookAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aod_webhook_attempts_total", Help: "Attempts to deliver a webhook, by result (succeeded, retrying, failed).",
	}, []string{"result"})
	// EgressDenials counts connections a sprite's egress proxy refused.
	EgressDenials = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "aod_egress_denials_total", Help: "Connections sprites asked for that the egress proxy refused.",
	})
)

// Set is one server's registry: the metrics the runner observes (shared
// by every server of the process) plus the server's own scrape-time
// readings, and the Go runtime's and the process's.
type Set struct{ reg *prometheus.Registry }

// New returns a server's registry.
func New() *Set {
	reg := prometheus.NewRegistry()
	reg.MustRegister(TurnSeconds, ProvisionSeconds, LayerBuilds, EgressDenials, WebhookAttempts,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Set{reg: reg}
}

// Gauge registers a gauge whose value f reads at scrape time.
func (s *Set) Gauge(name, help string, f func() float64) {
	s.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Counter registers a counter whose value f reads at scrape time.
func (s *Set) Counter(name, help string, f func() float64) {
	s.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Labelled registers a gauge family read at scrape time: f returns the
// value for each label value.
func (s *Set) Labelled(name, help, label string, f func() map[string]float64) {
	s.reg.MustRegister(&labelled{desc: prometheus.NewDesc(name, help, []string{label}, nil), f: f})
}

type labelled struct {
	desc *prometheus.Desc
	f    func() map[string]float64
}

func (l *labelled) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

func (l *labelled) Collect(ch chan<- prometheus.Metric) {
	for v, n := range l.f() {
		ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, n, v)
	}
}

// Handler serves the registry in Prometheus's text format.
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
}
