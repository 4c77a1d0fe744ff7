package prometheus

import (
	"os"
	"regexp"
	"strings"
	"testing"

	prom "github.com/prometheus/client_golang/prometheus"
)

// TestDocsNameEveryMetric checks that docs/observability.md lists every
// metric the Collector describes, and that the Grafana dashboard uses only
// metrics it describes.
func TestDocsNameEveryMetric(t *testing.T) {
	t.Parallel()
	ch := make(chan *prom.Desc, 100)
	New().Describe(ch)
	close(ch)
	described := map[string]bool{}
	nameRE := regexp.MustCompile(`fqName: "([a-z_]+)"`)
	for d := range ch {
		m := nameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		described[m[1]] = true
	}
	doc, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range described {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("docs/observability.md does not list %s", name)
		}
	}
	dash, err := os.ReadFile("../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	used := regexp.MustCompile(`dbrouter_[a-z_]+`).FindAllString(string(dash), -1)
	if len(used) == 0 {
		t.Fatal("the dashboard uses no metric")
	}
	for _, name := range used {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !described[base] {
			t.Errorf("the dashboard uses %s, which the Collector does not describe", name)
		}
	}
}
