// Command failover shows dbrouter failing over on a real MariaDB ring.
//
// It starts a ring of three MariaDB servers (A→B→C→A) on loopback with
// ringtest, writes to it continuously from several goroutines through a
// dbrouter.Cluster, kills the writer (SIGKILL) after a few seconds, and
// prints a live timeline: per second, writes acknowledged, writes that were
// retried transparently on the next node, writes whose outcome is unknown,
// writes that failed, and the current writer. At the end it restarts the
// killed server, waits for the ring to converge and checks every row.
//
//	go run ./examples/failover            # or: make demo
//	go run ./examples/failover -kill-after 3s -duration 10s -writers 8
//
// While it runs, the router's Prometheus metrics are served on /metrics
// (-metrics, a loopback port by default; docs/observability.md), and at the
// end the demo prints the counters that moved.
//
// Ctrl-C stops it at any time; the servers are always removed.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbrouter/dbrouter"
	dbprom "github.com/dbrouter/dbrouter/prometheus"
	"github.com/dbrouter/dbrouter/ringtest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() {
	var (
		duration  = flag.Duration("duration", 10*time.Second, "how long to write")
		killAfter = flag.Duration("kill-after", 4*time.Second, "when to SIGKILL the writer")
		writers   = flag.Int("writers", 4, "concurrent writers")
		verbose   = flag.Bool("v", false, "show the router's log lines")
		metrics   = flag.String("metrics", "127.0.0.1:0", "address to serve Prometheus /metrics on (\"\": none)")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *duration, *killAfter, *writers, *verbose, *metrics); err != nil {
		fmt.Fprintln(os.Stderr, "failover demo:", err)
		os.Exit(1)
	}
}

// counters are one second's worth of outcomes.
type counters struct {
	ok, retried, unknown, failed atomic.Int64
}

