package ringtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// pollInterval is how often state is polled while waiting for a server.
const pollInterval = 20 * time.Millisecond

// errLogTailBytes is how much of a server's error log is quoted in errors.
const errLogTailBytes = 3000

// server is one mariadbd process with its own datadir, socket and TCP port.
// Long operations (start, kill, freeze, thaw) are serialised by op; mu only
// guards the fields below it for short critical sections.
type server struct {
	ring    string // ring name, for messages
	idx     int    // node index within the ring
	id      int    // server_id and gtid_domain_id
	n       int    // ring size: auto_increment_increment
	bin     string // mariadbd binary
	dir     string // datadir
	socket  string // unix socket path
	timeout time.Duration
	logf    func(format string, args ...any)

	op sync.Mutex

	mu     sync.Mutex
	port   int
	proc   *process // the current or last process; nil before the first start
	frozen bool
	admin  *sql.DB
	closed bool

	// proxy, when Options.Proxy is set, sits between callers of addr and
	// the server; it is created before the first start and never replaced.
	proxy *proxy
}

// process is one run of mariadbd. done is closed once Wait has returned.
type process struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
	err  error // Wait's result, valid after done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (s *server) errorLog() string { return filepath.Join(s.dir, "error.log") }
func (s *server) pidFile() string  { return filepath.Join(s.dir, "mariadbd.pid") }

// label identifies the server in errors: "ring0 node 1 (127.0.0.1:41234)".
func (s *server) label() string {
	return fmt.Sprintf("%s node %d (%s)", s.ring, s.idx, s.serverAddr())
}

// addr is the address callers use: the proxy's when there is one.
func (s *server) addr() string {
	if s.proxy != nil {
		return s.proxy.addr()
	}
	return s.serverAddr()
}

// serverAddr is the server's own TCP address, bypassing any proxy.
func (s *server) serverAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

func (s *server) getPort() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// alive reports whether the process exists (frozen or not).
func (s *server) alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// live reports whether the process exists and is not stopped by Freeze.
func (s *server) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited() && !s.frozen
}

func (s *server) isFrozen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.frozen && s.proc != nil && !s.proc.exited()
}

func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

// adminDB returns the lazily opened root connection pool over the unix socket.
func (s *server) adminDB() *sql.DB {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.admin == nil {
		cfg := mysql.NewConfig()
		cfg.Net = "unix"
		cfg.Addr = s.socket
		s.admin = openAdminDB(cfg, s.ring, s.idx, s.closed)
	}
	return s.admin
}

// args returns the mariadbd command line. --no-defaults must come first.
func (s *server) args() []string {
	a := []string{
		"--no-defaults",
		"--datadir=" + s.dir,
		"--socket=" + s.socket,
		"--pid-file=" + s.pidFile(),
		"--log-error=" + s.errorLog(),
		"--tmpdir=" + s.dir,
		"--port=" + strconv.Itoa(s.getPort()),
		"--bind-address=127.0.0.1",
	}
	a = append(a, ringServerArgs(s.id, s.n, s.idx)...)
	if os.Geteuid() == 0 {
		a = append(a, "--user=root")
	}
	return a
}

// ringServerArgs are the mariadbd options every backend gives node idx
// (server and domain id id) of a ring of n: replication, auto-increment
// spacing and small buffers.
func ringServerArgs(id, n, idx int) []string {
	return []string{
		"--skip-name-resolve",
		"--server-id=" + strconv.Itoa(id),
		"--gtid-domain-id=" + strconv.Itoa(id),
		"--log-bin=mysql-bin",
		"--relay-log=relay-bin",
		"--log-slave-updates",
		"--binlog-format=MIXED", // MariaDB's default; relayed statements stay statements (see TestTorture)
		"--auto-increment-increment=" + strconv.Itoa(n),
		"--auto-increment-offset=" + strconv.Itoa(idx+1),
		"--slave-net-timeout=5",
		"--sync-binlog=0",
		"--performance-schema=OFF",
		"--innodb-buffer-pool-size=16M",
		"--innodb-log-file-size=" + innodbLogFileSize,
		"--innodb-log-buffer-size=2M",
		"--innodb-flush-log-at-trx-commit=2",
		"--innodb-doublewrite=0",
		"--innodb-temp-data-file-path=ibtmp1:1M:autoextend",
		"--table-open-cache=400",
		"--key-buffer-size=1M",
		"--aria-pagecache-buffer-size=1M",
		"--max-connections=100",
	}
}

