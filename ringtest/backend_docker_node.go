package ringtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/go-sql-driver/mysql"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
)

// dockerRootPassword is the password of root@'%', which the container
// creates when it initialises its datadir; AdminDB logs in with it through
// the mapped port.
const dockerRootPassword = "ringtest-root"

// dataDir is where the node's volume is mounted in the container.
const dataDir = "/var/lib/mysql"

// containerPort is the server's port inside the container.
const containerPort = 3306

// entrypoint is the container's command, run by /bin/sh with the mariadbd
// arguments as "$@". On the first start (an empty volume) it initialises the
// datadir with mariadb-install-db and creates root@'%' in bootstrap mode
// (so nothing is binlogged); every start creates /run/mysqld, which
// mariadbd needs for its socket, and execs the server. It only relies on
// what both the locally built image and the official mariadb images have.
const entrypoint = `set -e
mkdir -p /run/mysqld ` + dataDir + `
chown mysql:mysql /run/mysqld ` + dataDir + `
server=$(command -v mariadbd || command -v mysqld || echo /usr/sbin/mariadbd)
if [ ! -d ` + dataDir + `/mysql ]; then
	install=$(command -v mariadb-install-db || command -v mysql_install_db)
	if ! "$install" --no-defaults --datadir=` + dataDir + ` --user=mysql \
		--auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
		--innodb-buffer-pool-size=16M --innodb-log-file-size=` + innodbLogFileSize + ` \
		--performance-schema=OFF >/tmp/ringtest-install.log 2>&1; then
		echo "ringtest: $install failed:"; cat /tmp/ringtest-install.log; exit 1
	fi
	"$server" --no-defaults --bootstrap --datadir=` + dataDir + ` --user=mysql \
		--innodb-buffer-pool-size=16M --innodb-log-file-size=` + innodbLogFileSize + ` <<EOF
FLUSH PRIVILEGES;
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';
CREATE USER 'root'@'%' IDENTIFIED BY '$RINGTEST_ROOT_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION;
EOF
	echo "ringtest: datadir initialised"
fi
exec "$server" "$@"
`

// dockerNode is one server in its own container. The container is created
// once, with a named volume for its datadir and its port published on a
// fixed 127.0.0.1 port, so that Restart (a start of the same container)
// keeps both. Long operations are serialised by op; mu guards the fields
// below it.
type dockerNode struct {
	env     *dockerEnv
	ring    string
	idx     int
	id      int // server_id and gtid_domain_id
	n       int // ring size
	name    string
	alias   string // host name on the ring's replication network
	volume  string
	front   string // network ports are published from
	repl    string // internal replication network
	timeout time.Duration
	logf    func(string, ...any)
	proxy   *proxy // Options.Proxy; created before the first start

	op sync.Mutex

	mu     sync.Mutex
	port   int // published host port on 127.0.0.1
	ctr    *testcontainers.DockerContainer
	run    *containerRun // current or last run; nil before the first start
	frozen bool
	admin  *sql.DB
	closed bool

	partitioned bool // disconnected from the replication network by Partition
}

// containerRun is one run of the container, from start until it stops.
type containerRun struct {
	pid    int
	done   chan struct{} // closed when the engine reports the container stopped
	killed bool          // Kill saw the server die; done may lag (guarded by dockerNode.mu)
}

func (r *containerRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// over reports whether the run has ended, as far as callers can tell.
// Callers hold dockerNode.mu.
func (r *containerRun) over() bool { return r.killed || r.exited() }

func (d *dockerNode) label() string {
	return fmt.Sprintf("%s node %d (%s, container %s)", d.ring, d.idx, d.serverAddr(), d.name)
}

func (d *dockerNode) addr() string {
	if d.proxy != nil {
		return d.proxy.addr()
	}
	return d.serverAddr()
}

func (d *dockerNode) serverAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port))
}

func (d *dockerNode) replSource() (string, int)   { return d.alias, containerPort }
func (d *dockerNode) cutProxy() *proxy            { return d.proxy }
func (d *dockerNode) startTimeout() time.Duration { return d.timeout }

func (d *dockerNode) pid() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run == nil || d.run.over() {
		return 0
	}
	return d.run.pid
}

func (d *dockerNode) alive() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.run != nil && !d.run.over()
}

func (d *dockerNode) live() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.run != nil && !d.run.over() && !d.frozen
}

func (d *dockerNode) isFrozen() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.frozen && d.run != nil && !d.run.over()
}

// adminDB returns the lazily opened root pool over the mapped port.
func (d *dockerNode) adminDB() *sql.DB {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.admin == nil {
		cfg := mysql.NewConfig()
		cfg.Passwd = dockerRootPassword
		cfg.Net = "tcp"
		cfg.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(d.port))
		d.admin = openAdminDB(cfg, d.ring, d.idx, d.closed)
	}
	return d.admin
}

