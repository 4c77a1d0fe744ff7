package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

// Torture test settings, from the environment:
//
//	TORTURE_SEED=N          re-run a seed (the test prints its seed)
//	TORTURE_DURATION=60s    how long the writers and the nemesis run
//	TORTURE_BINLOG=MIXED    binlog format of the writers' sessions (see below)
//	TORTURE_FAULTS=kill,freeze,cut,read-only   the faults to pick from ("none": no faults)
const (
	tortureWriters  = 16
	tortureAccounts = 100
	tortureBalance  = 1000
)

// outcome classes of one call, as the caller sees them.
const (
	outOK      = "ok"
	outNotSent = "not sent"
	outUnknown = "outcome unknown"
	outServer  = "server error"
	outOther   = "other"
)

// tortureOp is one call of a writer.
type tortureOp struct {
	kind    string // "insert" or "transfer"
	id      string // insert: the row's client-generated id
	start   time.Time
	end     time.Time
	outcome string
	retried bool // ok after a failed attempt (another node, or a re-run transaction)
	err     error

	from, to, amount int // transfer
	node             string
}

func classifyOutcome(err error) string {
	var me *mysql.MySQLError
	switch {
	case err == nil:
		return outOK
	case errors.Is(err, dbrouter.ErrOutcomeUnknown):
		return outUnknown
	case errors.Is(err, dbrouter.ErrNotSent):
		return outNotSent
	case errors.As(err, &me):
		return outServer
	}
	return outOther
}