// sysProcAttr puts the server in its own process group (so a terminal's
// Ctrl-C reaches only the Go program, which then calls Close) and makes the
// kernel SIGKILL it if the Go program dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// errBind marks a start failure caused by the TCP port being taken.
var errBind = errors.New("TCP port already in use")

// start launches mariadbd and waits until it accepts root connections on its
// socket. Callers hold s.op.
func (s *server) start(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("ringtest: %s: harness is closed", s.label())
	}
	if s.proc != nil && !s.proc.exited() {
		s.mu.Unlock()
		return fmt.Errorf("ringtest: %s: already running (pid %d)", s.label(), s.proc.pid)
	}
	s.mu.Unlock()

	logFile, err := os.OpenFile(s.errorLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("ringtest: %s: %w", s.label(), err)
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	cmd := exec.Command(s.bin, s.args()...)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	err = startCmd(cmd)
	logFile.Close() // the child has its own descriptor now
	if err != nil {
		return fmt.Errorf("ringtest: %s: starting %s: %w", s.label(), s.bin, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.proc = p
	s.frozen = false
	s.mu.Unlock()
	t0 := time.Now()
	if err := s.waitReady(ctx, p); err != nil {
		tail := s.logTail(logStart)
		if !p.exited() {
			s.killProc(p)
		}
		if strings.Contains(tail, "Address already in use") || strings.Contains(tail, "Bind on TCP/IP port") {
			err = fmt.Errorf("%w: %w", errBind, err)
		}
		return fmt.Errorf("ringtest: %s: %w\n--- tail of %s ---\n%s", s.label(), err, s.errorLog(), tail)
	}
	s.logf("ringtest: %s: mariadbd pid %d ready in %v", s.label(), p.pid, time.Since(t0).Round(time.Millisecond))
	return nil
}

// waitReady polls a root ping over the unix socket until it succeeds, the
// process exits, the StartTimeout passes or ctx ends.
func (s *server) waitReady(ctx context.Context, p *process) error {
	gone := func() error {
		if p.exited() {
			return fmt.Errorf("mariadbd exited during startup: %v", p.err)
		}
		return nil
	}
	canPing := func() bool {
		_, err := os.Stat(s.socket)
		return err == nil
	}
	return waitPing(ctx, s.adminDB(), s.timeout, p.done, gone, canPing)
}

// kill SIGKILLs the current process, if any, and waits until it is reaped.
// It reports whether a live process was killed. Callers hold s.op.
func (s *server) kill() bool {
	s.mu.Lock()
	p := s.proc
	s.frozen = false
	s.mu.Unlock()
	if p == nil || p.exited() {
		return false
	}
	s.killProc(p)
	return true
}

// killProc SIGKILLs p (a stopped process dies too) and waits for the reaper.
func (s *server) killProc(p *process) {
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// signal sends sig to the running process. Callers hold s.op.
func (s *server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		return fmt.Errorf("ringtest: %s: not running", s.label())
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("ringtest: %s: %v: %w", s.label(), sig, err)
	}
	return nil
}

// waitStopped polls /proc until every thread of the current process is
// stopped (stopped=true) or none is (stopped=false). kill(2) only queues
// SIGSTOP/SIGCONT; the threads of a busy server take a moment to comply, and
// a caller of Freeze must not see the "frozen" server answer a query.
func (s *server) waitStopped(stopped bool) error {
	pid := s.pid()
	deadline := time.Now().Add(5 * time.Second)
	for {
		all, some, err := threadsStopped(pid)
		if err != nil {
			return fmt.Errorf("ringtest: %s: %w", s.label(), err)
		}
		if (stopped && all) || (!stopped && !some) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ringtest: %s: threads of pid %d still in the wrong state (want stopped=%v)", s.label(), pid, stopped)
		}
		time.Sleep(time.Millisecond)
	}
}

// threadsStopped reports whether all and whether some of pid's threads are
// in the stopped state ("T" in /proc/PID/task/TID/stat).
func threadsStopped(pid int) (all, some bool, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return false, false, err
	}
	all = true
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		// The state follows the parenthesised command name.
		st := string(b)
		i := strings.LastIndexByte(st, ')')
		if i < 0 || i+2 >= len(st) {
			continue
		}
		if st[i+2] == 'T' {
			some = true
		} else {
			all = false
		}
	}
	return all, some, nil
}