func run(ctx context.Context, duration, killAfter time.Duration, writers int, verbose bool, metricsAddr string) error {
	fmt.Println("starting a ring of 3 MariaDB servers on loopback ...")
	h, err := ringtest.Start(ctx, ringtest.Options{Nodes: 3})
	if err != nil {
		return err
	}
	defer h.Close()
	ring := h.Ring(0)
	names := map[string]string{}
	for i, addr := range ring.Addrs() {
		names[addr] = string(rune('A' + i))
		fmt.Printf("  %s = %s\n", names[addr], addr)
	}

	logLevel := slog.LevelError + 1
	if verbose {
		logLevel = slog.LevelInfo
	}
	metrics := dbprom.New()
	r, err := dbrouter.Open(&dbrouter.Config{
		Defaults: dbrouter.Settings{User: "app", Password: "app-secret", Database: "ringtest"},
		Clusters: map[string]dbrouter.ClusterConfig{"orders": {Nodes: ring.Addrs()}},
		Logger:   slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: logLevel})),
		Observer: metrics,
	})
	if err != nil {
		return err
	}
	defer r.Close()
	metrics.SetRouter(r)
	metricsURL := ""
	if metricsAddr != "" {
		if metricsURL, err = serveMetrics(ctx, metricsAddr, metrics); err != nil {
			return err
		}
		fmt.Printf("Prometheus metrics: %s\n", metricsURL)
		defer printMetrics(metricsURL)
	}
	orders, err := r.Cluster("orders")
	if err != nil {
		return err
	}
	if _, err := orders.ExecContext(ctx, "CREATE TABLE orders (pk BIGINT AUTO_INCREMENT PRIMARY KEY, id VARCHAR(32) NOT NULL, KEY (id))"); err != nil {
		return err
	}

	var (
		mu      sync.Mutex
		acked   = map[string]bool{} // id → true if acknowledged, false if outcome unknown
		cur     atomic.Pointer[counters]
		wg      sync.WaitGroup
		lastAck atomic.Int64 // unix nanos of the latest acknowledged write
		maxGap  atomic.Int64 // longest gap between acknowledged writes since the kill
		killed  atomic.Bool
	)
	wctx, wcancel := context.WithTimeout(ctx, duration)
	defer wcancel()
	cur.Store(new(counters))
	for w := range writers {
		wg.Go(func() {
			for seq := 0; wctx.Err() == nil; seq++ {
				id := fmt.Sprintf("w%d-%d", w, seq)
				var tr dbrouter.Trace
				cctx, cancel := context.WithTimeout(dbrouter.WithTrace(ctx, &tr), 3*time.Second)
				_, err := orders.ExecContext(cctx, "INSERT INTO orders (id) VALUES (?)", id)
				cancel()
				c := cur.Load()
				switch {
				case err == nil:
					now := time.Now().UnixNano()
					if gap := now - lastAck.Swap(now); killed.Load() {
						for m := maxGap.Load(); gap > m && !maxGap.CompareAndSwap(m, gap); m = maxGap.Load() {
						}
					}
					c.ok.Add(1)
					if len(tr.Attempts) > 0 {
						c.retried.Add(1)
					}
					mu.Lock()
					acked[id] = true
					mu.Unlock()
				case errors.Is(err, dbrouter.ErrOutcomeUnknown):
					c.unknown.Add(1)
					mu.Lock()
					acked[id] = false
					mu.Unlock()
				default:
					c.failed.Add(1)
				}
			}
		})
	}

	start := time.Now()
	fmt.Printf("\nwriting with %d goroutines for %v; SIGKILL of the writer at %v\n\n", writers, duration, killAfter)
	fmt.Printf("%6s  %8s  %8s  %8s  %8s  %s\n", "time", "writes", "retried", "unknown", "failed", "writer")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	kill := time.After(killAfter)
	for sec := 1; wctx.Err() == nil; {
		select {
		case <-kill:
			w := orders.WriterAddr()
			i := int(names[w][0] - 'A')
			fmt.Printf("%5.1fs  >>> SIGKILL %s (%s, pid %d)\n", time.Since(start).Seconds(), names[w], w, ring.PID(i))
			killed.Store(true)
			if err := ring.Kill(i); err != nil {
				return err
			}
		case <-tick.C:
			c := cur.Swap(new(counters))
			fmt.Printf("%5ds  %8d  %8d  %8d  %8d  %s\n", sec, c.ok.Load(), c.retried.Load(), c.unknown.Load(), c.failed.Load(), names[orders.WriterAddr()])
			sec++
		case <-wctx.Done():
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if killed.Load() {
		fmt.Printf("\nlongest gap between two acknowledged writes after the kill: %v\n", time.Duration(maxGap.Load()).Round(time.Millisecond))
	}

	fmt.Println("\nrestarting the killed server and waiting for the ring to converge ...")
	for i := range ring.Len() {
		if !ring.Running(i) {
			if err := ring.Restart(i); err != nil {
				return err
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := ring.WaitConverged(cctx); err != nil {
		return err
	}
	return verify(cctx, ring, names, acked)
}

// verify checks on every node that each acknowledged write is there exactly
// once and that no write is doubled.
func verify(ctx context.Context, ring *ringtest.Ring, names map[string]string, acked map[string]bool) error {
	nAcked, nUnknown := 0, 0
	for _, ok := range acked {
		if ok {
			nAcked++
		} else {
			nUnknown++
		}
	}
	bad := 0
	for i := range ring.Len() {
		have, err := orderCounts(ctx, ring.AdminDB(i))
		if err != nil {
			return fmt.Errorf("verify node %s: %w", names[ring.Addr(i)], err)
		}
		missing, doubled, unknownApplied := 0, 0, 0
		for id, ok := range acked {
			switch {
			case have[id] > 1:
				doubled++
			case ok && have[id] == 0:
				missing++
			case !ok && have[id] == 1:
				unknownApplied++
			}
		}
		bad += missing + doubled
		fmt.Printf("  %s: %d rows; acknowledged writes missing: %d, doubled: %d; outcome-unknown writes applied: %d of %d\n",
			names[ring.Addr(i)], len(have), missing, doubled, unknownApplied, nUnknown)
	}
	if bad > 0 {
		return fmt.Errorf("%d acknowledged writes lost or doubled", bad)
	}
	fmt.Printf("\nOK: all %d acknowledged writes are on every node exactly once.\n", nAcked)
	return nil
}

// orderCounts returns how many rows each order id has in db.
func orderCounts(ctx context.Context, db *sql.DB) (map[string]int, error) {
	rows, err := db.QueryContext(ctx, "SELECT id, COUNT(*) FROM ringtest.orders GROUP BY id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	have := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, err
		}
		have[id] = n
	}
	return have, rows.Err() // an error that ended the iteration early
}

// serveMetrics serves the router's metrics on addr until ctx ends, and
// returns their URL.
func serveMetrics(ctx context.Context, addr string, metrics *dbprom.Collector) (string, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return "http://" + ln.Addr().String() + "/metrics", nil
}

// printMetrics prints the counters of one scrape of url that tell the
// failover's story: writer changes, calls by outcome, retries.
func printMetrics(url string) {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Println("metrics:", err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fmt.Println("metrics:", err)
		return
	}
	fmt.Printf("\nFrom %s:\n", url)
	for line := range strings.Lines(string(body)) {
		for _, name := range []string{"dbrouter_writer_changes_total", "dbrouter_calls_total", "dbrouter_retries_total", "dbrouter_writer{"} {
			if strings.HasPrefix(line, name) {
				fmt.Print("  ", line)
			}
		}
	}
}