// TestTorture proves "nothing lost, nothing doubled" with a checker, the
// way database testers do: 16 writers on a 3-node ring, each doing an INSERT
// of a client-generated unique id and a RunInTx money transfer between two
// accounts, while a nemesis kills and restarts, freezes and thaws, cuts and
// heals, or makes read-only whichever node is the writer, every few
// seconds. Afterwards, on the converged ring: every acknowledged id is on
// every node exactly once, every not-sent id is nowhere, every
// outcome-unknown id is on every node at most once (and the same on all),
// the sum of the balances is unchanged on every node, and every table has
// the same checksum on every node.
//
// The fault schedule (kinds, targets as "the writer", timings) and the
// writers' transfers derive from the seed, so a failing seed replays the
// same schedule; the interleaving with the servers is not deterministic.
//
// Transfers are deltas (balance = balance - ?) and the ring logs in MIXED
// format (ringtest's default, as MariaDB's), so that a transaction that a
// failed writer committed but had not yet shipped when the next writer took
// over merges correctly when it arrives later: circular asynchronous
// replication cannot order such concurrent writes. With ROW images each
// node would keep whichever after-image it applied last, and balances
// diverge: this test caught exactly that when ringtest used ROW. See README
// "Consistency under failover".
func TestTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("torture test runs for a minute; run without -short")
	}
	seed := time.Now().UnixNano() % 1_000_000_000
	if s := os.Getenv("TORTURE_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("TORTURE_SEED=%q: %v", s, err)
		}
	}
	duration := 60 * time.Second
	if s := os.Getenv("TORTURE_DURATION"); s != "" {
		var err error
		if duration, err = time.ParseDuration(s); err != nil {
			t.Fatalf("TORTURE_DURATION=%q: %v", s, err)
		}
	}
	binlog := strings.ToUpper(os.Getenv("TORTURE_BINLOG")) // "": the servers' (MIXED)
	t.Logf("torture seed %d: re-run with TORTURE_SEED=%d go test -run TestTorture -v ./integration", seed, seed)

	h := ringtest.New(t, ringtest.Options{Nodes: 3, Proxy: true, Password: ringPassword})
	ring := h.Ring(0)
	ctx := testContext(t, duration+5*time.Minute)

	// Schema and accounts, through node 0 as root; replication spreads them.
	admin := ring.AdminDB(0)
	for _, q := range []string{
		"GRANT BINLOG ADMIN ON *.* TO 'app'@'%'", // to set the session's binlog_format (TORTURE_BINLOG)
		"CREATE TABLE ringtest.items (pk BIGINT AUTO_INCREMENT PRIMARY KEY, id VARCHAR(32) NOT NULL, KEY (id))",
		"CREATE TABLE ringtest.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)",
		// The ledger: one row per transfer, written in the transfer's own
		// transaction, so each node's balances can be checked against the
		// transfers it applied.
		"CREATE TABLE ringtest.transfers (pk BIGINT AUTO_INCREMENT PRIMARY KEY, id VARCHAR(32) NOT NULL, src INT NOT NULL, dst INT NOT NULL, amount INT NOT NULL, KEY (id))",
	} {
		_, err := admin.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	var values []string
	for i := range tortureAccounts {
		values = append(values, fmt.Sprintf("(%d, %d)", i, tortureBalance))
	}
	_, err := admin.ExecContext(ctx, "INSERT INTO ringtest.accounts VALUES "+strings.Join(values, ","))
	require.NoError(t, err)
	require.NoError(t, ring.WaitConverged(ctx))

	var writerChanges atomic.Int64
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: ringPassword, Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{"ring": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.DiscardHandler),
		OnEvent: func(ev dbrouter.Event) {
			if ev.Kind == dbrouter.EventWriter {
				writerChanges.Add(1)
			}
		},
	}
	if binlog != "" {
		cfg.Defaults.Params = map[string]string{"binlog_format": "'" + binlog + "'"}
	} else {
		binlog = "MIXED (server default)"
	}
	r, err := dbrouter.Open(cfg)
	require.NoError(t, err)
	defer r.Close()
	c, _ := r.Cluster("ring")

	// The writers.
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		ops  = make([][]tortureOp, tortureWriters)
	)
	begin := time.Now()
	for w := range tortureWriters {
		rng := rand.New(rand.NewPCG(uint64(seed), uint64(w+1)))
		wg.Go(func() {
			for seq := 0; !stop.Load(); seq++ {
				ops[w] = append(ops[w], tortureInsert(ctx, c, fmt.Sprintf("w%02d-%06d", w, seq)))
				from, to := rng.IntN(tortureAccounts), rng.IntN(tortureAccounts-1)
				if to >= from {
					to++
				}
				ops[w] = append(ops[w], tortureTransfer(ctx, c, fmt.Sprintf("t%02d-%06d", w, seq), from, to, 1+rng.IntN(50)))
			}
		})
	}

	// The nemesis: one fault at a time on whichever node is writer.
	type fault struct {
		kind   string
		node   int
		at     time.Duration
		held   time.Duration
		writer string // writer after the fault was repaired
	}
	var faults []fault
	nrng := rand.New(rand.NewPCG(uint64(seed), 0))
	kinds := []string{"kill", "freeze", "cut", "read-only"}
	if s := os.Getenv("TORTURE_FAULTS"); s != "" {
		kinds = strings.Split(s, ",")
		for _, k := range kinds {
			if !slices.Contains([]string{"kill", "freeze", "cut", "read-only", "none"}, k) {
				t.Fatalf("TORTURE_FAULTS: unknown fault %q (kill, freeze, cut, read-only, none)", k)
			}
		}
	}
	deadline := begin.Add(duration)
	nemesisErr := func() error {
		for {
			pause := time.Duration(1000+nrng.IntN(1500)) * time.Millisecond
			held := time.Duration(1000+nrng.IntN(2000)) * time.Millisecond
			kind := kinds[nrng.IntN(len(kinds))]
			if time.Now().Add(pause + held).After(deadline) {
				return nil
			}
			time.Sleep(pause)
			node := slices.Index(ring.Addrs(), c.WriterAddr())
			if node < 0 {
				node = 0
			}
			f := fault{kind: kind, node: node, at: time.Since(begin).Round(time.Millisecond), held: held}
			var inject, repair func(int) error
			switch kind {
			case "kill":
				inject, repair = ring.Kill, ring.Restart
			case "freeze":
				inject, repair = ring.Freeze, ring.Thaw
			case "cut":
				inject, repair = ring.Cut, ring.Heal
			case "read-only":
				inject = func(i int) error { return ring.SetReadOnly(i, true) }
				repair = func(i int) error { return ring.SetReadOnly(i, false) }
			case "none":
				inject = func(int) error { return nil }
				repair = inject
			}
			if err := inject(node); err != nil {
				return fmt.Errorf("%s node %d: %w", kind, node, err)
			}
			time.Sleep(held)
			if err := repair(node); err != nil {
				return fmt.Errorf("repair %s node %d: %w", kind, node, err)
			}
			f.writer = c.WriterAddr()
			faults = append(faults, f)
		}
	}()
	if d := time.Until(deadline); d > 0 {
		time.Sleep(d)
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(begin)
	if nemesisErr != nil {
		t.Fatalf("nemesis: %v", nemesisErr)
	}
	for _, f := range faults {
		t.Logf("fault at %7v: %-9s node %d for %v; writer afterwards %s", f.at, f.kind, f.node, f.held, f.writer)
	}

	// Every node back and converged.
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	require.NoError(t, ring.WaitConverged(cctx))

	// The checker.
	var (
		all                        []tortureOp
		byOutcome                  = map[string]map[string]int{"insert": {}, "transfer": {}}
		retried                    int
		acked, notSent, unknownIDs []string
		otherErrs                  []string
	)
	for _, w := range ops {
		all = append(all, w...)
	}
	for _, op := range all {
		byOutcome[op.kind][op.outcome]++
		if op.retried {
			retried++
		}
		if op.outcome == outServer || op.outcome == outOther {
			if len(otherErrs) < 10 {
				otherErrs = append(otherErrs, fmt.Sprintf("%s %s: %v", op.kind, op.id, op.err))
			}
		}
		if op.kind != "insert" {
			continue
		}
		switch op.outcome {
		case outOK:
			acked = append(acked, op.id)
		case outNotSent:
			notSent = append(notSent, op.id)
		default:
			unknownIDs = append(unknownIDs, op.id)
		}
	}
	counts := make([]map[string]int, ring.Len())
	var sums []int64
	checksums := map[string][]int64{}
	for i := range ring.Len() {
		counts[i] = map[string]int{}
		rows, err := ring.AdminDB(i).QueryContext(ctx, "SELECT id, COUNT(*) FROM ringtest.items GROUP BY id")
		require.NoError(t, err)
		for rows.Next() {
			var id string
			var n int
			require.NoError(t, rows.Scan(&id, &n))
			counts[i][id] = n
		}
		rows.Close()
		var sum int64
		require.NoError(t, ring.AdminDB(i).QueryRowContext(ctx, "SELECT SUM(balance) FROM ringtest.accounts").Scan(&sum))
		sums = append(sums, sum)
		for _, table := range []string{"items", "accounts", "transfers"} {
			var name string
			var cs int64
			require.NoError(t, ring.AdminDB(i).QueryRowContext(ctx, "CHECKSUM TABLE ringtest."+table).Scan(&name, &cs))
			checksums[table] = append(checksums[table], cs)
		}
	}
	var lost, doubled, notSentApplied, unknownApplied, unknownDoubled int
	for i := range ring.Len() {
		for _, id := range acked {
			switch n := counts[i][id]; {
			case n == 0:
				lost++
				if lost <= 5 {
					t.Errorf("node %d: acknowledged id %s is missing", i, id)
				}
			case n > 1:
				doubled++
				t.Errorf("node %d: acknowledged id %s is there %d times", i, id, n)
			}
		}
		for _, id := range notSent {
			if counts[i][id] != 0 {
				notSentApplied++
				t.Errorf("node %d: id %s failed as not sent but is there", i, id)
			}
		}
		for _, id := range unknownIDs {
			if n := counts[i][id]; n > 1 {
				unknownDoubled++
				t.Errorf("node %d: outcome-unknown id %s is there %d times", i, id, n)
			} else if i == 0 {
				unknownApplied += n
			}
			if counts[i][id] != counts[0][id] {
				t.Errorf("outcome-unknown id %s: %d on node %d, %d on node 0", id, counts[i][id], i, counts[0][id])
			}
		}
	}
	want := int64(tortureAccounts * tortureBalance)
	for i, s := range sums {
		if s != want {
			t.Errorf("node %d: sum of balances %d, want %d", i, s, want)
		}
	}
	for table, cs := range checksums {
		if slices.Min(cs) != slices.Max(cs) {
			t.Errorf("table %s diverged: checksums %v", table, cs)
		}
	}
	checkLedger(t, ctx, ring, all)
	for _, e := range otherErrs {
		t.Errorf("unexpected error: %s", e)
	}

	// Longest gap between two acknowledged calls.
	var ends []time.Time
	for _, op := range all {
		if op.outcome == outOK {
			ends = append(ends, op.end)
		}
	}
	slices.SortFunc(ends, func(a, b time.Time) int { return a.Compare(b) })
	var stall time.Duration
	var stallAt time.Time
	for i := 1; i < len(ends); i++ {
		if d := ends[i].Sub(ends[i-1]); d > stall {
			stall, stallAt = d, ends[i-1]
		}
	}
	faultCount := map[string]int{}
	for _, f := range faults {
		faultCount[f.kind]++
	}

	var b strings.Builder
	fmt.Fprintf(&b, "torture summary (seed %d, %v, %d writers, binlog %s)\n", seed, elapsed.Round(time.Second), tortureWriters, binlog)
	fmt.Fprintf(&b, "  %-9s %8s %8s %10s %8s %8s\n", "op", "ok", "not sent", "unknown", "server", "other")
	for _, kind := range []string{"insert", "transfer"} {
		o := byOutcome[kind]
		fmt.Fprintf(&b, "  %-9s %8d %8d %10d %8d %8d\n", kind, o[outOK], o[outNotSent], o[outUnknown], o[outServer], o[outOther])
	}
	fmt.Fprintf(&b, "  ok after a transparent retry (next node or transaction re-run): %d\n", retried)
	fmt.Fprintf(&b, "  faults injected: %d (kill %d, freeze %d, cut %d, read-only %d); writer changes seen: %d\n",
		len(faults), faultCount["kill"], faultCount["freeze"], faultCount["cut"], faultCount["read-only"], writerChanges.Load())
	fmt.Fprintf(&b, "  max write stall: %v (after %v)\n", stall.Round(time.Millisecond), stallAt.Sub(begin).Round(time.Millisecond))
	fmt.Fprintf(&b, "  check on %d nodes: acknowledged ids %d, lost %d, doubled %d; not-sent ids %d, applied %d; outcome-unknown ids %d, applied %d, doubled %d\n",
		ring.Len(), len(acked), lost, doubled, len(notSent), notSentApplied, len(unknownIDs), unknownApplied, unknownDoubled)
	fmt.Fprintf(&b, "  sum of balances per node: %v (want %d); ledgers match balances: %v\n", sums, want, !t.Failed())
	fmt.Fprintf(&b, "  checksums per node: items %v, accounts %v, transfers %v",
		checksums["items"], checksums["accounts"], checksums["transfers"])
	t.Log("\n" + b.String())
	if len(faults) < 3 {
		t.Errorf("only %d faults injected", len(faults))
	}
	if len(acked) == 0 {
		t.Error("no write was acknowledged")
	}
}

