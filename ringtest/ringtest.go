// Package ringtest starts real MariaDB replication rings, as native
// processes or in Docker containers, for tests and demo programs.
//
// A Harness owns K rings; each Ring is N mariadbd servers in circular GTID
// replication (node i replicates from node i-1, node 0 from node N-1), with
// log_slave_updates so that a write on any node reaches every other node.
// Every node uses auto_increment_increment=N and auto_increment_offset=i+1,
// so concurrent inserts on different nodes never collide. Faults (Kill,
// Freeze, Thaw, Restart, SetReadOnly, and Cut with Options.Proxy) are
// injected per node.
//
// # Backends
//
// Options.Backend (default: the DBROUTER_RING_BACKEND environment variable,
// else "native") picks where the servers run; the Ring API is the same.
//
// The native backend runs mariadbd processes on loopback ports.
// mariadb-install-db runs once per set of binaries: the initialised datadir
// is cached under os.UserCacheDir()/ringtest and copied for every node. Set
// the environment variable RINGTEST_CACHE=off to initialise a fresh template
// inside BaseDir for every harness instead. Servers run in their own process
// group with a parent-death signal of SIGKILL, so none outlives the Go
// program even if it is killed hard.
//
// The Docker backend runs each server in a container through
// testcontainers-go. Each ring gets two private networks: an internal one
// on which the nodes replicate by name (MASTER_HOST='node1'), and one from
// which each node's port 3306 is published on a fixed 127.0.0.1 port, the
// address callers (and AdminDB, as root@'%') use; nothing on the host ever
// dials a container's own address. Each node keeps its datadir on a named
// volume. Kill is a SIGKILL container kill, Freeze and Thaw a container
// pause and unpause, Restart a start of the same container (same volume,
// same host port). PID is the engine's pid of the container's mariadbd. Cut
// and Heal work as on the native backend, through the in-process proxy of
// Options.Proxy in front of the published port: the router's path is
// blackholed while the node keeps replicating. Partition and Rejoin, on
// this backend only, do the converse: they disconnect a node from the
// replication network and back, so the ring is split while callers still
// reach the node.
//
// The image is Options.Image, default $DBROUTER_RING_IMAGE, else
// LocalImage. No registry is needed: when an image in the local
// "dbrouter-ringtest/" namespace is absent, Start builds it with
// build-mariadb-image.sh, a script embedded in the package and run with
// bash from a temporary file, so it works when ringtest is imported from
// another module or built with -trimpath (a Debian rootfs made by
// debootstrap from the machine's own apt mirror, with mariadb-server,
// imported with docker import; about a minute, once). Any other absent image is pulled, which
// needs a registry: official mariadb images (10.5 or later) are meant to
// work as they are (DBROUTER_RING_IMAGE=mariadb:11.4), since the container's
// command initialises the datadir itself and uses only what those images
// have. MySQL images are refused: the rings use MariaDB's GTID replication.
// The
// testcontainers-go reaper (Ryuk) needs an image of its own, so Start
// disables it (TESTCONTAINERS_RYUK_DISABLED=true unless set) and Close
// removes every container, network and volume of the harness itself and
// fails if any is left; all of them carry the label dbrouter.ringtest.
// Start also sets TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 unless set.
//
// Start does not install signal handlers; programs that want Ctrl-C cleanup
// should catch the signal and call Close. The package is Linux-only.
package ringtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// Defaults applied by Start to zero-valued Options fields.
const (
	// DefaultClusters is the default number of rings.
	DefaultClusters = 1
	// DefaultNodes is the default number of servers per ring.
	DefaultNodes = 3
	// DefaultDatabase is the default database created on every node.
	DefaultDatabase = "ringtest"
	// DefaultUser is the default application user.
	DefaultUser = "app"
	// DefaultPassword is the default application user's password.
	DefaultPassword = "app-secret"
	// DefaultStartTimeout is the default time allowed for one server to
	// start.
	DefaultStartTimeout = 30 * time.Second
	// DefaultDockerStartTimeout is the default on the Docker backend,
	// where each container also initialises its datadir: fifteen of them
	// starting at once on two cores and a slow disk took over 30 s.
	DefaultDockerStartTimeout = 2 * time.Minute
)

// innodbLogFileSize is used for the template and every server; keeping it
// small makes the template (and each copy of it) about 22 MB.
const innodbLogFileSize = "4M"

