package ringtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// dockerOnly skips a test unless the tests run on the Docker backend
// (DBROUTER_RING_BACKEND=docker, as make test-docker sets it).
func dockerOnly(t *testing.T) {
	t.Helper()
	if DefaultBackend() != BackendDocker {
		t.Skipf("Docker backend only (running on the %s backend; make test-docker runs it)", DefaultBackend())
	}
}

// nativeOnlyInternal skips a test of the native server on the Docker
// backend.
func nativeOnlyInternal(t *testing.T) {
	t.Helper()
	if DefaultBackend() == BackendDocker {
		t.Skipf("native backend only (running on the %s backend): tests mariadbd processes on this machine", DefaultBackend())
	}
}

// TestDockerContainerFailsToStart gives mariadbd an option it rejects: the
// error must say that the container failed to start and quote its log, and
// nothing may be left behind.
func TestDockerContainerFailsToStart(t *testing.T) {
	dockerOnly(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := Start(ctx, Options{Nodes: 1, Backend: BackendDocker, Logf: t.Logf,
		StartTimeout: 20 * time.Second, extraArgs: []string{"--no-such-option-ringtest"}})
	if err == nil {
		h.Close()
		t.Fatal("Start succeeded with an invalid server option")
	}
	for _, want := range []string{"container failed to start", "tail of the log of container", "no-such-option-ringtest"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	t.Logf("expected error: %v", err)
}

// TestDockerImageBuildFails points the image build at a mirror that does
// not answer: the error must name the failing step and quote its output.
func TestDockerImageBuildFails(t *testing.T) {
	dockerOnly(t)
	t.Setenv("DBROUTER_APT_MIRROR", "http://127.0.0.1:9/debian")
	t.Setenv("DBROUTER_APT_SUITE", "bookworm")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	h, err := Start(ctx, Options{Nodes: 1, Backend: BackendDocker, Logf: t.Logf,
		Image: localImageRepo + "unbuildable:test"})
	if err == nil {
		h.Close()
		t.Fatal("Start succeeded although the image cannot be built")
	}
	for _, want := range []string{"building image " + localImageRepo + "unbuildable:test failed", "step failed: debootstrap", "127.0.0.1:9"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	t.Logf("expected error: %v", err)
}

// TestNoDockerEngine connects to a loopback port nobody listens on (port
// 9): the error must say that no Docker engine answers and how to go on.
// It needs no engine, so it runs on both backends. (Start itself cannot be
// pointed at a dead engine here: testcontainers-go falls back to the
// default socket when DOCKER_HOST does not answer.)
func TestNoDockerEngine(t *testing.T) {
	prepareTestcontainersEnv()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := dockerClient(ctx, client.WithHost("tcp://127.0.0.1:9"))
	if err == nil {
		cli.Close()
		t.Fatal("connected to a Docker engine on 127.0.0.1:9")
	}
	for _, want := range []string{"no Docker engine answers", BackendEnv + "=" + string(BackendNative)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	t.Logf("expected error: %v", err)
}

func TestIsMySQLImage(t *testing.T) {
	for img, want := range map[string]bool{
		"mysql":                       true,
		"mysql:8.4":                   true,
		"docker.io/library/mysql:8.0": true,
		"container-registry.oracle.com/mysql/mysql-server:8.0": true,
		"mariadb:11.4":                    false,
		"dbrouter-ringtest/mariadb:local": false,
		"example.com/mysql-tools/mariadb": false,
	} {
		if got := isMySQLImage(img); got != want {
			t.Errorf("isMySQLImage(%q) = %v, want %v", img, got, want)
		}
	}
}

// TestWriteBuildScript checks that the embedded image build script is
// written out whole and is valid bash; it needs no engine.
func TestWriteBuildScript(t *testing.T) {
	p, err := writeBuildScript()
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, buildMariaDBImageScript) || !bytes.Contains(got, []byte("docker import")) {
		t.Fatalf("written script (%d bytes) differs from the embedded one (%d bytes)", len(got), len(buildMariaDBImageScript))
	}
	if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("bash -n %s: %v\n%s", p, err, out)
	}
}