// The methods below implement node for the native backend.

func (s *server) replSource() (string, int)   { return "127.0.0.1", s.getPort() }
func (s *server) cutProxy() *proxy            { return s.proxy }
func (s *server) startTimeout() time.Duration { return s.timeout }

func (s *server) killHard() (bool, error) {
	s.op.Lock()
	defer s.op.Unlock()
	return s.kill(), nil
}

// freeze sends SIGSTOP and waits until every thread has stopped.
func (s *server) freeze() error { return s.setStopped(true) }

// thaw sends SIGCONT and waits until no thread is stopped.
func (s *server) thaw() error { return s.setStopped(false) }

// setStopped sends SIGSTOP (stop) or SIGCONT (!stop), waits until the
// threads comply and records the new state.
func (s *server) setStopped(stop bool) error {
	s.op.Lock()
	defer s.op.Unlock()
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	if err := s.signal(sig); err != nil {
		return err
	}
	if err := s.waitStopped(stop); err != nil {
		return err
	}
	s.mu.Lock()
	s.frozen = stop
	s.mu.Unlock()
	return nil
}

func (s *server) restart(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.kill()
	return s.start(ctx)
}

func (s *server) shutdown() error {
	s.close()
	return nil
}

// close kills the process and closes the admin pool. It is idempotent.
func (s *server) close() {
	s.op.Lock()
	defer s.op.Unlock()
	s.kill()
	s.mu.Lock()
	s.closed = true
	db := s.admin
	s.mu.Unlock()
	closeConns(s.proxy, db)
}

// logTail returns up to errLogTailBytes of the error log written after
// offset from (the start of the current run).
func (s *server) logTail(from int64) string {
	f, err := os.Open(s.errorLog())
	if err != nil {
		return fmt.Sprintf("(cannot read error log: %v)", err)
	}
	defer f.Close()
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Sprintf("(cannot read error log: %v)", err)
	}
	if end-from > errLogTailBytes {
		from = end - errLogTailBytes
	}
	buf := make([]byte, end-from)
	n, _ := f.ReadAt(buf, from)
	return strings.TrimSpace(string(buf[:n]))
}

// freePort asks the kernel for an unused TCP port on 127.0.0.1. The port is
// released before mariadbd binds it, so a start can still lose the race;
// start reports that as errBind and the caller retries with a new port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// newPortPicker returns a function that picks free ports with freePort,
// never the same one twice, for the concurrent starts of one harness.
func newPortPicker() func() (int, error) {
	var (
		mu    sync.Mutex
		ports = map[int]bool{}
	)
	return func() (int, error) {
		mu.Lock()
		defer mu.Unlock()
		for range 20 {
			p, err := freePort()
			if err != nil {
				return 0, err
			}
			if !ports[p] {
				ports[p] = true
				return p, nil
			}
		}
		return 0, errors.New("ringtest: could not find a free TCP port")
	}
}

// onFreePort calls attempt with a port from pickPort, and again with a new
// port while attempt reports that the port was taken (retry), five times at
// most. It returns attempt's last error, or pickPort's.
func onFreePort(pickPort func() (int, error), attempt func(port int) (retry bool, err error)) error {
	var err error
	for range 5 {
		port, perr := pickPort()
		if perr != nil {
			return perr
		}
		var retry bool
		if retry, err = attempt(port); !retry {
			break
		}
	}
	return err
}
