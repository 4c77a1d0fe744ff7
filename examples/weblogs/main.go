// Command weblogs shows a directory shard map: five web servers, each
// writing its access log to its own three-node MariaDB ring.
//
// It starts five rings of three MariaDB servers on loopback with ringtest,
// opens one router whose "weblogs" shard map sends web1's rows to logs-1,
// web2's to logs-2 and so on, and runs one ingester per web server that
// inserts access-log rows through r.Route("weblogs", server). Halfway
// through it kills the writer of web3's ring: web3's ingester carries on
// on the ring's next node. At the end it answers "hits per status across
// all web servers" with one query per cluster through Router.Each, and
// checks that every acknowledged row is there exactly once.
//
//	go run ./examples/weblogs
//	go run ./examples/weblogs -duration 5s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/dbrouter/dbrouter"
	"github.com/dbrouter/dbrouter/ringtest"
)

func main() {
	duration := flag.Duration("duration", 3*time.Second, "how long the ingesters write")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *duration); err != nil {
		fmt.Fprintln(os.Stderr, "weblogs:", err)
		os.Exit(1)
	}
}

const webServers = 5

// ingestStats counts one ingester's outcomes.
type ingestStats struct {
	acked   []int64 // ids acknowledged
	unknown int     // outcome unknown: may or may not be stored
	failed  int     // not stored
}

func run(ctx context.Context, out io.Writer, duration time.Duration) error {
	fmt.Fprintf(out, "starting %d rings of 3 MariaDB servers on loopback ...\n", webServers)
	h, err := ringtest.Start(ctx, ringtest.Options{Clusters: webServers, Nodes: 3})
	if err != nil {
		return err
	}
	defer h.Close()

	// The configuration as a Go struct literal: one cluster per web
	// server, and a directory map from server name to cluster.
	cfg := &dbrouter.Config{
		Defaults: dbrouter.Settings{User: ringtest.DefaultUser, Password: ringtest.DefaultPassword, Database: ringtest.DefaultDatabase},
		Clusters: map[string]dbrouter.ClusterConfig{},
		ShardMaps: map[string]dbrouter.ShardMapConfig{
			"weblogs": {Strategy: dbrouter.StrategyDirectory, Entries: map[string]string{}},
		},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for i := range webServers {
		web, cluster := fmt.Sprintf("web%d", i+1), fmt.Sprintf("logs-%d", i+1)
		cfg.Clusters[cluster] = dbrouter.ClusterConfig{Nodes: h.Ring(i).Addrs()}
		cfg.ShardMaps["weblogs"].Entries[web] = cluster
	}
	r, err := dbrouter.Open(cfg)
	if err != nil {
		return err
	}
	defer r.Close()

	// The same schema on every cluster, through the fan-out.
	err = r.Each(ctx, "weblogs", 0, func(ctx context.Context, c *dbrouter.Cluster) error {
		_, err := c.ExecContext(ctx, `CREATE TABLE access_log (
			id BIGINT PRIMARY KEY, server VARCHAR(16) NOT NULL, path VARCHAR(255) NOT NULL,
			status SMALLINT NOT NULL, bytes INT NOT NULL, at DATETIME(6) NOT NULL)`)
		return err
	})
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "%d ingesters writing for %v; web3's writer is killed halfway\n", webServers, duration)
	stats := make([]ingestStats, webServers)
	var wg sync.WaitGroup
	end := time.Now().Add(duration)
	for i := range webServers {
		wg.Go(func() { stats[i] = ingest(ctx, end, r, fmt.Sprintf("web%d", i+1), int64(i+1)<<40) })
	}
	select {
	case <-time.After(duration / 2):
		if err := h.Ring(2).Kill(0); err != nil {
			return err
		}
		fmt.Fprintf(out, "  killed web3's writer %s\n", h.Ring(2).Addr(0))
	case <-ctx.Done():
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}

	// Summary by fan-out: hits per status on every cluster, summed.
	var mu sync.Mutex
	byStatus := map[int]int{}
	err = r.Each(ctx, "weblogs", 0, func(ctx context.Context, c *dbrouter.Cluster) error {
		rows, err := c.QueryContext(ctx, "SELECT status, COUNT(*) FROM access_log GROUP BY status")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var status, n int
			if err := rows.Scan(&status, &n); err != nil {
				return err
			}
			mu.Lock()
			byStatus[status] += n
			mu.Unlock()
		}
		return rows.Err()
	})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nserver  cluster  acknowledged  unknown  failed  writer now")
	for i, s := range stats {
		c, err := r.Route("weblogs", fmt.Sprintf("web%d", i+1))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "web%-4d %-8s %12d %8d %7d  %s\n", i+1, c.Name(), len(s.acked), s.unknown, s.failed, c.WriterAddr())
	}
	fmt.Fprint(out, "\nhits across all web servers by status (Router.Each):")
	for _, st := range slices.Sorted(func(yield func(int) bool) {
		for k := range byStatus {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(out, "  %d: %d", st, byStatus[st])
	}
	fmt.Fprintln(out)

	// Check: each acknowledged row is on its own cluster exactly once.
	// Replication is asynchronous, so first bring the killed server back
	// and let web3's ring converge.
	if err := h.Ring(2).Restart(0); err != nil {
		return err
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	if err := h.Ring(2).WaitConverged(cctx); err != nil {
		return err
	}
	for i, s := range stats {
		c, _ := r.Route("weblogs", fmt.Sprintf("web%d", i+1))
		rows, err := c.QueryContext(ctx, "SELECT id FROM access_log")
		if err != nil {
			return err
		}
		have := map[int64]bool{}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			have[id] = true // id is the primary key: never twice
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		missing := 0
		for _, id := range s.acked {
			if !have[id] {
				missing++
			}
		}
		if missing > 0 || len(have) > len(s.acked)+s.unknown {
			return fmt.Errorf("web%d: %d rows, %d acknowledged of which %d missing, %d unknown", i+1, len(have), len(s.acked), missing, s.unknown)
		}
	}
	fmt.Fprintln(out, "OK: every acknowledged row is on its web server's cluster exactly once.")
	return nil
}

// ingest writes access-log rows for one web server until end (or until
// ctx ends).
func ingest(ctx context.Context, end time.Time, r *dbrouter.Router, server string, firstID int64) ingestStats {
	var s ingestStats
	paths := []string{"/", "/cart", "/search", "/login", "/static/app.js"}
	statuses := []int{200, 200, 200, 200, 304, 404, 500}
	for id := firstID; ctx.Err() == nil && time.Now().Before(end); id++ {
		c, err := r.Route("weblogs", server)
		if err != nil {
			s.failed++
			continue
		}
		_, err = c.ExecContext(ctx, "INSERT INTO access_log VALUES (?, ?, ?, ?, ?, NOW(6))",
			id, server, paths[rand.IntN(len(paths))], statuses[rand.IntN(len(statuses))], rand.IntN(50000))
		switch {
		case err == nil:
			s.acked = append(s.acked, id)
		case errors.Is(err, dbrouter.ErrOutcomeUnknown):
			s.unknown++
		case ctx.Err() != nil:
			// The run ended during the call: only an acknowledged row counts.
			if !errors.Is(err, dbrouter.ErrNotSent) {
				s.unknown++
			}
		default:
			s.failed++
		}
	}
	return s
}
