// Command fleetdemo shows a fleet of three routers, each a separate
// process, sharing one writer decision through etcd on a real MariaDB
// ring.
//
// It starts a ring of three MariaDB servers (A→B→C→A) on loopback with
// ringtest, an etcd embedded in this process, and a proxy per node that can
// cut one MySQL user's connections while the others pass. It then starts
// three routers r1, r2, r3 — this program again, as child processes — each
// with a fleet.Coordinator and writing to the ring without pause (each
// write tagged with its router and a sequence number). While they write:
//
//   - it cuts r1 from the writer, normally A (r1's connections to it hang;
//     r2 and r3 still reach it): the fleet keeps it, r1's writes fail,
//     nobody writes to a second writer;
//   - it heals the cut, then kills the writer (SIGKILL): the fleet's
//     decider names another node and every router moves there.
//
// Every 250 ms it prints a line per router: the writer it uses, writes
// acknowledged and errors in that interval. At the end it restarts A, waits
// for the ring to converge and checks every acknowledged write: rows per
// node, lost, doubled.
//
//	make demo-fleet              # or: cd fleet && go run ./cmd/fleetdemo
//	go run ./cmd/fleetdemo -v    # with the routers' log lines
//
// Ctrl-C stops it at any time; the servers and the children are always
// removed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/fleet"
	"github.com/dbrouter/dbrouter/fleet/internal/userproxy"
	"github.com/dbrouter/dbrouter/ringtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

const (
	prefix   = "/fleetdemo/"
	cluster  = "orders"
	password = "fleet-demo-pw"
	leaseTTL = 2 * time.Second
)

var routerIDs = []string{"r1", "r2", "r3"}

func main() {
	var (
		child     = flag.Bool("child", false, "run as one router of the fleet (used by the demo itself)")
		id        = flag.String("id", "", "child: router id, also its MySQL user")
		endpoints = flag.String("endpoints", "", "child: etcd endpoints, comma-separated")
		nodes     = flag.String("nodes", "", "child: the cluster's nodes, comma-separated")
		verbose   = flag.Bool("v", false, "show the routers' log lines (warnings and fleet decisions)")
	)
	flag.Parse()
	if *child {
		if err := runChild(*id, strings.Split(*endpoints, ","), strings.Split(*nodes, ","), *verbose); err != nil {
			fmt.Fprintf(os.Stderr, "router %s: %v\n", *id, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "fleet demo:", err)
		os.Exit(1)
	}
}

// status is what a child prints every 250 ms, and once more at the end.
type status struct {
	Writer  string `json:"writer"`  // the node its cluster writes to ("" none)
	OK      int64  `json:"ok"`      // writes acknowledged so far
	Err     int64  `json:"err"`     // writes failed so far
	LastErr string `json:"lastErr"` // the kind of the last error
	Final   bool   `json:"final"`   // the last line: the writes have stopped
}

// runChild is one router: it writes until its stdin closes, printing its
// status, and writes the tags of its acknowledged writes to <id>.acked in
// the working directory the parent gave it.
func runChild(id string, endpoints, nodes []string, verbose bool) error {
	level := slog.LevelError + 1
	if verbose {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("router", id)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	coordLogger := logger
	if verbose {
		coordLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("router", id)
	}
	coord, err := fleet.New(cli, fleet.Options{Prefix: prefix, RouterID: id, LeaseTTL: leaseTTL, Logger: coordLogger})
	if err != nil {
		return err
	}
	defer coord.Close()
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults:     dbrouter.Settings{User: id, Password: password, Database: "ringtest"},
		Clusters:     map[string]dbrouter.ClusterConfig{cluster: {Nodes: nodes}},
		WriterSource: coord,
		Logger:       logger,
	})
	if err != nil {
		return err
	}
	defer r.Close()
	cl, err := r.Cluster(cluster)
	if err != nil {
		return err
	}
	acked, err := os.Create(id + ".acked")
	if err != nil {
		return err
	}
	ackedW := bufio.NewWriter(acked)

	var ok, failed atomic.Int64
	var lastErr atomic.Value
	lastErr.Store("")
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			default:
			}
			tag := fmt.Sprintf("%s-%d", id, n)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err := cl.ExecContext(ctx, "INSERT INTO t (router, tag, server) VALUES (?, ?, @@server_id)", id, tag)
			cancel()
			if err == nil {
				ok.Add(1)
				fmt.Fprintln(ackedW, tag)
				continue
			}
			failed.Add(1)
			switch {
			case errors.Is(err, dbrouter.ErrNotSent):
				lastErr.Store("not sent")
			case errors.Is(err, dbrouter.ErrOutcomeUnknown):
				lastErr.Store("outcome unknown")
			default:
				lastErr.Store("other")
			}
			time.Sleep(20 * time.Millisecond) // pace the failures
		}
	})
	out := json.NewEncoder(os.Stdout)
	report := func(final bool) {
		out.Encode(status{Writer: cl.Stats().Writer, OK: ok.Load(), Err: failed.Load(), LastErr: lastErr.Load().(string), Final: final})
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			report(false)
			continue
		case <-done:
		}
		break
	}
	wg.Wait()
	if err := ackedW.Flush(); err != nil {
		return err
	}
	if err := acked.Close(); err != nil {
		return err
	}
	report(true)
	return nil
}

