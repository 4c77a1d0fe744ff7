package ringtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"
)

// Backends a Harness can run its servers on; see Options.Backend.
const (
	// BackendNative runs every server as a mariadbd process on this
	// machine, listening on loopback.
	BackendNative = "native"
	// BackendDocker runs every server in a Docker container through
	// testcontainers-go; see the package documentation.
	BackendDocker = "docker"
)

// BackendEnv names the environment variable that selects the backend when
// Options.Backend is empty: "native" (the default) or "docker".
const BackendEnv = "DBROUTER_RING_BACKEND"

// DefaultBackend returns the backend that Start uses when Options.Backend
// is empty: the value of DBROUTER_RING_BACKEND, or BackendNative when it is
// unset or empty. It does not validate the value; Start does.
func DefaultBackend() string {
	if b := strings.TrimSpace(strings.ToLower(os.Getenv(BackendEnv))); b != "" {
		return b
	}
	return BackendNative
}

// node is one server of a ring, whatever runs it. Ring implements its
// public API (and replication wiring and convergence checks, which are plain
// SQL) on top of this interface; server is the native implementation and
// dockerNode the Docker one. Every method is safe for concurrent use; the
// fault methods are serialised per node.
type node interface {
	// label identifies the node in errors and logs.
	label() string
	// addr is the address callers use: the proxy's when there is one.
	addr() string
	// serverAddr is the server's own address as seen from this machine,
	// "127.0.0.1:PORT".
	serverAddr() string
	// replSource is the host and port the node's downstream peer gives
	// CHANGE MASTER TO.
	replSource() (host string, port int)
	// cutProxy is the proxy of Options.Proxy, or nil.
	cutProxy() *proxy
	// adminDB is a shared root pool; it is closed by shutdown.
	adminDB() *sql.DB
	// pid is the server's process id (see Ring.PID), or 0.
	pid() int
	// alive reports whether the server exists, frozen or not.
	alive() bool
	// live reports whether the server exists and is not frozen.
	live() bool
	// isFrozen reports whether the server exists and is frozen.
	isFrozen() bool
	// killHard kills the server at once and waits until it is gone. It
	// reports whether there was a server to kill.
	killHard() (bool, error)
	// freeze stops every thread of the server; thaw resumes them.
	freeze() error
	thaw() error
	// restart kills the server if it runs and starts it again on the same
	// data and address, returning once it answers.
	restart(ctx context.Context) error
	// startTimeout bounds one start and the waits derived from it.
	startTimeout() time.Duration
	// shutdown kills the server, closes the admin pool and the proxy and
	// releases what the node holds. It is idempotent.
	shutdown() error
}

// validBackend returns an error for an unknown backend name.
func validBackend(b string) error {
	switch b {
	case BackendNative, BackendDocker:
		return nil
	}
	return fmt.Errorf("ringtest: unknown backend %q (Options.Backend or %s): want %q or %q",
		b, BackendEnv, BackendNative, BackendDocker)
}

// partitioner is implemented by nodes whose backend can cut them off from
// their ring's replication while callers still reach them (Docker: a
// second network).
type partitioner interface {
	setPartitioned(part bool) error
	isPartitioned() bool
}
