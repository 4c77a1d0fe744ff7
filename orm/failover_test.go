package orm

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
)

// outcome is what a write's error said of it.
type outcome int

const (
	acked   outcome = iota // no error
	unknown                // matches dbrouter.ErrOutcomeUnknown
	notSent                // matches dbrouter.ErrNotSent
)

// tally records one library's writes during one fault.
type tally struct {
	mu       sync.Mutex
	single   map[string]outcome // id → outcome of a single INSERT
	txs      map[string]outcome // id → outcome of the transaction writing id-a and id-b
	total    atomic.Int64
	afterOK  atomic.Int64 // acknowledged after the fault
	firstErr atomic.Value // an error that matched neither class
}

// TestORMFailover runs gorm, sqlc-style code, sqlx and bun at once, two
// writers each, against one real ring, and kills (SIGKILL) then freezes
// (SIGSTOP) the writer under their writes. For every library: no
// acknowledged write is lost or doubled on any node, every failed write's
// error — as the library returns it — matches dbrouter.ErrOutcomeUnknown
// or dbrouter.ErrNotSent, and every transaction is whole on one server or
// absent: never half of it, never its halves on two servers. A
// transaction per library, open on the writer across the fault (one
// INSERT before, one after), fails with a typed error and leaves no row. One ring
// serves both faults and all four libraries, to keep the test short.
func TestORMFailover(t *testing.T) {
	ring, r, c := startRing(t, 3, func(cfg *dbrouter.Config) { cfg.Defaults.ReadPolicy = dbrouter.ReadRoundRobin })
	require.NoError(t, dbrouter.RegisterRouter("ormtest", r))
	t.Cleanup(func() { dbrouter.DeregisterRouter("ormtest") })
	clients := make([]client, len(libraries))
	for i, l := range libraries {
		clients[i] = l.open(t, r)
	}
	for _, f := range []struct {
		name           string
		fault, recover func(*ringtest.Ring, int) error
	}{
		{"kill", (*ringtest.Ring).Kill, (*ringtest.Ring).Restart},
		{"freeze", (*ringtest.Ring).Freeze, (*ringtest.Ring).Thaw},
	} {
		ok := t.Run(f.name, func(t *testing.T) {
			faultUnderLoad(t, ring, clients, f.name, f.fault, f.recover)
		})
		if !ok {
			return
		}
		waitSettled(t, ring, c)
	}
	t.Run("read-db", func(t *testing.T) { readDB(t, ring, r) })
}