// child is a router process, seen from the parent.
type child struct {
	id    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	st    status
	shown status // at the last timeline line
	done  chan struct{}
}

func (c *child) status() status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func run(ctx context.Context, verbose bool) (err error) {
	start := time.Now()
	fmt.Println("starting a ring of 3 MariaDB servers on loopback ...")
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 3})
	if err != nil {
		return err
	}
	defer h.Close()
	ring := h.Ring(0)
	if err := prepare(ctx, ring); err != nil {
		return err
	}
	// A proxy per node, which every router goes through: it can cut one
	// router (MySQL user) from the node while the others pass.
	var proxies []*userproxy.Proxy
	var nodes []string
	names := map[string]string{"": "-"}
	for i := range ring.Len() {
		p, err := userproxy.New(ring.ServerAddr(i))
		if err != nil {
			return err
		}
		defer p.Close()
		proxies = append(proxies, p)
		nodes = append(nodes, p.Addr())
		names[p.Addr()] = string(rune('A' + i))
		fmt.Printf("  %s = %s (server %s)\n", names[p.Addr()], p.Addr(), ring.ServerAddr(i))
	}

	dir, err := os.MkdirTemp("", "fleetdemo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	etcd, endpoint, err := startEtcd(dir)
	if err != nil {
		return err
	}
	defer etcd.Close()
	fmt.Printf("etcd (embedded) on %s\n", endpoint)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	var children []*child
	defer func() {
		for _, c := range children {
			c.stdin.Close()
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				c.cmd.Process.Kill()
				<-c.done
			}
		}
	}()
	for _, id := range routerIDs {
		args := []string{"-child", "-id", id, "-endpoints", endpoint, "-nodes", strings.Join(nodes, ",")}
		if verbose {
			args = append(args, "-v")
		}
		c, err := startChild(exe, dir, id, args)
		if err != nil {
			return err
		}
		children = append(children, c)
	}
	fmt.Printf("routers r1, r2, r3 started as processes %s; waiting until the fleet has decided ...\n", pids(children))
	deadline := time.Now().Add(30 * time.Second)
	w := -1 // the writer the fleet decided: A, unless a first probe round missed it
	for w < 0 {
		if time.Now().After(deadline) {
			return errors.New("the fleet did not decide a writer within 30s")
		}
		if d, ok := decision(ctx, cli); ok && allOn(children, d.Writer) {
			w = slices.Index(nodes, d.Writer)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}

	wn := names[nodes[w]]
	fmt.Printf("the fleet decided writer %s\n", wn)
	fmt.Println("\ntimeline: per router, the writer it uses, writes acknowledged (+ok) and failed (+err) in each 250 ms")
	fmt.Printf("%7s  %-34s %-34s %-34s\n", "time", "r1", "r2", "r3")
	t0 := time.Now()
	var killed time.Time
	steps := []struct {
		at   time.Duration
		what string
		do   func() error
	}{
		{1500 * time.Millisecond, fmt.Sprintf("cut r1 from %[1]s (r1's connections to %[1]s hang; r2 and r3 still reach %[1]s)", wn), func() error {
			proxies[w].SetCut("r1", true)
			return nil
		}},
		{4500 * time.Millisecond, "heal the cut", func() error {
			proxies[w].SetCut("r1", false)
			return nil
		}},
		{6 * time.Second, "kill " + wn + " (SIGKILL)", func() error {
			killed = time.Now()
			return ring.Kill(w)
		}},
		{9 * time.Second, "stop the routers", nil},
	}
	for _, s := range steps {
		for time.Since(t0) < s.at {
			if err := sleep(ctx, 250*time.Millisecond-time.Since(t0)%(250*time.Millisecond)); err != nil {
				return err
			}
			printLine(time.Since(t0), children, names)
		}
		if s.do == nil {
			break
		}
		fmt.Printf("%7s  --- %s\n", fmtDur(time.Since(t0)), s.what)
		if err := s.do(); err != nil {
			return err
		}
	}
	for _, c := range children {
		c.stdin.Close()
	}
	for _, c := range children {
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("router %s did not stop", c.id)
		}
		if c.cmd.ProcessState != nil && !c.cmd.ProcessState.Success() {
			return fmt.Errorf("router %s: %v", c.id, c.cmd.ProcessState)
		}
	}

	fmt.Println("\nsummary")
	d, _ := decision(ctx, cli)
	fmt.Printf("  fleet decision: writer %s, epoch %d, by %s: %s\n", names[d.Writer], d.Epoch, d.Decider, d.Cause)
	for _, c := range children {
		st := c.status()
		fmt.Printf("  %s: %d writes acknowledged, %d failed; last writer %s\n", c.id, st.OK, st.Err, names[st.Writer])
	}
	fmt.Printf("  restarting %s and waiting for the ring to converge ...\n", wn)
	if err := ring.Restart(w); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := ring.WaitConverged(cctx); err != nil {
		return err
	}
	return check(cctx, ring, w, dir, start, killed)
}

