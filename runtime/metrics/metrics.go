// Package metrics holds warmpod's Prometheus metrics and the HTTP handler
// that serves them. It is a leaf: the packages that do the work record into
// it, and the daemon serves it on metrics_address.
//
// Every metric is named warmpod_*. Labels have few values (CRI methods,
// gRPC codes, reset triggers); nothing is labelled by pod or container.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

const namespace = "warmpod"

// Registry holds every warmpod metric, and the Go runtime's and process's
// own.
var Registry = prometheus.NewRegistry()

// latencyBuckets suit calls from a millisecond (a warm reset) to a minute
// (a large pull): 0.5 ms to about 65 s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 18)

var (
	criRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "cri", Name: "requests_total",
		Help: "CRI and warmpod API requests served, by method and gRPC status code.",
	}, []string{"method", "code"})
	criDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "cri", Name: "request_duration_seconds",
		Help:    "Time to serve a CRI or warmpod API request (for a stream, its whole life), by method.",
		Buckets: latencyBuckets,
	}, []string{"method"})

	imagePulls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "image", Name: "pulls_total",
		Help: "Image pulls, by result: success, not_found, failure.",
	}, []string{"result"})
	imagePullDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "image", Name: "pull_duration_seconds",
		Help:    "Time an image pull took, successful or not.",
		Buckets: latencyBuckets,
	})
)

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: namespace}),
		criRequests, criDuration, imagePulls, imagePullDuration,
	)
}

// Handler serves the metrics in Prometheus' text format.
func Handler() http.Handler {
	return promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
}

// CRIRequest counts one served request and its duration.
func CRIRequest(method, code string, d time.Duration) {
	criRequests.WithLabelValues(method, code).Inc()
	criDuration.WithLabelValues(method).Observe(d.Seconds())
}

// CRIRequestCount is how many requests of method ended with code.
func CRIRequestCount(method, code string) float64 {
	return counterValue(criRequests.WithLabelValues(method, code))
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// Pull results.
const (
	PullSuccess  = "success"
	PullNotFound = "not_found"
	PullFailure  = "failure"
)

// ImagePull counts one pull with its result and duration.
func ImagePull(result string, d time.Duration) {
	imagePulls.WithLabelValues(result).Inc()
	imagePullDuration.Observe(d.Seconds())
}
