package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// ginkgoReport is the part of a ginkgo v2 JSON report (--ginkgo.json-report) the tally needs.
type ginkgoReport struct {
	SpecReports []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
		Failure                 struct {
			Message string
		}
	}
}

// spec is one spec's outcome.
type spec struct {
	name, state, message string
}

// tally sorts the specs of a run by outcome.
type tally struct {
	passed []spec
	failed []spec
	// skipped were skipped by the run's skip list; selfSkipped skipped themselves (a feature the runtime
	// does not declare, a host without AppArmor ...); unselected were not selected: critest's other mode
	// (benchmarks in a validation run, validation specs in a benchmark run) or outside a focus.
	skipped, selfSkipped, unselected []spec
}

// readTally reads a ginkgo JSON report. skips are the run's skip patterns, as given to --ginkgo.skip.
func readTally(path string, skips []string) (tally, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return tally{}, fmt.Errorf("read critest report: %w", err)
	}
	var reports []ginkgoReport
	if err := json.Unmarshal(data, &reports); err != nil {
		return tally{}, fmt.Errorf("parse critest report %s: %w", path, err)
	}
	var skipRes []*regexp.Regexp
	for _, s := range skips {
		re, err := regexp.Compile(s)
		if err != nil {
			return tally{}, fmt.Errorf("skip pattern %q: %w", s, err)
		}
		skipRes = append(skipRes, re)
	}
	var t tally
	for _, r := range reports {
		for _, sr := range r.SpecReports {
			if sr.LeafNodeType != "It" {
				continue
			}
			name := strings.Join(append(append([]string(nil), sr.ContainerHierarchyTexts...), sr.LeafNodeText), " ")
			s := spec{name: name, state: sr.State, message: strings.TrimSpace(sr.Failure.Message)}
			switch {
			case sr.State == "passed":
				t.passed = append(t.passed, s)
			case sr.State != "skipped" && sr.State != "pending":
				t.failed = append(t.failed, s)
			case s.message != "":
				t.selfSkipped = append(t.selfSkipped, s)
			case matchesAny(skipRes, name):
				t.skipped = append(t.skipped, s)
			default:
				t.unselected = append(t.unselected, s)
			}
		}
	}
	for _, l := range [][]spec{t.passed, t.failed, t.skipped, t.selfSkipped, t.unselected} {
		sort.Slice(l, func(i, j int) bool { return l[i].name < l[j].name })
	}
	return t, nil
}

func matchesAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// print writes the tally: counts first, then every spec that did not pass, with the reason.
func (t tally) print(w io.Writer, reasons map[string]string) {
	fmt.Fprintf(w, "\n==== critest tally: %d passed, %d failed, %d skipped (%d by this run's skip list, %d by the spec itself); %d not selected\n",
		len(t.passed), len(t.failed), len(t.skipped)+len(t.selfSkipped), len(t.skipped), len(t.selfSkipped), len(t.unselected))
	for _, s := range t.failed {
		fmt.Fprintf(w, "FAILED   %s\n         %s\n", s.name, firstLine(s.message))
	}
	for _, s := range t.skipped {
		fmt.Fprintf(w, "SKIPPED  %s\n         (skip list) %s\n", s.name, reasonFor(reasons, s.name))
	}
	for _, s := range t.selfSkipped {
		fmt.Fprintf(w, "SKIPPED  %s\n         (by the spec) %s\n", s.name, firstLine(s.message))
	}
}

// reasonFor finds the reason given for the skip pattern that matches name.
func reasonFor(reasons map[string]string, name string) string {
	for pat, why := range reasons {
		if re, err := regexp.Compile(pat); err == nil && re.MatchString(name) {
			return why
		}
	}
	return "no reason given"
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
