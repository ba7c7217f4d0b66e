package deploy

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/rulefmt"
	"sigs.k8s.io/yaml"
)

const (
	rulesFile          = "prometheus/nsdetach-rules.yaml"
	prometheusRuleFile = "kubernetes/nsdetach-prometheusrule.yaml"
	runbookFile        = "../docs/runbook.md"
	runbookURL         = "https://github.com/nsdetach/nsdetach/blob/main/docs/runbook.md#"
)

// TestAlertRules parses the rules with Prometheus' own parser (which also
// parses every expression and template) and checks that each alert says
// what it is about and links its section of the runbook. That every metric
// they use is one serve exports is checked next to serve's registry
// (cmd/nsdetach TestAlertRulesUseServeMetrics).
func TestAlertRules(t *testing.T) {
	groups, errs := rulefmt.ParseFile(rulesFile, false)
	for _, err := range errs {
		t.Errorf("%s: %v", rulesFile, err)
	}
	if groups == nil || len(groups.Groups) == 0 {
		t.Fatalf("%s: no rule groups", rulesFile)
	}
	runbook, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^## (\S+)$`).FindAllStringSubmatch(string(runbook), -1) {
		sections[strings.ToLower(m[1])] = true
	}
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert.Value
			if name == "" {
				t.Errorf("group %s: a rule that is not an alert: %q", g.Name, r.Record.Value)
				continue
			}
			alerts[name] = true
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity label", name)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s", name, a)
				}
			}
			if want := runbookURL + strings.ToLower(name); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", name, r.Annotations["runbook_url"], want)
			}
			if !sections[strings.ToLower(name)] {
				t.Errorf("%s: %s has no section \"## %s\"", name, runbookFile, name)
			}
		}
	}
	// The kinds of trouble the issue asks to alert on, by the alert that covers each.
	for _, want := range []string{"NsdetachStaleLeaks", "NsdetachPinnedLeaksGrowing", "NsdetachDetachFailures", "NsdetachScanErrors", "NsdetachExporterDown"} {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

// TestAlertRulesRejectBrokenRules: the parser the tests rely on does fail on
// a broken expression or an unknown field, so a passing parse means something.
func TestAlertRulesRejectBrokenRules(t *testing.T) {
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][2]string{
		"broken expression": {`expr: nsdetach_leaked_mounts{state="stale"} > 0`, `expr: nsdetach_leaked_mounts{state="stale" > 0`},
		"unknown field":     {"        for: 15m\n", "        for: 15m\n        fore: 1m\n"},
		"broken template":   {`summary: "{{ $value }} stale`, `summary: "{{ $value stale`},
	}
	for name, c := range cases {
		doc := strings.Replace(string(b), c[0], c[1], 1)
		if doc == string(b) {
			t.Fatalf("%s: the mutation did not apply", name)
		}
		if _, errs := rulefmt.Parse([]byte(doc), false); len(errs) == 0 {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

// TestPrometheusRuleMatchesRulesFile: the PrometheusRule carries the rules
// file's groups unchanged.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	var rules struct {
		Groups []any `json:"groups"`
	}
	var pr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	for path, v := range map[string]any{rulesFile: &rules, prometheusRuleFile: &pr} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" || pr.Metadata.Name == "" {
		t.Errorf("%s: %s %s %q, want a named monitoring.coreos.com/v1 PrometheusRule", prometheusRuleFile, pr.APIVersion, pr.Kind, pr.Metadata.Name)
	}
	if len(rules.Groups) == 0 || !reflect.DeepEqual(pr.Spec.Groups, rules.Groups) {
		t.Errorf("%s spec.groups differ from the groups of %s: copy them over (indented under spec:)", prometheusRuleFile, rulesFile)
	}
}