func tortureInsert(ctx context.Context, c *dbrouter.Cluster, id string) tortureOp {
	op := tortureOp{kind: "insert", id: id, start: time.Now()}
	var tr dbrouter.Trace
	cctx, cancel := context.WithTimeout(dbrouter.WithTrace(ctx, &tr), 10*time.Second)
	defer cancel()
	_, op.err = c.ExecContext(cctx, "INSERT INTO items (id) VALUES (?)", id)
	op.end = time.Now()
	op.outcome = classifyOutcome(op.err)
	op.retried = op.err == nil && len(tr.Attempts) > 0
	return op
}

func tortureTransfer(ctx context.Context, c *dbrouter.Cluster, id string, from, to, amount int) tortureOp {
	op := tortureOp{kind: "transfer", id: id, start: time.Now(), from: from, to: to, amount: amount}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	runs := 0
	op.err = c.RunInTx(cctx, nil, func(ctx context.Context, tx *dbrouter.Tx) error {
		runs++
		op.node = tx.Node()
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance - ? WHERE id = ?", amount, from); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "UPDATE accounts SET balance = balance + ? WHERE id = ?", amount, to); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO transfers (id, src, dst, amount) VALUES (?, ?, ?, ?)", id, from, to, amount)
		return err
	})
	op.end = time.Now()
	op.outcome = classifyOutcome(op.err)
	op.retried = op.err == nil && runs > 1
	return op
}