// serverArgs is the mariadbd command line inside the container.
func (d *dockerNode) serverArgs() []string {
	a := []string{
		"--no-defaults",
		"--datadir=" + dataDir,
		"--socket=/run/mysqld/mysqld.sock",
		"--pid-file=/run/mysqld/mysqld.pid",
		"--port=" + strconv.Itoa(containerPort),
		"--bind-address=0.0.0.0",
		"--user=mysql",
		// Every client, the router included, reaches the server from the
		// bridge's gateway address, and Kill probes the port with
		// connections it drops before logging in: never block that host.
		"--max-connect-errors=1000000000",
	}
	a = append(a, ringServerArgs(d.id, d.n, d.idx)...)
	return append(a, d.env.extraArgs...)
}

// create makes the volume and the container and starts it, retrying with
// another host port when the chosen one turns out to be taken.
func (d *dockerNode) create(ctx context.Context, pickPort func() (int, error)) error {
	d.op.Lock()
	defer d.op.Unlock()
	if _, err := d.env.cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: d.volume, Labels: d.env.labels()}); err != nil {
		return fmt.Errorf("ringtest: %s: creating volume %s: %w", d.label(), d.volume, err)
	}
	return onFreePort(pickPort, func(port int) (bool, error) {
		d.mu.Lock()
		d.port = port
		d.mu.Unlock()
		err := d.createContainer(ctx)
		if err == nil {
			err = d.start(ctx)
		}
		if err == nil || !isPortConflict(err) {
			return false, err
		}
		d.logf("ringtest: %s: host port taken, retrying with another", d.label())
		if rerr := d.removeContainer(ctx); rerr != nil {
			return false, errors.Join(err, rerr)
		}
		return true, err
	})
}

func isPortConflict(err error) bool {
	s := err.Error()
	return strings.Contains(s, "port is already allocated") || strings.Contains(s, "address already in use")
}

// createContainer creates (without starting) the container. Callers hold op.
func (d *dockerNode) createContainer(ctx context.Context) error {
	port := d.getPort()
	cport := network.MustParsePort(strconv.Itoa(containerPort) + "/tcp")
	req := testcontainers.ContainerRequest{
		Image: d.env.image,
		Name:  d.name,
		// No Hostname: the engine would add it as an alias on every
		// network, and the alias must resolve on the replication network
		// only, or Partition would not cut anything.
		Entrypoint:     []string{"/bin/sh", "-c", entrypoint, "ringtest-entrypoint"},
		Cmd:            d.serverArgs(),
		Env:            map[string]string{"RINGTEST_ROOT_PASSWORD": dockerRootPassword},
		Labels:         d.env.labels(),
		ExposedPorts:   []string{cport.String()},
		Networks:       []string{d.front, d.repl},
		NetworkAliases: map[string][]string{d.repl: {d.alias}},
		Mounts:         testcontainers.Mounts(testcontainers.VolumeMount(d.volume, dataDir)),
		HostConfigModifier: func(hc *container.HostConfig) {
			// Published on loopback only, on a port chosen here so that it
			// survives restarts of the container.
			hc.PortBindings = network.PortMap{cport: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(port)}}}
		},
	}
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: req,
		Logger:           noopLogger,
	})
	// The container may exist even when GenericContainer fails: keep what
	// it returned so that removeContainer (or the harness's sweep) gets it.
	if dc, ok := c.(*testcontainers.DockerContainer); ok && dc != nil {
		d.mu.Lock()
		d.ctr = dc
		d.mu.Unlock()
	}
	if err != nil {
		hint := ""
		if !strings.HasPrefix(d.env.image, localImageRepo) {
			hint = fmt.Sprintf(" (an image outside %q is pulled, which needs a registry; unset %s to build %s locally)",
				localImageRepo, ImageEnv, LocalImage)
		}
		return fmt.Errorf("ringtest: %s: creating container from %s: %w%s", d.label(), d.env.image, err, hint)
	}
	return nil
}

func (d *dockerNode) getPort() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.port
}

func (d *dockerNode) container() *testcontainers.DockerContainer {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctr
}

