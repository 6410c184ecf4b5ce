package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// lifecycleResults is the form of critest's *_benchmark_data.json files.
type lifecycleResults struct {
	OperationsNames []string `json:"operationsNames"`
	NumParallel     int      `json:"numParallel"`
	Datapoints      []struct {
		OperationsDurationsNs []int64 `json:"operationsDurationsNs"`
	} `json:"datapoints"`
}

// printBenchmarks summarises each benchmark data file in dir: per operation, the median, 90th percentile
// and slowest of its samples.
func printBenchmarks(w io.Writer, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*_benchmark_data.json"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	if len(files) == 0 {
		fmt.Fprintln(w, "==== no benchmark data written")
		return nil
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("read benchmark data: %w", err)
		}
		var r lifecycleResults
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("parse %s: %w", f, err)
		}
		name := strings.TrimSuffix(filepath.Base(f), "_benchmark_data.json")
		fmt.Fprintf(w, "\n==== benchmark %s: %d samples, %d in parallel\n", name, len(r.Datapoints), max(r.NumParallel, 1))
		fmt.Fprintf(w, "%-18s %10s %10s %10s\n", "operation", "median", "p90", "max")
		for i, op := range r.OperationsNames {
			var ds []time.Duration
			for _, d := range r.Datapoints {
				if i < len(d.OperationsDurationsNs) {
					ds = append(ds, time.Duration(d.OperationsDurationsNs[i]))
				}
			}
			if len(ds) == 0 {
				continue
			}
			sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
			fmt.Fprintf(w, "%-18s %10s %10s %10s\n", op, ms(ds[len(ds)/2]), ms(ds[len(ds)*9/10]), ms(ds[len(ds)-1]))
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