// checkLedger checks on every node that the balances are what the node's
// own ledger of transfers says (each transfer applied whole, or not at
// all), and that every acknowledged transfer is in every node's ledger
// exactly once and every not-sent one in none.
func checkLedger(t *testing.T, ctx context.Context, ring *ringtest.Ring, all []tortureOp) {
	t.Helper()
	for i := range ring.Len() {
		db := ring.AdminDB(i)
		want := map[int]int64{}
		for a := range tortureAccounts {
			want[a] = tortureBalance
		}
		seen := map[string]int{}
		rows, err := db.QueryContext(ctx, "SELECT id, src, dst, amount FROM ringtest.transfers")
		require.NoError(t, err)
		for rows.Next() {
			var id string
			var src, dst, amount int
			require.NoError(t, rows.Scan(&id, &src, &dst, &amount))
			seen[id]++
			want[src] -= int64(amount)
			want[dst] += int64(amount)
		}
		rows.Close()
		rows, err = db.QueryContext(ctx, "SELECT id, balance FROM ringtest.accounts")
		require.NoError(t, err)
		bad := 0
		for rows.Next() {
			var a int
			var b int64
			require.NoError(t, rows.Scan(&a, &b))
			if b != want[a] {
				bad++
				if bad <= 5 {
					t.Errorf("node %d: account %d has %d, its ledger says %d", i, a, b, want[a])
				}
			}
		}
		rows.Close()
		if bad > 0 {
			t.Errorf("node %d: %d accounts disagree with the node's own ledger: a transfer was applied in part", i, bad)
		}
		var lost, doubled, notSentApplied int
		for _, op := range all {
			if op.kind != "transfer" {
				continue
			}
			switch n := seen[op.id]; {
			case n > 1:
				doubled++
			case op.outcome == outOK && n == 0:
				lost++
			case op.outcome == outNotSent && n > 0:
				notSentApplied++
			}
		}
		if lost+doubled+notSentApplied > 0 {
			t.Errorf("node %d ledger: acknowledged transfers missing %d, transfers applied twice %d, not-sent transfers applied %d", i, lost, doubled, notSentApplied)
		}
	}
}

