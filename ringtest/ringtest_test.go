package ringtest_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/dbrouter/dbrouter/ringtest"
)

// docker reports whether the tests run on the Docker backend
// (DBROUTER_RING_BACKEND=docker, as make test-docker sets it).
func docker() bool { return ringtest.DefaultBackend() == ringtest.BackendDocker }

// nativeOnly skips a test of native-process behaviour on the Docker backend.
func nativeOnly(t *testing.T, why string) {
	t.Helper()
	if docker() {
		t.Skipf("native backend only (running on the %s backend): %s", ringtest.DefaultBackend(), why)
	}
}

// newHarness starts a harness on the backend DBROUTER_RING_BACKEND selects;
// on the native backend a missing MariaDB server fails the test.
func newHarness(t *testing.T, opts ringtest.Options) *ringtest.Harness {
	t.Helper()
	if !docker() {
		if _, err := ringtest.FindServer(); err != nil {
			t.Fatal(err) // a missing server is a failure, not a skip: make test installs it
		}
	}
	start := time.Now()
	h := ringtest.New(t, opts)
	t.Logf("harness %dx%d started in %v", len(h.Rings()), h.Ring(0).Len(), time.Since(start).Round(time.Millisecond))
	return h
}

func timeout(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func openApp(t *testing.T, r *ringtest.Ring, i int) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(r.DSN(i))
	if err != nil {
		t.Fatal(err)
	}
	// Killing a node leaves dead idle connections, which the driver would
	// log about before transparently replacing them.
	cfg.Logger = &mysql.NopLogger{}
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	return db
}

