package ringtest

// The native backend: every server a mariadbd process on this machine
// (server, in backend_native_node.go), started from a template datadir
// (template.go) by one spawner thread. The Docker backend is in
// backend_docker.go and backend_docker_node.go; both implement node
// (backend.go).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// maxSocketPath leaves room below the 108-byte sun_path limit.
const maxSocketPath = 100

// startNative is Start for the native backend.
func startNative(ctx context.Context, opts Options) (*Harness, error) {
	begin := time.Now()
	if opts.ServerPath == "" {
		p, err := FindServer()
		if err != nil {
			return nil, err
		}
		opts.ServerPath = p
	} else if !isExecutable(opts.ServerPath) {
		return nil, fmt.Errorf("ringtest: server binary %s is not an executable file; %s", opts.ServerPath, installHint)
	}
	installDB, err := findInstallDB(opts.ServerPath)
	if err != nil {
		return nil, err
	}

	h := &Harness{opts: opts}
	if opts.BaseDir == "" {
		h.baseDir, err = os.MkdirTemp("", "ringtest-")
		h.ownBase = true
	} else {
		h.baseDir, err = filepath.Abs(opts.BaseDir)
		if err == nil {
			err = os.MkdirAll(h.baseDir, 0o755)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ringtest: base dir: %w", err)
	}
	if err := h.startNative(ctx, installDB); err != nil {
		if cerr := h.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	opts.Logf("ringtest: %d ring(s) x %d node(s) ready in %v (base dir %s)",
		opts.Clusters, opts.Nodes, time.Since(begin).Round(time.Millisecond), h.baseDir)
	return h, nil
}

// startNative creates the rings' servers from the template datadir, starts
// them concurrently and wires the rings.
func (h *Harness) startNative(ctx context.Context, installDB string) error {
	o := &h.opts
	tpl, removeTpl, err := template(ctx, o.ServerPath, installDB, h.baseDir, o.Logf)
	if err != nil {
		return err
	}
	if removeTpl {
		defer os.RemoveAll(tpl)
	}

	t0 := time.Now()
	var all []*server
	for k := 0; k < o.Clusters; k++ {
		r := &Ring{name: fmt.Sprintf("ring%d", k), h: h}
		for i := 0; i < o.Nodes; i++ {
			dir := filepath.Join(h.baseDir, r.name, fmt.Sprintf("n%d", i))
			if _, err := os.Stat(dir); err == nil {
				return fmt.Errorf("ringtest: %s already exists; use an empty BaseDir", dir)
			}
			sock, err := h.socketPath(dir, r.name, i)
			if err != nil {
				return err
			}
			s := &server{
				ring: r.name, idx: i, id: 1000*k + i + 1, n: o.Nodes,
				bin: o.ServerPath, dir: dir, socket: sock,
				timeout: o.StartTimeout, logf: o.Logf,
			}
			if o.Proxy {
				if s.proxy, err = newProxy(s.serverAddr); err != nil {
					return err
				}
			}
			r.servers = append(r.servers, s)
			all = append(all, s)
		}
		h.rings = append(h.rings, r)
	}

	// Start every server concurrently; each one copies the template, boots,
	// and gets its users and database.
	pickPort := newPortPicker()
	if err := concurrently(all, func(s *server) error {
		return h.bootServer(ctx, s, tpl, pickPort)
	}); err != nil {
		return err
	}

	o.Logf("ringtest: servers started and bootstrapped in %v", time.Since(t0).Round(time.Millisecond))

	// Wire the rings only once every node has reset its binlog.
	return h.wireRings(ctx)
}

// bootServer copies the template into the server's datadir, starts it on a
// free port (retrying with another port if the bind fails) and bootstraps
// users and database.
func (h *Harness) bootServer(ctx context.Context, s *server, tpl string, pickPort func() (int, error)) error {
	if err := os.CopyFS(s.dir, os.DirFS(tpl)); err != nil {
		return fmt.Errorf("ringtest: %s node %d: copying template datadir: %w", s.ring, s.idx, err)
	}
	s.op.Lock()
	defer s.op.Unlock()
	err := onFreePort(pickPort, func(port int) (bool, error) {
		s.mu.Lock()
		s.port = port
		s.mu.Unlock()
		err := s.start(ctx)
		if !errors.Is(err, errBind) {
			return false, err
		}
		s.logf("ringtest: %s: port taken, retrying with another", s.label())
		return true, err
	})
	if err != nil {
		return err
	}
	return bootstrap(ctx, s, h.opts.Database, h.opts.User, h.opts.Password)
}

// socketPath returns dir/mariadbd.sock, or a path in a short temporary
// directory when that would exceed the unix socket path limit.
func (h *Harness) socketPath(dir, ring string, i int) (string, error) {
	p := filepath.Join(dir, "mariadbd.sock")
	if len(p) <= maxSocketPath {
		return p, nil
	}
	if h.sockDir == "" {
		d, err := os.MkdirTemp("", "rts-")
		if err != nil {
			return "", fmt.Errorf("ringtest: socket dir: %w", err)
		}
		h.sockDir = d
	}
	return filepath.Join(h.sockDir, fmt.Sprintf("%s-n%d.sock", ring, i)), nil
}

// The kernel sends a child its parent-death signal when the *thread* that
// forked it exits, not when the process does. Go may terminate a thread
// (when a goroutine that called runtime.LockOSThread returns without
// unlocking), which would SIGKILL a healthy server. So every child is
// started from one goroutine that is locked to its thread and never returns:
// that thread lives exactly as long as the process.

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// startCmd runs cmd.Start on the dedicated spawner thread.
func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go spawner()
	})
	done := make(chan error, 1)
	spawnCh <- spawnReq{cmd: cmd, done: done}
	return <-done
}

func spawner() {
	runtime.LockOSThread() // never unlocked: the thread must not be reused or exit
	for req := range spawnCh {
		req.done <- req.cmd.Start()
	}
}
