package dbrouter

import (
	"net"
	"strings"
	"testing"
	"time"
)

// TestRawSessionLargeReplyTrickled: replies larger than the 4 KiB buffer,
// delivered a few bytes per read, several in a row on one session, each
// read whole and nothing left over.
func TestRawSessionLargeReplyTrickled(t *testing.T) {
	client, server := net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	big := strings.Repeat("0-1-", 3000) + "9" // a GTID position of ~12 KB
	sizes := []string{big, "0-1-5", big[:5000], "x"}
	go func() {
		for i, gtid := range sizes {
			hdr := make([]byte, 4)
			if _, err := readFull(server, hdr); err != nil {
				return
			}
			body := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
			if _, err := readFull(server, body); err != nil {
				return
			}
			v := append([]byte{0xfc, byte(len(gtid)), byte(len(gtid) >> 8)}, gtid...)
			var out []byte
			for j, p := range [][]byte{{3, 1}, colDef, colDef, colDef, append(append(lenenc("0"), v...), lenenc("7")...), okEndPkt} {
				out = append(out, byte(len(p)), byte(len(p)>>8), byte(len(p)>>16), byte(j+1))
				out = append(out, p...)
			}
			step := 1 + i*7
			for k := 0; k < len(out); k += step {
				server.Write(out[k:min(k+step, len(out))])
			}
		}
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	r := &rawSession{sock: client}
	for _, want := range sizes {
		row, err := r.query(probeMariaDB)
		if err != nil {
			t.Fatal(err)
		}
		if len(row) != 3 || row[0] != "0" || row[1] != want || row[2] != "7" {
			t.Fatalf("row %d columns, gtid of %d bytes, want %d", len(row), len(row[1]), len(want))
		}
	}
}

// TestIdleRatePinnedConnAndTxCountAsCalls: a cluster used only through a
// connection held from Cluster.Conn, or through one long transaction, is
// in use: its statements count as calls, and its nodes are probed every
// Interval, not every IdleInterval.
func TestIdleRatePinnedConnAndTxCountAsCalls(t *testing.T) {
	for _, via := range []string{"conn", "tx"} {
		t.Run(via, func(t *testing.T) {
			set := Settings{Health: HealthConfig{Interval: 20 * time.Millisecond, IdleInterval: 150 * time.Millisecond, Timeout: 100 * time.Millisecond}}
			c, srv := newFakeClusterWithProbes(t, 3, set, nil)
			counts := countProbes(srv)
			ctx := testCtx(t)
			var exec func() error
			switch via {
			case "conn":
				conn, err := c.Conn(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				exec = func() error { _, err := conn.ExecContext(ctx, "INSERT INTO t VALUES (1)"); return err }
			case "tx":
				tx, err := c.BeginTx(ctx, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback()
				exec = func() error { _, err := tx.ExecContext(ctx, "INSERT INTO t VALUES (1)"); return err }
			}
			stop := time.Now().Add(1200 * time.Millisecond)
			var n0 int64
			for i := 0; time.Now().Before(stop); i++ {
				if err := exec(); err != nil {
					t.Fatal(err)
				}
				if i == 10 {
					n0 = sumCounts(counts)
				}
				time.Sleep(50 * time.Millisecond)
			}
			busy := sumCounts(counts) - n0
			// About 700 ms at 3 nodes every 20 ms: ~100; idle rate: ~14.
			if busy < 40 {
				t.Errorf("%d probes in ~700 ms of a cluster used through %s, want about 100 (every 20 ms)", busy, via)
			}
		})
	}
}
