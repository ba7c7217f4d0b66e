package main

import (
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

const alertRules = "../../deploy/prometheus/nsdetach-rules.yaml"

// TestAlertRulesUseServeMetrics: every series the alerting rules select is
// one that serve's own registry exports, with labels it has (Prometheus'
// per-target "up" excepted), so that a renamed metric cannot leave an alert
// that never fires.
func TestAlertRulesUseServeMetrics(t *testing.T) {
	families, err := newExporter(t.TempDir(), true).reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string][]string{} // series name -> label names
	for _, f := range families {
		var names []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			names = append(names, l.GetName())
		}
		exported[f.GetName()] = names
		if f.GetType() == dto.MetricType_HISTOGRAM {
			exported[f.GetName()+"_bucket"] = append(slices.Clone(names), "le")
			exported[f.GetName()+"_sum"] = names
			exported[f.GetName()+"_count"] = names
		}
	}
	groups, errs := rulefmt.ParseFile(alertRules, false)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", alertRules, errs)
	}
	selected := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			expr, err := parser.ParseExpr(r.Expr.Value)
			if err != nil {
				t.Fatalf("%s: %v", r.Alert.Value, err)
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				selected++
				if vs.Name == "up" {
					return nil
				}
				have, ok := exported[vs.Name]
				if !ok {
					t.Errorf("%s: %s is not a metric serve exports (%s)", r.Alert.Value, vs.Name, strings.Join(keys(exported), ", "))
					return nil
				}
				for _, m := range vs.LabelMatchers {
					if m.Name != labels.MetricName && !slices.Contains(have, m.Name) {
						t.Errorf("%s: %s has no label %s (it has %v)", r.Alert.Value, vs.Name, m.Name, have)
					}
				}
				return nil
			})
		}
	}
	if selected == 0 {
		t.Fatal("no series selected by any rule")
	}
}

func keys(m map[string][]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