// start starts the created (or stopped) container, watches it until it
// stops, and waits until the server accepts root connections through the
// mapped port. A failure quotes the container's log. Callers hold op.
func (d *dockerNode) start(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return fmt.Errorf("ringtest: %s: harness is closed", d.label())
	}
	prev := d.run
	if prev != nil && !prev.over() {
		d.mu.Unlock()
		return fmt.Errorf("ringtest: %s: already running", d.label())
	}
	c := d.ctr
	d.mu.Unlock()
	if c == nil {
		return fmt.Errorf("ringtest: %s: no container", d.label())
	}
	t0 := time.Now()
	if prev != nil {
		// Kill returns as soon as the server is dead; the engine may
		// still be tearing the container down.
		select {
		case <-prev.done:
		case <-time.After(d.timeout):
			return fmt.Errorf("ringtest: %s: container still stopping after %v", d.label(), d.timeout)
		}
	}
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("ringtest: %s: container failed to start: %w%s", d.label(), err, d.logTail())
	}
	run := &containerRun{done: make(chan struct{})}
	if st, err := c.State(ctx); err == nil {
		run.pid = st.Pid
	}
	// The watch ends when the container stops, or when shutdown removes it.
	w := d.env.cli.ContainerWait(context.Background(), c.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	go func() {
		select {
		case <-w.Result:
		case <-w.Error:
		}
		close(run.done)
	}()
	d.mu.Lock()
	d.run = run
	d.frozen = false
	d.mu.Unlock()
	if err := d.waitReady(ctx, run); err != nil {
		return fmt.Errorf("ringtest: %s: container failed to start: %w%s", d.label(), err, d.logTail())
	}
	d.logf("ringtest: %s: mariadbd pid %d ready in %v", d.label(), run.pid, time.Since(t0).Round(time.Millisecond))
	return nil
}

// waitReady polls a root ping through the mapped port until it succeeds,
// the container stops, the start timeout passes or ctx ends.
func (d *dockerNode) waitReady(ctx context.Context, run *containerRun) error {
	gone := func() error {
		if run.exited() {
			return errors.New("the container stopped during startup")
		}
		return nil
	}
	return waitPing(ctx, d.adminDB(), d.timeout, run.done, gone, nil)
}

