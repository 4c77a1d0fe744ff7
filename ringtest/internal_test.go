package ringtest

import (
	"context"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGTIDSet(t *testing.T) {
	a := gtidSet("2-2-5, 1-1-10,3-3-1")
	b := gtidSet("1-1-10,3-3-1,2-2-5")
	if !slices.Equal(a, b) || len(a) != 3 {
		t.Fatalf("%v != %v", a, b)
	}
	if gtidSet("") != nil {
		t.Fatalf("empty position: %v", gtidSet(""))
	}
	if slices.Equal(gtidSet("1-1-10"), gtidSet("1-1-11")) {
		t.Fatal("different sequence numbers compare equal")
	}
}

func TestQuote(t *testing.T) {
	if got := quoteString(`it's a \ test`); got != `'it\'s a \\ test'` {
		t.Errorf("quoteString: %s", got)
	}
	if got := quoteIdent("we`ird"); got != "`we``ird`" {
		t.Errorf("quoteIdent: %s", got)
	}
	if got := redact("CREATE USER 'a'@'%' IDENTIFIED BY 'secret'"); strings.Contains(got, "secret") {
		t.Errorf("redact: %s", got)
	}
}

// TestPortRetry hands the first start a port that is already taken and
// checks that the server comes up on another one.
func TestPortRetry(t *testing.T) {
	nativeOnlyInternal(t)
	bin, err := FindServer()
	if err != nil {
		t.Fatal(err) // a missing server is a failure, not a skip: make test installs it
	}
	installDB, err := findInstallDB(bin)
	if err != nil {
		t.Fatal(err) // a missing server is a failure, not a skip: make test installs it
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	busy := taken.Addr().(*net.TCPAddr).Port

	opts := Options{ServerPath: bin, BaseDir: t.TempDir(), Logf: t.Logf}
	opts.setDefaults()
	h := &Harness{opts: opts, baseDir: opts.BaseDir}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tpl, removeTpl, err := template(ctx, bin, installDB, h.baseDir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if removeTpl {
		defer os.RemoveAll(tpl)
	}
	s := &server{ring: "ring0", idx: 0, id: 1, n: 1, bin: bin, dir: h.baseDir + "/n0",
		timeout: opts.StartTimeout, logf: t.Logf}
	s.socket, err = h.socketPath(s.dir, "ring0", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	picks := 0
	pick := func() (int, error) {
		picks++
		if picks == 1 {
			return busy, nil
		}
		return freePort()
	}
	if err := h.bootServer(ctx, s, tpl, pick); err != nil {
		t.Fatal(err)
	}
	if picks != 2 || s.getPort() == busy {
		t.Fatalf("picks=%d port=%d busy=%d", picks, s.getPort(), busy)
	}
	if !strings.Contains(s.logTail(0), "Address already in use") {
		t.Errorf("error log does not mention the failed bind:\n%s", s.logTail(0))
	}
}

// TestStartFailureQuotesLog checks that a server that cannot start yields
// an error containing the tail of its error log.
func TestStartFailureQuotesLog(t *testing.T) {
	nativeOnlyInternal(t)
	bin, err := FindServer()
	if err != nil {
		t.Fatal(err) // a missing server is a failure, not a skip: make test installs it
	}
	dir := t.TempDir() // an empty datadir: no system tables
	s := &server{ring: "ring0", idx: 0, id: 1, n: 1, bin: bin, dir: dir, socket: dir + "/s.sock",
		timeout: 10 * time.Second, logf: t.Logf}
	s.port, _ = freePort()
	defer s.close()
	s.op.Lock()
	err = s.start(context.Background())
	s.op.Unlock()
	if err == nil {
		t.Fatal("start succeeded on an empty datadir")
	}
	if !strings.Contains(err.Error(), "tail of") || !strings.Contains(err.Error(), "ring0 node 0") {
		t.Fatalf("error lacks context or log tail: %v", err)
	}
	t.Logf("expected error: %v", err)
}

// TestBackendSelection: DefaultBackend reads DBROUTER_RING_BACKEND
// (trimmed, in any case) and is native when it is unset; validBackend
// accepts the two backends and names any other value. No server starts.
func TestBackendSelection(t *testing.T) {
	for _, tc := range []struct {
		env   string
		want  Backend
		valid bool
	}{
		{"", BackendNative, true},
		{"native", BackendNative, true},
		{"docker", BackendDocker, true},
		{" Docker ", BackendDocker, true},
		{"podman", "podman", false},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv(BackendEnv, tc.env)
			got := DefaultBackend()
			if got != tc.want {
				t.Errorf("DefaultBackend() with %s=%q = %q, want %q", BackendEnv, tc.env, got, tc.want)
			}
			err := validBackend(got)
			if (err == nil) != tc.valid {
				t.Errorf("validBackend(%q) = %v, want valid %v", got, err, tc.valid)
			}
			if err != nil && !strings.Contains(err.Error(), `"podman"`) {
				t.Errorf("validBackend(%q) = %v: does not name the value", got, err)
			}
		})
	}
}
