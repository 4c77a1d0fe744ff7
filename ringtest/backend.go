package ringtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Backend names where a Harness runs its servers (Options.Backend). The
// DBROUTER_RING_BACKEND environment variable holds the string of one of
// its constants.
type Backend string

// The backends a Harness can run its servers on.
const (
	// BackendNative runs every server as a mariadbd process on this
	// machine, listening on loopback.
	BackendNative Backend = "native"
	// BackendDocker runs every server in a Docker container through
	// testcontainers-go; see the package documentation.
	BackendDocker Backend = "docker"
)

// BackendEnv names the environment variable that selects the backend when
// Options.Backend is empty: "native" (the default) or "docker".
const BackendEnv = "DBROUTER_RING_BACKEND"

// DefaultBackend returns the backend that Start uses when Options.Backend
// is empty: the value of DBROUTER_RING_BACKEND, or BackendNative when it is
// unset or empty. It does not validate the value; Start does.
func DefaultBackend() Backend {
	if b := strings.TrimSpace(strings.ToLower(os.Getenv(BackendEnv))); b != "" {
		return Backend(b)
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
func validBackend(b Backend) error {
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

// openAdminDB opens a node's root pool from cfg, which says where the
// server is (and the password, if any); ring and idx name the node in a
// panic. A pool opened after the node was closed is returned closed.
func openAdminDB(cfg *mysql.Config, ring string, idx int, closed bool) *sql.DB {
	cfg.User = "root"
	cfg.Timeout = 2 * time.Second
	// Pooled connections to a killed server fail with "broken pipe";
	// database/sql retries those, so the driver's log line is noise.
	cfg.Logger = &mysql.NopLogger{}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		// NewConnector only fails on an invalid config, which this is not.
		panic(fmt.Sprintf("ringtest: %s node %d: admin connector: %v", ring, idx, err))
	}
	db := sql.OpenDB(c)
	db.SetMaxIdleConns(2)
	if closed {
		db.Close()
	}
	return db
}

// closeConns closes a node's proxy and admin pool, either of which may be
// nil, once the server has been killed.
func closeConns(p *proxy, db *sql.DB) {
	if p != nil {
		p.close()
	}
	if db != nil {
		// The only possible error is failing to say goodbye to the server
		// that was just killed.
		_ = db.Close()
	}
}

// waitPing pings db every pollInterval until a ping succeeds, gone returns
// an error (the server has died: done is closed when it does), timeout
// passes or ctx ends. canPing, when not nil, says whether a ping may be
// tried yet.
func waitPing(ctx context.Context, db *sql.DB, timeout time.Duration, done <-chan struct{}, gone func() error, canPing func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		if err := gone(); err != nil {
			return err
		}
		if canPing == nil || canPing() {
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			lastErr = db.PingContext(pctx)
			pcancel()
			if lastErr == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("not ready after %v: %w (last ping error: %v)", timeout, ctx.Err(), lastErr)
			}
			return fmt.Errorf("not ready after %v: %w", timeout, ctx.Err())
		case <-done:
		case <-tick.C:
		}
	}
}