// logTail returns the end of the container's log, formatted for an error.
func (d *dockerNode) logTail() string {
	c := d.container()
	if c == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rc, err := c.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("\n(cannot read the container log: %v)", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil && len(b) == 0 {
		return fmt.Sprintf("\n(cannot read the container log: %v)", err)
	}
	return fmt.Sprintf("\n--- tail of the log of container %s ---\n%s", d.name, tail(string(b), errLogTailBytes))
}

// kill SIGKILLs the running (or paused) container and returns once the
// server is dead: when the engine reports the container stopped, or
// earlier, when the mapped port shows that nothing answers behind it any
// more. The engine takes a few hundred milliseconds to finish tearing a
// killed container down, long after the router has seen the server die
// (callers of the native backend get control back within a millisecond or
// two); start waits for the teardown. Callers hold op.
func (d *dockerNode) kill(ctx context.Context) (bool, error) {
	d.mu.Lock()
	run, c, frozen := d.run, d.ctr, d.frozen
	if run == nil || run.over() || c == nil {
		d.mu.Unlock()
		return false, nil
	}
	d.mu.Unlock()
	addr := d.serverAddr()
	// An established connection through the engine's port proxy learns of
	// the death a little after new connections do; the router's pooled
	// connections are such connections, so Kill waits for one of its own.
	var sentinel <-chan struct{}
	if !frozen {
		sentinel = watchClose(addr)
	}
	apiDone := make(chan error, 1)
	go func() {
		_, err := d.env.cli.ContainerKill(context.WithoutCancel(ctx), c.ID, client.ContainerKillOptions{Signal: "KILL"})
		apiDone <- err
	}()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(d.timeout)
	defer deadline.Stop()
wait:
	for {
		select {
		case <-run.done:
			break wait
		case err := <-apiDone:
			apiDone = nil
			if err != nil && !run.exited() {
				return false, fmt.Errorf("ringtest: %s: container kill: %w", d.label(), err)
			}
		case <-tick.C:
			// A frozen server never greets, so only the engine can tell.
			if !frozen && closed(sentinel) && serverGone(addr) {
				break wait
			}
		case <-deadline.C:
			return false, fmt.Errorf("ringtest: %s: container still running %v after kill", d.label(), d.timeout)
		}
	}
	d.mu.Lock()
	run.killed = true
	d.frozen = false
	d.mu.Unlock()
	return true, nil
}

// watchClose opens a connection to addr, reads the server's greeting and
// returns a channel that is closed when the connection is closed by the
// other end; it returns nil if the greeting does not come.
func watchClose(addr string) <-chan struct{} {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil
	}
	buf := make([]byte, 4096)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(buf); err != nil || n == 0 {
		c.Close()
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c.Close()
		// The server drops an unauthenticated connection after its
		// connect_timeout (10 s); the kill comes long before that.
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return done
}

// closed reports whether ch is nil or closed.
func closed(ch <-chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// serverGone reports whether the server behind a published port is dead:
// the connection is refused (the engine has unpublished the port) or closed
// before the server's greeting (the engine's proxy found nothing behind
// it). A server that is slow to greet counts as alive.
func serverGone(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 50*time.Millisecond)
	if err != nil {
		return errors.Is(err, syscall.ECONNREFUSED)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	var b [1]byte
	_, err = c.Read(b[:])
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

func (d *dockerNode) killHard() (bool, error) {
	d.op.Lock()
	defer d.op.Unlock()
	return d.kill(context.Background())
}

// freeze pauses the container: the cgroup freezer stops every process in
// it, and the engine returns once they are frozen.
func (d *dockerNode) freeze() error {
	return d.setPaused(true)
}

// thaw unpauses the container.
func (d *dockerNode) thaw() error {
	return d.setPaused(false)
}

func (d *dockerNode) setPaused(pause bool) error {
	d.op.Lock()
	defer d.op.Unlock()
	d.mu.Lock()
	run, c := d.run, d.ctr
	over := run == nil || run.over()
	d.mu.Unlock()
	if over || c == nil {
		return fmt.Errorf("ringtest: %s: not running", d.label())
	}
	return d.engineSet("container pause", pause, &d.frozen, func(ctx context.Context) (err error) {
		if pause {
			_, err = d.env.cli.ContainerPause(ctx, c.ID, client.ContainerPauseOptions{})
		} else {
			_, err = d.env.cli.ContainerUnpause(ctx, c.ID, client.ContainerUnpauseOptions{})
		}
		return err
	})
}

// engineSet runs call, an engine request that sets a state of the
// container to v, within the start timeout, and once it succeeds records v
// in *field (a field guarded by mu). what names the state in errors.
func (d *dockerNode) engineSet(what string, v bool, field *bool, call func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	if err := call(ctx); err != nil {
		return fmt.Errorf("ringtest: %s: %s=%v: %w", d.label(), what, v, err)
	}
	d.mu.Lock()
	*field = v
	d.mu.Unlock()
	return nil
}

func (d *dockerNode) restart(ctx context.Context) error {
	d.op.Lock()
	defer d.op.Unlock()
	if _, err := d.kill(ctx); err != nil {
		return err
	}
	return d.start(ctx)
}

// removeContainer removes the container (not its volume). Callers hold op.
func (d *dockerNode) removeContainer(ctx context.Context) error {
	d.mu.Lock()
	c := d.ctr
	d.ctr = nil
	d.mu.Unlock()
	if c == nil {
		return nil
	}
	if err := c.Terminate(ctx, testcontainers.StopTimeout(0)); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("ringtest: %s: removing container: %w", d.label(), err)
	}
	return nil
}

// shutdown kills and removes the container and its volume and closes the
// admin pool and the proxy.
func (d *dockerNode) shutdown() error {
	d.op.Lock()
	defer d.op.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if _, err := d.kill(ctx); err != nil {
		errs = append(errs, err)
	}
	d.mu.Lock()
	d.closed = true
	db := d.admin
	d.mu.Unlock()
	closeConns(d.proxy, db)
	if err := d.removeContainer(ctx); err != nil {
		errs = append(errs, err)
	}
	if _, err := d.env.cli.VolumeRemove(ctx, d.volume, client.VolumeRemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("ringtest: %s: removing volume %s: %w", d.label(), d.volume, err))
	}
	return errors.Join(errs...)
}

// setPartitioned disconnects the container from its ring's replication
// network (true) or connects it again under its alias (false). The
// published port is on the other network, so callers still reach the node.
func (d *dockerNode) setPartitioned(part bool) error {
	d.op.Lock()
	defer d.op.Unlock()
	d.mu.Lock()
	c, was := d.ctr, d.partitioned
	d.mu.Unlock()
	if c == nil {
		return fmt.Errorf("ringtest: %s: no container", d.label())
	}
	if part == was {
		return nil
	}
	return d.engineSet("partitioned", part, &d.partitioned, func(ctx context.Context) (err error) {
		if part {
			_, err = d.env.cli.NetworkDisconnect(ctx, d.repl, client.NetworkDisconnectOptions{Container: c.ID, Force: true})
		} else {
			_, err = d.env.cli.NetworkConnect(ctx, d.repl, client.NetworkConnectOptions{
				Container:      c.ID,
				EndpointConfig: &network.EndpointSettings{Aliases: []string{d.alias}},
			})
		}
		return err
	})
}

func (d *dockerNode) isPartitioned() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.partitioned
}