// explainDivergence logs the accounts whose balances differ between nodes
// and the transfers that could explain each difference.
func explainDivergence(t *testing.T, ctx context.Context, ring *ringtest.Ring, all []tortureOp, begin time.Time) {
	bal := make([]map[int]int64, ring.Len())
	for i := range ring.Len() {
		bal[i] = map[int]int64{}
		rows, err := ring.AdminDB(i).QueryContext(ctx, "SELECT id, balance FROM ringtest.accounts")
		if err != nil {
			t.Log(err)
			return
		}
		for rows.Next() {
			var id int
			var b int64
			rows.Scan(&id, &b)
			bal[i][id] = b
		}
		rows.Close()
	}
	for i := 1; i < ring.Len(); i++ {
		for id := range tortureAccounts {
			d := bal[i][id] - bal[0][id]
			if d == 0 {
				continue
			}
			t.Logf("account %d: node %d has %d, node 0 has %d (diff %+d)", id, i, bal[i][id], bal[0][id], d)
			for _, op := range all {
				if op.kind == "transfer" && (op.from == id || op.to == id) && (int64(op.amount) == d || int64(op.amount) == -d) {
					t.Logf("  candidate: transfer %d→%d amount %d at %v on %s: %s %v",
						op.from, op.to, op.amount, op.start.Sub(begin).Round(time.Millisecond), op.node, op.outcome, op.err)
				}
			}
		}
	}
}
