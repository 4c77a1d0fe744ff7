package dbrouter

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLibraryDependencies keeps the root package light (docs/design.md §1): an
// app that imports dbrouter compiles the standard library, the MySQL driver
// and the YAML parser, never the test harness or Docker clients.
func TestLibraryDependencies(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH")
	}
	out, err := exec.Command(gobin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := []string{"github.com/dbrouter/dbrouter", "github.com/go-sql-driver/mysql", "filippo.io/edwards25519", "go.yaml.in/yaml/v3"}
	for _, pkg := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(pkg, "/")
		if !strings.Contains(first, ".") || strings.HasPrefix(pkg, "vendor/") {
			continue // standard library
		}
		ok := false
		for _, a := range allowed {
			if pkg == a || strings.HasPrefix(pkg, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("the library depends on %s", pkg)
		}
	}
}
