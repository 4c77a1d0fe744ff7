package prometheus

import (
	"os"
	"strings"
	"testing"
)

// TestModuleLean fails when this module's go.mod requires the test harness
// (ringtest) or the Docker client it brings: every user of the adapter
// would get them in its module graph. Tests on real rings belong in the
// integration module (docs/testing.md, "Module hygiene").
func TestModuleLean(t *testing.T) {
	t.Parallel()
	mod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, heavy := range []string{"dbrouter/ringtest", "testcontainers", "moby", "docker", "containerd"} {
		if strings.Contains(string(mod), heavy) {
			t.Errorf("go.mod names %s: move the test that needs it to the integration module", heavy)
		}
	}
}
