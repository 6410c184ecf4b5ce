package metrics

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Histogram is a distribution of durations in seconds: Buckets maps each
// upper bound to the count of observations no greater than it.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

// ResetStats are the resets of one trigger.
type ResetStats struct {
	Duration Histogram
	Failures uint64
}

// NodeStats is what the node's pod shims report, summed: their counters
// cover the life of each shim, and of the shims of pods already removed
// while the daemon ran.
type NodeStats struct {
	// Shims counts running shims; their memory is the sum of their
	// resident (RSS) and proportional (PSS) set sizes.
	Shims                      int
	ShimRSSBytes, ShimPSSBytes uint64
	// Resets by trigger: reset_pod, restart_rule, kubelet.
	Resets                   map[string]ResetStats
	WarmCreates, ColdCreates uint64
	PrecreateBacklog         uint64
	Precreate                Histogram
}

var (
	shimsDesc   = prometheus.NewDesc(namespace+"_shims", "Pod shims running.", nil, nil)
	shimMemDesc = prometheus.NewDesc(namespace+"_shim_memory_bytes",
		"Memory of the running pod shims, summed: kind rss (resident set) or pss (proportional set: shared pages divided among the processes that map them).",
		[]string{"kind"}, nil)
	resetsDesc = prometheus.NewDesc(namespace+"_pod_resets_total",
		"Pod resets completed, by trigger: reset_pod (warmpod's ResetPod), restart_rule (a RestartAllContainers rule the shim applied), kubelet (StopContainer, then CreateContainer and StartContainer of the same containers).",
		[]string{"trigger"}, nil)
	resetFailuresDesc = prometheus.NewDesc(namespace+"_pod_reset_failures_total", "Pod resets that failed, by trigger.", []string{"trigger"}, nil)
	resetDurationDesc = prometheus.NewDesc(namespace+"_pod_reset_duration_seconds",
		"Time a pod reset took in the pod's shim, by trigger: from the first container killed (or, for the kubelet's sequence, stopped) to the last one started. The whole ResetPod call, API hops included, is warmpod_pod_reset_api_duration_seconds.",
		[]string{"trigger"}, nil)
	createsDesc = prometheus.NewDesc(namespace+"_container_creates_total",
		"Container generations started, by kind: warm (a pre-created generation was taken) or cold (created on the spot).",
		[]string{"kind"}, nil)
	backlogDesc = prometheus.NewDesc(namespace+"_precreate_backlog",
		"Containers waiting for their next generation to be pre-created.", nil, nil)
	precreateDesc = prometheus.NewDesc(namespace+"_precreate_duration_seconds",
		"Time to pre-create a container generation, once a pre-creation token was held.", nil, nil)

	resetAPIDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "pod_reset_api_duration_seconds",
		Help:    "Time a successful ResetPod call took as the daemon served it, end to end: the shim's reset and both API hops.",
		Buckets: latencyBuckets,
	})
)

func init() { Registry.MustRegister(resetAPIDuration) }

// ResetPodAPI records the duration of a ResetPod call that succeeded.
func ResetPodAPI(d time.Duration) { resetAPIDuration.Observe(d.Seconds()) }

// RegisterNode adds the node's pod metrics, read from read at every scrape.
// It may be called once.
func RegisterNode(read func() NodeStats) {
	Registry.MustRegister(&nodeCollector{read: read})
}

type nodeCollector struct {
	// mu serialises scrapes: each one asks every shim.
	mu   sync.Mutex
	read func() NodeStats
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{shimsDesc, shimMemDesc, resetsDesc, resetFailuresDesc, resetDurationDesc, createsDesc, backlogDesc, precreateDesc} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	s := c.read()
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(shimsDesc, prometheus.GaugeValue, float64(s.Shims))
	ch <- prometheus.MustNewConstMetric(shimMemDesc, prometheus.GaugeValue, float64(s.ShimRSSBytes), "rss")
	ch <- prometheus.MustNewConstMetric(shimMemDesc, prometheus.GaugeValue, float64(s.ShimPSSBytes), "pss")
	triggers := make([]string, 0, len(s.Resets))
	for t := range s.Resets {
		triggers = append(triggers, t)
	}
	sort.Strings(triggers)
	for _, t := range triggers {
		r := s.Resets[t]
		ch <- prometheus.MustNewConstMetric(resetsDesc, prometheus.CounterValue, float64(r.Duration.Count), t)
		ch <- prometheus.MustNewConstMetric(resetFailuresDesc, prometheus.CounterValue, float64(r.Failures), t)
		ch <- prometheus.MustNewConstHistogram(resetDurationDesc, r.Duration.Count, r.Duration.Sum, r.Duration.Buckets, t)
	}
	ch <- prometheus.MustNewConstMetric(createsDesc, prometheus.CounterValue, float64(s.WarmCreates), "warm")
	ch <- prometheus.MustNewConstMetric(createsDesc, prometheus.CounterValue, float64(s.ColdCreates), "cold")
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(s.PrecreateBacklog))
	ch <- prometheus.MustNewConstHistogram(precreateDesc, s.Precreate.Count, s.Precreate.Sum, s.Precreate.Buckets)
}