func faultUnderLoad(t *testing.T, ring *ringtest.Ring, clients []client, name string, fault, recover func(*ringtest.Ring, int) error) {
	ctx := testContext(t, 90*time.Second)
	const writers = 2 // per library
	tallies := make([]*tally, len(clients))
	var (
		faulted atomic.Bool
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	defer func() { // also when a require fails: no write outlives the test
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	for li, cl := range clients {
		tl := &tally{single: map[string]outcome{}, txs: map[string]outcome{}}
		tallies[li] = tl
		for w := range writers {
			wg.Go(func() {
				for seq := 0; ; seq++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("%s-%s-w%d-%05d", name, libraries[li].name, w, seq)
					cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					isTx := seq%4 == 3
					var err error
					if isTx {
						err = cl.tx(cctx, id+"-a", id+"-b", w, nil)
					} else {
						err = cl.insert(cctx, id, w)
					}
					cancel()
					o := acked
					switch {
					case err == nil:
					case errors.Is(err, dbrouter.ErrOutcomeUnknown):
						o = unknown
					case errors.Is(err, dbrouter.ErrNotSent):
						o = notSent
					default:
						tl.firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", id, err))
						continue
					}
					if err != nil {
						assertNoPassword(t, err)
						if errors.Is(err, driver.ErrBadConn) && o == unknown {
							t.Errorf("%s: an outcome-unknown error matches driver.ErrBadConn: %v", id, err)
						}
						t.Logf("%s: %v", id, err)
					}
					tl.mu.Lock()
					if isTx {
						tl.txs[id] = o
					} else {
						tl.single[id] = o
					}
					tl.mu.Unlock()
					tl.total.Add(1)
					if err == nil && faulted.Load() {
						tl.afterOK.Add(1)
					}
				}
			})
		}
	}
	each := func(f func(*tally) bool) func() bool {
		return func() bool {
			for _, tl := range tallies {
				if !f(tl) {
					return false
				}
			}
			return true
		}
	}
	// One transaction per library is open on the writer across the
	// fault: its first INSERT before, its second after.
	held := make([]chan error, len(clients))
	began := make(chan struct{}, len(clients))
	resume := make(chan struct{})
	var resumeOnce sync.Once
	defer resumeOnce.Do(func() { close(resume) }) // also when a require fails
	for li, cl := range clients {
		held[li] = make(chan error, 1)
		id := fmt.Sprintf("held-%s-%s", name, libraries[li].name)
		go func() {
			cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			held[li] <- cl.tx(cctx, id+"-a", id+"-b", 9, func() { began <- struct{}{}; <-resume })
		}()
	}
	for range clients {
		select {
		case <-began:
		case <-ctx.Done():
			t.Fatal("the held transactions did not begin")
		}
	}
	require.Eventually(t, each(func(tl *tally) bool { return tl.total.Load() >= 40 }), waitTimeout, tick, "40 writes per library before the %s", name)
	at := time.Now()
	require.NoError(t, fault(ring, 0))
	faulted.Store(true)
	resumeOnce.Do(func() { close(resume) })
	for li := range clients {
		err := <-held[li]
		lib := libraries[li].name
		t.Logf("%s: transaction open across the %s: %v", lib, name, err)
		if err == nil || !errors.Is(err, dbrouter.ErrOutcomeUnknown) && !errors.Is(err, dbrouter.ErrNotSent) {
			t.Errorf("%s: transaction open across the %s: %v, want an error matching ErrOutcomeUnknown or ErrNotSent", lib, name, err)
		}
	}
	require.Eventually(t, each(func(tl *tally) bool { return tl.afterOK.Load() >= 40 }), waitTimeout, tick, "40 writes per library after the %s", name)
	close(stop)
	wg.Wait()
	t.Logf("%s to 40 acknowledged writes per library: %v", name, time.Since(at).Round(time.Millisecond))
	for li, tl := range tallies {
		if err, _ := tl.firstErr.Load().(error); err != nil {
			t.Errorf("%s: a write failed with an unclassified error: %v", libraries[li].name, err)
		}
	}
	require.NoError(t, recover(ring, 0))
	require.NoError(t, ring.WaitConverged(ctx))

	nodes := make([]map[string]stored, ring.Len())
	for i := range nodes {
		nodes[i] = rowsOn(t, ring, i)
	}
	for li, tl := range tallies {
		lib := libraries[li].name
		for i, rows := range nodes {
			id := fmt.Sprintf("held-%s-%s", name, lib)
			if a, b := rows[id+"-a"], rows[id+"-b"]; a.rows != 0 || b.rows != 0 {
				t.Errorf("node %d: %s: the transaction open across the %s left rows: a %+v, b %+v", i, lib, name, a, b)
			}
		}
		t.Run(lib, func(t *testing.T) {
			checkTally(t, name, lib, tl, nodes)
			// Read back through the library itself: every acknowledged
			// id is there.
			ids, err := clients[li].list(ctx, name+"-"+lib+"-")
			require.NoError(t, err)
			for id, o := range tl.single {
				if o == acked && !slices.Contains(ids, id) {
					t.Errorf("acknowledged %s not read back through %s", id, lib)
				}
			}
		})
	}
}

// checkTally compares one library's outcomes with what every node holds.
func checkTally(t *testing.T, fault, lib string, tl *tally, nodes []map[string]stored) {
	count := map[outcome]int{}
	for _, o := range tl.single {
		count[o]++
	}
	for _, o := range tl.txs {
		count[o]++
	}
	var lost, doubled, unknownApplied, split int
	prefix := fault + "-" + lib + "-"
	for i, rows := range nodes {
		for id, o := range tl.single {
			n := rows[id].rows
			switch {
			case n > 1:
				doubled++
				t.Errorf("node %d: %s written %d times", i, id, n)
			case o == acked && n != 1:
				lost++
				t.Errorf("node %d: acknowledged %s is missing", i, id)
			case o == notSent && n != 0:
				t.Errorf("node %d: %s was reported not sent but exists", i, id)
			case o == unknown && n == 1 && i == 0:
				unknownApplied++
			}
		}
		for id, o := range tl.txs {
			a, b := rows[id+"-a"], rows[id+"-b"]
			switch {
			case a.rows != b.rows || a.rows > 0 && a.node != b.node:
				split++
				t.Errorf("node %d: transaction %s split: a %+v, b %+v", i, id, a, b)
			case a.rows > 1:
				doubled++
				t.Errorf("node %d: transaction %s applied %d times", i, id, a.rows)
			case o == acked && a.rows != 1:
				lost++
				t.Errorf("node %d: acknowledged transaction %s is missing", i, id)
			case o == notSent && a.rows != 0:
				t.Errorf("node %d: transaction %s was reported not sent but exists", i, id)
			case o == unknown && a.rows == 1 && i == 0:
				unknownApplied++
			}
		}
		var mine int
		for id := range rows {
			if strings.HasPrefix(id, prefix) {
				mine++
			}
		}
		require.LessOrEqual(t, mine, len(tl.single)+2*len(tl.txs), "node %d has ids nobody wrote", i)
	}
	t.Logf("%s %s: %d acknowledged (%d transactions of 2 rows among %d), lost %d, doubled %d, split transactions %d, outcome unknown %d (%d applied), not sent %d",
		fault, lib, count[acked], countOf(tl.txs, acked), len(tl.txs), lost, doubled, split, count[unknown], unknownApplied, count[notSent])
}

func countOf(m map[string]outcome, o outcome) int {
	n := 0
	for _, v := range m {
		if v == o {
			n++
		}
	}
	return n
}

// readDB checks Router.OpenReadDB on the ring (read_policy round-robin):
// its connections spread over the Up nodes in read-only sessions, reads
// work through sqlx, and a write through it is the server's refusal,
// applied nowhere.
func readDB(t *testing.T, ring *ringtest.Ring, r *dbrouter.Router) {
	ctx := testContext(t, 30*time.Second)
	db, err := r.OpenReadDB("ring")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	servers := map[int]bool{}
	for range 3 {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		var id int
		require.NoError(t, conn.QueryRowContext(ctx, "SELECT @@server_id").Scan(&id))
		servers[id] = true
	}
	require.GreaterOrEqual(t, len(servers), 2, "read connections on %d servers", len(servers))
	x := sqlx.NewDb(db, "mysql")
	var n int
	require.NoError(t, x.GetContext(ctx, &n, "SELECT COUNT(*) FROM t"))
	require.Positive(t, n)
	_, err = x.ExecContext(ctx, "INSERT INTO t (id) VALUES ('read-db-write')")
	require.Error(t, err, "a write on a read-only session")
	require.False(t, errors.Is(err, dbrouter.ErrOutcomeUnknown) || errors.Is(err, dbrouter.ErrNotSent) || errors.Is(err, driver.ErrBadConn), "%v", err)
	t.Logf("write through OpenReadDB: %v", err)
	require.NoError(t, ring.WaitConverged(ctx))
	for i := range ring.Len() {
		require.Zero(t, rowsOn(t, ring, i)["read-db-write"].rows, "node %d", i)
	}
}
