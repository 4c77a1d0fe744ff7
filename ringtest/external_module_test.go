package ringtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// externalMain is the program of the outside module: it starts a one-node
// Docker ring and pings it, then asks for an image of the local namespace
// that the test makes unbuildable (a dead apt mirror), which must run the
// embedded build script and fail in its debootstrap step.
const externalMain = `package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/dbrouter/dbrouter/ringtest"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 1, Backend: ringtest.BackendDocker})
	if err != nil {
		fail("Start: %v", err)
	}
	pingErr := h.Ring(0).AdminDB(0).PingContext(ctx)
	if err := h.Close(); err != nil {
		fail("Close: %v", err)
	}
	if pingErr != nil {
		fail("ping: %v", pingErr)
	}
	fmt.Println("ring of 1 node started and pinged")

	h, err = ringtest.Start(ctx, ringtest.Options{Nodes: 1, Backend: ringtest.BackendDocker,
		Image: "dbrouter-ringtest/unbuildable-external:test"})
	if err == nil {
		h.Close()
		fail("Start succeeded although the image cannot be built")
	}
	if !strings.Contains(err.Error(), "step failed: debootstrap") {
		fail("image build did not reach the embedded script's debootstrap step: %v", err)
	}
	fmt.Println("embedded build script ran")
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
`

// TestImportedFromAnotherModule builds a module outside the repository that
// requires this one (the module github.com/dbrouter/dbrouter/ringtest)
// through a version-less replace, with -trimpath, and runs it: ringtest
// must start a Docker ring and find its
// image build script (embedded, not looked up next to the source) when it
// is not the main module. Docker backend only (make test-docker); skipped
// with -short.
func TestImportedFromAnotherModule(t *testing.T) {
	if !docker() {
		t.Skip("Docker backend only (DBROUTER_RING_BACKEND=docker; make test-docker runs it)")
	}
	if testing.Short() {
		t.Skip("builds and runs an outside module; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the outside module: %v", err)
	}
	mod, err := filepath.Abs(".") // the ringtest module's root
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(mod, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	goMod := "module example.com/ringtestuser\n\ngo 1.26.0\n\n" +
		"require github.com/dbrouter/dbrouter/ringtest v0.0.0\n\n" +
		"replace github.com/dbrouter/dbrouter/ringtest => " + mod + "\n"
	for name, data := range map[string][]byte{
		"go.mod":  []byte(goMod),
		"go.sum":  sum, // ringtest's sums cover its whole graph: no download needed
		"main.go": []byte(externalMain),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name  string
		flags []string
	}{
		// -trimpath alone: the case that broke (runtime.Caller paths), and
		// one build of the Docker client instead of two on a cold cache.
		{"trimpath", []string{"-trimpath"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, "ringtestuser-"+tc.name)
			build := exec.Command(goBin, append(append([]string{"build"}, tc.flags...), "-o", bin, ".")...)
			build.Dir = dir
			build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
			t0 := time.Now()
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build %s in %s: %v\n%s", strings.Join(tc.flags, " "), dir, err, out)
			}
			t.Logf("built in %v", time.Since(t0).Round(time.Millisecond))

			run := exec.Command(bin)
			run.Dir = dir
			// A mirror that does not answer makes the image build fail
			// fast, in the script's debootstrap step.
			run.Env = append(os.Environ(), "DBROUTER_APT_MIRROR=http://127.0.0.1:9/debian", "DBROUTER_APT_SUITE=bookworm")
			t0 = time.Now()
			out, err := run.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", bin, err, out)
			}
			for _, want := range []string{"ring of 1 node started and pinged", "embedded build script ran"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			t.Logf("ran in %v:\n%s", time.Since(t0).Round(time.Millisecond), out)
		})
	}
}