// insert writes one row through the application user on node i and
// returns its AUTO_INCREMENT id.
func insert(t *testing.T, db *sql.DB, v string) int64 {
	t.Helper()
	res, err := db.Exec("INSERT INTO items (v) VALUES (?)", v)
	if err != nil {
		t.Fatalf("insert %q: %v", v, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// ids returns the ids in ringtest.items on node i, read as root.
func ids(t *testing.T, r *ringtest.Ring, i int) []int64 {
	t.Helper()
	rows, err := r.AdminDB(i).Query("SELECT id FROM ringtest.items ORDER BY id")
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func converge(t *testing.T, r *ringtest.Ring) {
	t.Helper()
	if err := r.WaitConverged(timeout(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
}

// wantSameRows checks that every node holds exactly want.
func wantSameRows(t *testing.T, r *ringtest.Ring, want []int64) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	for i := range r.Len() {
		if got := ids(t, r, i); !slices.Equal(got, want) {
			t.Errorf("node %d has ids %v, want %v", i, got, want)
		}
	}
}

// pids collects the server pids of every ring.
func pids(h *ringtest.Harness) []int {
	var out []int
	for _, r := range h.Rings() {
		for i := range r.Len() {
			out = append(out, r.PID(i))
		}
	}
	return out
}

// assertGone closes the harness and checks that every server process is
// gone and the base directory was removed. On the Docker backend Close
// itself fails if a container, network or volume of the harness is left.
func assertGone(t *testing.T, h *ringtest.Harness) {
	t.Helper()
	if h.Backend() == ringtest.BackendDocker {
		if err := h.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := h.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		return
	}
	ps := pids(h)
	base := h.BaseDir()
	if err := h.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, pid := range ps {
		if pid == 0 {
			t.Errorf("a server never started")
			continue
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Close (kill -0: %v)", pid, err)
		}
	}
	if _, err := os.Stat(base); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("base dir %s not removed: %v", base, err)
	}
}

func TestRing(t *testing.T) {
	h := newHarness(t, ringtest.Options{})
	r := h.Ring(0)
	if r.Name() != "ring0" || r.Len() != 3 || len(r.Addrs()) != 3 {
		t.Fatalf("ring %s with %d nodes %v", r.Name(), r.Len(), r.Addrs())
	}
	app := []*sql.DB{openApp(t, r, 0), openApp(t, r, 1), openApp(t, r, 2)}
	var all []int64

	t.Run("replicates", func(t *testing.T) {
		if _, err := app[0].Exec("CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"a", "b", "c"} {
			all = append(all, insert(t, app[0], v))
		}
		converge(t, r)
		wantSameRows(t, r, all)
	})

	t.Run("app user privileges", func(t *testing.T) {
		rows, err := app[1].Query("SHOW SLAVE STATUS")
		if err != nil {
			t.Fatalf("app user cannot read replication status: %v", err)
		}
		rows.Close()
		var pos string
		if err := app[1].QueryRow("SELECT @@gtid_current_pos").Scan(&pos); err != nil || pos == "" {
			t.Fatalf("gtid_current_pos=%q err=%v", pos, err)
		}
		_, err = app[1].Exec("CREATE DATABASE not_allowed")
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1044 { // ER_DBACCESS_DENIED_ERROR
			t.Fatalf("CREATE DATABASE by the app user: got %v, want error 1044", err)
		}
	})

	t.Run("writes on every node", func(t *testing.T) {
		for round := range 3 {
			for i, db := range app {
				id := insert(t, db, "x")
				if got, want := int(id%3), (i+1)%3; got != want {
					t.Errorf("round %d node %d: id %d, want id ≡ %d mod 3", round, i, id, want)
				}
				all = append(all, id)
			}
		}
		sorted := slices.Sorted(slices.Values(all))
		if len(slices.Compact(sorted)) != len(all) {
			t.Fatalf("duplicate ids: %v", all)
		}
		converge(t, r)
		wantSameRows(t, r, all)
	})

	t.Run("kill and restart", func(t *testing.T) {
		pid := r.PID(0)
		if err := r.Kill(0); err != nil {
			t.Fatal(err)
		}
		if r.Running(0) {
			t.Fatal("node 0 still running after Kill")
		}
		if !docker() {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Fatalf("pid %d still exists after Kill: %v", pid, err)
			}
		}
		addr := r.Addr(0)
		all = append(all, insert(t, app[1], "while 0 is down"))
		start := time.Now()
		if err := r.Restart(0); err != nil {
			t.Fatal(err)
		}
		t.Logf("Restart(0) took %v", time.Since(start).Round(time.Millisecond))
		if !r.Running(0) || r.Addr(0) != addr || r.PID(0) == pid {
			t.Fatalf("after Restart: running=%v addr=%s (was %s) pid=%d (was %d)", r.Running(0), r.Addr(0), addr, r.PID(0), pid)
		}
		converge(t, r)
		wantSameRows(t, r, all)
		// The link 0 -> 1 works again as well.
		all = append(all, insert(t, app[0], "after restart"))
		converge(t, r)
		wantSameRows(t, r, all)
	})

	t.Run("restart a running node", func(t *testing.T) {
		if err := r.Restart(2); err != nil {
			t.Fatal(err)
		}
		all = append(all, insert(t, app[2], "after restart of running node"))
		converge(t, r)
		wantSameRows(t, r, all)
	})

	t.Run("freeze and thaw", func(t *testing.T) {
		if err := r.Freeze(1); err != nil {
			t.Fatal(err)
		}
		if !r.Frozen(1) || !r.Running(1) {
			t.Fatalf("frozen=%v running=%v", r.Frozen(1), r.Running(1))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := r.AdminDB(1).PingContext(ctx)
		cancel()
		if err == nil {
			t.Error("frozen node answered a ping")
		}
		// Frozen nodes are ignored: nodes 0 and 2 agree, and node 2 is
		// not required to have a working IO thread to frozen node 1.
		converge(t, r)
		// Node 0 still takes writes; they reach node 2 only through node 1,
		// so the ring cannot converge until node 1 is thawed.
		all = append(all, insert(t, app[0], "while 1 is frozen"))
		err = r.WaitConverged(timeout(t, 300*time.Millisecond))
		if err == nil {
			t.Fatal("converged although node 2 cannot have node 0's write")
		}
		for _, want := range []string{"node 1", "frozen", "gtid_current_pos", "deadline exceeded"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("WaitConverged error lacks %q: %v", want, err)
			}
		}
		t.Logf("expected error: %v", err)
		if err := r.Thaw(1); err != nil {
			t.Fatal(err)
		}
		if r.Frozen(1) {
			t.Fatal("still frozen after Thaw")
		}
		converge(t, r)
		wantSameRows(t, r, all)
	})

	t.Run("read only", func(t *testing.T) {
		if err := r.SetReadOnly(2, true); err != nil {
			t.Fatal(err)
		}
		_, err := app[2].Exec("INSERT INTO items (v) VALUES ('refused')")
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1290 {
			t.Fatalf("insert on read-only node: got %v, want MySQL error 1290", err)
		}
		// Replication still applies writes from the other nodes.
		all = append(all, insert(t, app[0], "replicated into read-only node"))
		converge(t, r)
		wantSameRows(t, r, all)
		if err := r.SetReadOnly(2, false); err != nil {
			t.Fatal(err)
		}
		all = append(all, insert(t, app[2], "writable again"))
		converge(t, r)
		wantSameRows(t, r, all)
	})

	t.Run("gtid positions", func(t *testing.T) {
		ctx := timeout(t, 5*time.Second)
		for i := range r.Len() {
			pos, err := r.GTIDPos(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("node %d gtid_current_pos %s", i, pos)
			// Every node has written, so every node's domain is present.
			for j := range r.Len() {
				domain := strconv.Itoa(j+1) + "-"
				if !slices.ContainsFunc(strings.Split(pos, ","), func(g string) bool { return strings.HasPrefix(g, domain) }) {
					t.Errorf("node %d: position %q lacks domain of node %d", i, pos, j)
				}
			}
		}
	})

	t.Run("close", func(t *testing.T) {
		// Leave a frozen node behind: Close must kill and reap it too.
		if err := r.Freeze(2); err != nil {
			t.Fatal(err)
		}
		assertGone(t, h)
	})
}

func TestIndependentRings(t *testing.T) {
	h := newHarness(t, ringtest.Options{Clusters: 2, Nodes: 2, Database: "indep"})
	rings := h.Rings()
	if len(rings) != 2 || rings[0].Name() != "ring0" || rings[1].Name() != "ring1" {
		t.Fatalf("rings: %v", rings)
	}
	seenAddr := map[string]bool{}
	seenID := map[int]bool{}
	for _, r := range rings {
		if r.Len() != 2 {
			t.Fatalf("%s has %d nodes", r.Name(), r.Len())
		}
		for i := range r.Len() {
			if seenAddr[r.Addr(i)] {
				t.Errorf("address %s used twice", r.Addr(i))
			}
			seenAddr[r.Addr(i)] = true
			var id int
			if err := r.AdminDB(i).QueryRow("SELECT @@server_id").Scan(&id); err != nil {
				t.Fatal(err)
			}
			if seenID[id] {
				t.Errorf("server_id %d used twice", id)
			}
			seenID[id] = true
		}
	}

	r0, r1 := rings[0], rings[1]
	db := openApp(t, r0, 1)
	if _, err := db.Exec("CREATE TABLE only_ring0 (id INT AUTO_INCREMENT PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO only_ring0 () VALUES (), ()"); err != nil {
		t.Fatal(err)
	}
	converge(t, r0)
	converge(t, r1)
	var n int
	if err := r0.AdminDB(0).QueryRow("SELECT COUNT(*) FROM indep.only_ring0").Scan(&n); err != nil || n != 2 {
		t.Fatalf("ring0 node 0: count=%d err=%v", n, err)
	}
	for i := range r1.Len() {
		err := r1.AdminDB(i).QueryRow("SELECT COUNT(*) FROM indep.only_ring0").Scan(&n)
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != 1146 { // ER_NO_SUCH_TABLE
			t.Errorf("ring1 node %d sees ring0's table: err=%v", i, err)
		}
		if pos, err := r1.GTIDPos(context.Background(), i); err != nil || pos != "" {
			t.Errorf("ring1 node %d: gtid_current_pos=%q err=%v, want empty", i, pos, err)
		}
	}
	if err := r1.Freeze(0); err != nil {
		t.Fatal(err)
	}
	assertGone(t, h)
}

func TestSingleNode(t *testing.T) {
	h := newHarness(t, ringtest.Options{Nodes: 1})
	r := h.Ring(0)
	db := openApp(t, r, 0)
	if _, err := db.Exec("CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	insert(t, db, "solo")
	converge(t, r)
	if err := r.Restart(0); err != nil {
		t.Fatal(err)
	}
	wantSameRows(t, r, []int64{1})
	assertGone(t, h)
}

func TestFindServer(t *testing.T) {
	nativeOnly(t, "looks for a mariadbd binary on this machine")
	p, err := ringtest.FindServer()
	if err != nil {
		t.Fatal(err) // a missing server is a failure, not a skip: make test installs it
	}
	if fi, err := os.Stat(p); err != nil || fi.IsDir() {
		t.Fatalf("FindServer returned %q: %v", p, err)
	}
}

func TestMissingServer(t *testing.T) {
	nativeOnly(t, "Options.ServerPath names a binary on this machine")
	_, err := ringtest.Start(context.Background(), ringtest.Options{ServerPath: "/nonexistent/mariadbd"})
	if err == nil {
		t.Fatal("Start succeeded with a missing binary")
	}
	if !strings.Contains(err.Error(), "apt-get install -y mariadb-server") {
		t.Errorf("error does not say how to install: %v", err)
	}
}

// TestServersDieWithParent runs a helper copy of this test binary that
// starts a ring and is then SIGKILLed without any cleanup: the parent-death
// signal must take its servers down with it.
func TestServersDieWithParent(t *testing.T) {
	nativeOnly(t, "the parent-death signal applies to child processes, not containers (Close removes those)")
	if _, err := ringtest.FindServer(); err != nil {
		t.Fatal(err) // a missing server is a failure, not a skip: make test installs it
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanHelper$")
	cmd.Env = append(os.Environ(), "RINGTEST_ORPHAN_HELPER=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "HELPER" {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(f[1]) })
		for _, p := range f[2:] {
			pid, err := strconv.Atoi(p)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		break
	}
	if len(pids) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper printed no pids (scanner: %v)", sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("mariadbd pid %d outlived its killed parent", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestOrphanHelper is the helper process of TestServersDieWithParent.
func TestOrphanHelper(t *testing.T) {
	if os.Getenv("RINGTEST_ORPHAN_HELPER") != "1" {
		t.Skip("helper process for TestServersDieWithParent")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := h.Ring(0)
	fmt.Printf("HELPER %s %d %d\n", h.BaseDir(), r.PID(0), r.PID(1))
	select {} // wait to be killed
}

// processGone reports whether pid no longer exists or is a zombie that is
// merely waiting to be reaped by init.
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// TestPartition cuts node 0 off from its ring while the application still
// reaches it (the split-brain case), then rejoins it: the writes made on
// both sides during the partition end up on every node.
func TestPartition(t *testing.T) {
	if !docker() {
		h := newHarness(t, ringtest.Options{Nodes: 1})
		if err := h.Ring(0).Partition(0); err == nil || !strings.Contains(err.Error(), "docker backend") {
			t.Fatalf("Partition on the native backend: %v, want an error naming the docker backend", err)
		}
		return
	}
	h := newHarness(t, ringtest.Options{Nodes: 3})
	r := h.Ring(0)
	app0, app1 := openApp(t, r, 0), openApp(t, r, 1)
	if _, err := app0.Exec("CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(64) NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	all := []int64{insert(t, app0, "before")}
	converge(t, r)

	if err := r.Partition(0); err != nil {
		t.Fatal(err)
	}
	if !r.IsPartitioned(0) {
		t.Fatal("IsPartitioned(0) = false after Partition")
	}
	// Both sides take writes; neither reaches the other.
	all = append(all, insert(t, app0, "on the cut-off node"))
	all = append(all, insert(t, app1, "on the majority"))
	if err := r.WaitConverged(timeout(t, 2*time.Second)); err == nil {
		t.Fatal("ring converged across a partition")
	}
	if got := ids(t, r, 1); len(got) != 2 {
		t.Errorf("node 1 has ids %v during the partition, want its own write and the first row only", got)
	}

	if err := r.Rejoin(0); err != nil {
		t.Fatal(err)
	}
	if r.IsPartitioned(0) {
		t.Fatal("IsPartitioned(0) = true after Rejoin")
	}
	start := time.Now()
	converge(t, r)
	t.Logf("converged %v after Rejoin", time.Since(start).Round(time.Millisecond))
	wantSameRows(t, r, all)
}