// Options configures a Harness. Zero values mean defaults.
type Options struct {
	// Clusters is the number of rings (K); default 1.
	Clusters int
	// Nodes is the number of servers per ring (N); default 3.
	Nodes int
	// Database is created on every node; default "ringtest".
	Database string
	// User is the application user; default "app". It gets all privileges
	// on Database only (plus replication monitoring), so read_only refuses
	// its writes.
	User string
	// Password is User's password; default "app-secret".
	Password string
	// ServerPath is the mariadbd/mysqld binary; default FindServer().
	ServerPath string
	// BaseDir holds the datadirs; default a new os.MkdirTemp("", "ringtest-")
	// directory that Close removes. A caller-supplied BaseDir is kept, and
	// must not already contain the ring directories.
	BaseDir string
	// StartTimeout bounds the start of each server; default
	// DefaultStartTimeout (native) or DefaultDockerStartTimeout (Docker).
	StartTimeout time.Duration
	// Proxy places an in-process TCP proxy between callers and each
	// server: Addr, Addrs and DSN then name the proxy, ServerAddr the
	// server itself, and Cut/Heal blackhole and restore that path while
	// replication (which does not pass through the proxy) goes on. A
	// killed server behind a proxy is seen as a connection closed during
	// the handshake rather than a refused connect.
	Proxy bool
	// Backend selects where the servers run: BackendNative (mariadbd
	// processes on this machine) or BackendDocker (one container per
	// server). Empty means DefaultBackend(): the DBROUTER_RING_BACKEND
	// environment variable, else native. ServerPath and BaseDir apply to
	// the native backend only, Image to Docker only.
	Backend Backend
	// Image is the Docker image of every server; default
	// DefaultImage(): $DBROUTER_RING_IMAGE, else LocalImage. An absent
	// image in the local "dbrouter-ringtest/" namespace is built by the
	// embedded build-mariadb-image.sh (no registry needed); any other
	// absent image, such as an official "mariadb:11.4", is pulled.
	Image string
	// Logf receives progress messages; New defaults it to t.Logf, Start to
	// a no-op.
	Logf func(format string, args ...any)

	// extraArgs are appended to every Docker node's mariadbd command line
	// (tests of start failures).
	extraArgs []string
}

func (o *Options) setDefaults() {
	if o.Clusters <= 0 {
		o.Clusters = DefaultClusters
	}
	if o.Nodes <= 0 {
		o.Nodes = DefaultNodes
	}
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.User == "" {
		o.User = DefaultUser
	}
	if o.Password == "" {
		o.Password = DefaultPassword
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Backend == "" {
		o.Backend = DefaultBackend()
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
		if o.Backend == BackendDocker {
			o.StartTimeout = DefaultDockerStartTimeout
		}
	}
	if o.Image == "" {
		o.Image = DefaultImage()
	}
}

// Harness is a set of K independent MariaDB replication rings. Create it
// with New or Start and release it with Close.
type Harness struct {
	opts    Options
	docker  *dockerEnv // Docker backend state; nil on the native backend
	baseDir string
	ownBase bool   // baseDir was created by Start and is removed by Close
	sockDir string // short directory for sockets when baseDir is too deep
	rings   []*Ring

	closeOnce sync.Once
	closeErr  error
}

// New starts a Harness for a test or benchmark, failing it with t.Fatal if
// the servers cannot be started, and registers Close with t.Cleanup.
// Progress is logged with t.Logf unless opts.Logf is set.
func New(t testing.TB, opts Options) *Harness {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	h, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("ringtest.New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("ringtest: Close: %v", err)
		}
	})
	return h
}

// Start initialises a template datadir, starts every server of every ring
// concurrently, creates the users and the database, wires each ring and
// waits until all replication threads run. On error everything started so
// far is torn down. ctx bounds only the start; the servers keep running
// until Close.
func Start(ctx context.Context, opts Options) (*Harness, error) {
	opts.setDefaults()
	if opts.Nodes > 999 {
		return nil, fmt.Errorf("ringtest: %d nodes per ring; at most 999 are supported", opts.Nodes)
	}
	if err := validBackend(opts.Backend); err != nil {
		return nil, err
	}
	if opts.Backend == BackendDocker {
		return startDocker(ctx, opts)
	}
	return startNative(ctx, opts)
}

// concurrently calls f on every item, each in its own goroutine, and
// returns the errors joined once all calls have returned.
func concurrently[T any](items []T, f func(T) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, it := range items {
		wg.Go(func() {
			if err := f(it); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Rings returns the rings in order.
func (h *Harness) Rings() []*Ring {
	return append([]*Ring(nil), h.rings...)
}

// Ring returns ring k (0-based). It panics if k is out of range.
func (h *Harness) Ring(k int) *Ring {
	if k < 0 || k >= len(h.rings) {
		panic(fmt.Sprintf("ringtest: ring %d out of range [0,%d)", k, len(h.rings)))
	}
	return h.rings[k]
}

// BaseDir returns the directory holding the datadirs (and error logs) on
// the native backend, and "" on the Docker backend, whose data lives in
// Docker volumes.
func (h *Harness) BaseDir() string { return h.baseDir }

// Backend returns the backend the servers run on: BackendNative or
// BackendDocker.
func (h *Harness) Backend() Backend { return h.opts.Backend }

// Close kills every server (frozen ones included) and waits until each is
// gone, closes the admin pools and proxies, and releases what Start
// created: on the native backend it reaps the processes and removes BaseDir
// if Start created it; on Docker it removes every container, network and
// volume of the harness and fails if any is left. It is safe to call more
// than once; later calls return the first call's result.
func (h *Harness) Close() error {
	h.closeOnce.Do(func() {
		var wg sync.WaitGroup
		var (
			mu   sync.Mutex
			errs []error
		)
		for _, r := range h.rings {
			for _, s := range r.servers {
				wg.Go(func() {
					if err := s.shutdown(); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		if h.docker != nil {
			if err := h.docker.close(); err != nil {
				errs = append(errs, err)
			}
		}
		if h.ownBase && h.baseDir != "" {
			if err := os.RemoveAll(h.baseDir); err != nil {
				errs = append(errs, err)
			}
		}
		if h.sockDir != "" {
			if err := os.RemoveAll(h.sockDir); err != nil {
				errs = append(errs, err)
			}
		}
		h.closeErr = errors.Join(errs...)
	})
	return h.closeErr
}
