package dbrouter

import (
	"os/exec"
	"strings"
	"testing"
)

// libraryModules are the only modules outside the standard library that
// the root package, and its tests, may use.
var libraryModules = []string{"github.com/dbrouter/dbrouter", "github.com/go-sql-driver/mysql", "filippo.io/edwards25519", "go.yaml.in/yaml/v3"}

// TestLibraryDependencies keeps the root package light (docs/design.md §1): an
// app that imports dbrouter compiles the standard library, the MySQL driver
// and the YAML parser, never the test harness or Docker clients.
func TestLibraryDependencies(t *testing.T) {
	checkDeps(t, "list", "-deps", ".")
}

// TestTestDependencies keeps the root package's tests as light as the
// package (docs/testing.md, "Module hygiene"): go mod tidy in a module that
// imports dbrouter loads these tests too, so a test here that imported
// ringtest would make every such module download testcontainers-go and
// moby. Tests on real rings belong in ./integration.
func TestTestDependencies(t *testing.T) {
	checkDeps(t, "list", "-deps", "-test", ".")
}

// checkDeps runs go with args and fails for every package it lists outside
// the standard library and libraryModules.
func checkDeps(t *testing.T, args ...string) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go command not on PATH")
	}
	out, err := exec.Command(gobin, args...).Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// With -test: "pkg [pkg.test]" for a package recompiled for its
		// tests, "pkg.test" for the test binary, "pkg_test [...]" for the
		// external test package.
		pkg, _, _ := strings.Cut(line, " ")
		pkg = strings.TrimSuffix(strings.TrimSuffix(pkg, ".test"), "_test")
		first, _, _ := strings.Cut(pkg, "/")
		if !strings.Contains(first, ".") || strings.HasPrefix(pkg, "vendor/") {
			continue // standard library
		}
		ok := false
		for _, a := range libraryModules {
			if pkg == a || strings.HasPrefix(pkg, a+"/") {
				ok = true
			}
		}
		if !ok {
			t.Errorf("go %s lists %s", strings.Join(args, " "), line)
		}
	}
}
