// Command selectors reads a JSON array of PromQL expressions on stdin,
// parses each with Prometheus' own parser and prints, as JSON, one entry per
// expression: the parse error, or every vector selector in it (metric name
// and the names of the labels it matches on, groups by or joins on).
//
// It exists for the jwks-operator tests: an expression that does not parse
// fails the test, and every metric and label an alert or a dashboard panel
// uses is checked against a live /metrics scrape.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Metric string   `json:"metric"`
	Labels []string `json:"labels"`
}

type result struct {
	Expr      string     `json:"expr"`
	Error     string     `json:"error,omitempty"`
	Selectors []selector `json:"selectors"`
	// Labels named in `by (...)`, `without (...)`, `on (...)`,
	// `ignoring (...)` and `group_left/right (...)` anywhere in the
	// expression.
	Grouping []string `json:"grouping"`
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintf(os.Stderr, "selectors: stdin is not a JSON array of strings: %v\n", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	out := make([]result, 0, len(exprs))
	for _, e := range exprs {
		r := result{Expr: e, Selectors: []selector{}, Grouping: []string{}}
		expr, err := p.ParseExpr(e)
		if err != nil {
			r.Error = err.Error()
			out = append(out, r)
			continue
		}
		grouping := map[string]bool{}
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			switch n := node.(type) {
			case *parser.VectorSelector:
				s := selector{Labels: []string{}}
				for _, m := range n.LabelMatchers {
					if m.Name == labels.MetricName {
						if m.Type == labels.MatchEqual {
							s.Metric = m.Value
						}
						continue
					}
					s.Labels = append(s.Labels, m.Name)
				}
				if n.Name != "" {
					s.Metric = n.Name
				}
				sort.Strings(s.Labels)
				r.Selectors = append(r.Selectors, s)
			case *parser.AggregateExpr:
				for _, l := range n.Grouping {
					grouping[l] = true
				}
			case *parser.BinaryExpr:
				if n.VectorMatching != nil {
					for _, l := range n.VectorMatching.MatchingLabels {
						grouping[l] = true
					}
					for _, l := range n.VectorMatching.Include {
						grouping[l] = true
					}
				}
			}
			return nil
		})
		for l := range grouping {
			r.Grouping = append(r.Grouping, l)
		}
		sort.Strings(r.Grouping)
		out = append(out, r)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(os.Stderr, "selectors: %v\n", err)
		os.Exit(1)
	}
}