// decision reads the fleet's decision for the cluster, if there is one.
func decision(ctx context.Context, cli *clientv3.Client) (fleet.Decision, bool) {
	var d fleet.Decision
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, fleet.WriterKey(prefix, cluster))
	if err != nil || len(resp.Kvs) == 0 {
		return d, false
	}
	return d, json.Unmarshal(resp.Kvs[0].Value, &d) == nil && d.Writer != ""
}

// prepare creates the routers' MySQL users and the table they write to.
func prepare(ctx context.Context, ring *ringtest.Ring) error {
	db := ring.AdminDB(0)
	for _, u := range routerIDs {
		for _, q := range []string{
			fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'", u, password),
			fmt.Sprintf("GRANT ALL PRIVILEGES ON ringtest.* TO '%s'@'%%'", u),
			fmt.Sprintf("GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO '%s'@'%%'", u),
		} {
			if _, err := db.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("creating user %s: %w", u, err)
			}
		}
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE ringtest.t (
		pk BIGINT AUTO_INCREMENT PRIMARY KEY,
		router VARCHAR(16) NOT NULL,
		tag VARCHAR(32) NOT NULL,
		server INT NOT NULL,
		at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
		KEY (tag))`); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return ring.WaitConverged(cctx)
}

// startEtcd starts a single-member etcd in this process, on free
// loopback ports, with its data under dir; fast ticks allow 2 s leases.
func startEtcd(dir string) (*embed.Etcd, string, error) {
	var urls []url.URL
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
		urls = append(urls, url.URL{Scheme: "http", Host: l.Addr().String()})
		l.Close()
	}
	cfg := embed.NewConfig()
	cfg.Name = "fleetdemo"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = urls[:1], urls[:1]
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = urls[1:], urls[1:]
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs, cfg.ElectionMs = 50, 500
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, "", errors.New("etcd did not become ready within 30s")
	}
	return e, urls[0].Host, nil
}

// startChild starts a router process in dir and follows its status lines.
func startChild(exe, dir, id string, args []string) (*child, error) {
	cmd := exec.Command(exe, args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{id: id, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var st status
			if json.Unmarshal(sc.Bytes(), &st) == nil {
				c.mu.Lock()
				c.st = st
				c.mu.Unlock()
			}
		}
		cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func pids(cs []*child) string {
	var s []string
	for _, c := range cs {
		s = append(s, fmt.Sprint(c.cmd.Process.Pid))
	}
	return strings.Join(s, ", ")
}

func allOn(cs []*child, addr string) bool {
	for _, c := range cs {
		if c.status().Writer != addr {
			return false
		}
	}
	return true
}

// printLine prints one timeline line: per router, its writer and what
// happened since the last line.
func printLine(at time.Duration, cs []*child, names map[string]string) {
	var cols []string
	for _, c := range cs {
		c.mu.Lock()
		st, prev := c.st, c.shown
		c.shown = st
		c.mu.Unlock()
		col := fmt.Sprintf("%s  +%d ok  +%d err", names[st.Writer], st.OK-prev.OK, st.Err-prev.Err)
		if st.Err > prev.Err {
			col += " (" + st.LastErr + ")"
		}
		cols = append(cols, col)
	}
	fmt.Printf("%7s  %-34s %-34s %-34s\n", fmtDur(at), cols[0], cols[1], cols[2])
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// check counts the rows per node (the server that accepted each) and
// compares them with every router's acknowledged writes.
func check(ctx context.Context, ring *ringtest.Ring, w int, dir string, start, killed time.Time) error {
	db := ring.AdminDB((w + 1) % ring.Len())
	ids := map[int]string{}
	wID := 0
	for i := range ring.Len() {
		var id int
		if err := ring.AdminDB(i).QueryRowContext(ctx, "SELECT @@server_id").Scan(&id); err != nil {
			return err
		}
		ids[id] = string(rune('A' + i))
		if i == w {
			wID = id
		}
	}
	rows, err := db.QueryContext(ctx, "SELECT server, COUNT(*) FROM ringtest.t GROUP BY server ORDER BY server")
	if err != nil {
		return err
	}
	var perNode []string
	for rows.Next() {
		var server, n int
		if err := rows.Scan(&server, &n); err != nil {
			rows.Close()
			return err
		}
		perNode = append(perNode, fmt.Sprintf("%s %d", ids[server], n))
	}
	rows.Close()
	// Rows accepted by a node other than the writer before it was killed: a second
	// writer (the servers' clocks are this machine's).
	var second int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM ringtest.t WHERE server <> ? AND at < FROM_UNIXTIME(?)",
		wID, float64(killed.UnixMicro())/1e6).Scan(&second); err != nil {
		return err
	}
	count := map[string]int{}
	rows, err = db.QueryContext(ctx, "SELECT tag, COUNT(*) FROM ringtest.t GROUP BY tag")
	if err != nil {
		return err
	}
	doubled := 0
	for rows.Next() {
		var tag string
		var n int
		if err := rows.Scan(&tag, &n); err != nil {
			rows.Close()
			return err
		}
		count[tag] = n
		if n > 1 {
			doubled++
		}
	}
	rows.Close()
	acked, lost := 0, 0
	for _, id := range routerIDs {
		b, err := os.ReadFile(filepath.Join(dir, id+".acked"))
		if err != nil {
			return err
		}
		for tag := range strings.FieldsSeq(string(b)) {
			acked++
			if count[tag] == 0 {
				lost++
			}
		}
	}
	fmt.Printf("  rows per node (the server that accepted them): %s\n", strings.Join(perNode, ", "))
	fmt.Printf("  rows accepted by a second writer before %s was killed: %d\n", ids[wID], second)
	fmt.Printf("  acknowledged writes: %d; lost: %d; doubled: %d\n", acked, lost, doubled)
	fmt.Printf("  (%v in all)\n", time.Since(start).Round(100*time.Millisecond))
	if lost > 0 || doubled > 0 || second > 0 {
		return fmt.Errorf("%d acknowledged writes lost, %d doubled, %d rows on a second writer", lost, doubled, second)
	}
	return nil
}

// sleep sleeps d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
