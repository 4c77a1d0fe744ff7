package dbrouter

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
)

// Review of the *sql.DB that fails over (Router.OpenDB, the "dbrouter"
// driver): each test pins down one defect found by attacking it.

// review5Conn is a fullConn whose rows, argument checks and prepared
// statements can be changed per test.
type review5Conn struct {
	*fullConn
	rows func() driver.Rows // the rows of a query, when set
}

// CheckNamedValue accepts a review5Point, as a driver with its own types
// (go-sql-driver's json.RawMessage, uint64) does at the connection.
func (c *review5Conn) CheckNamedValue(nv *driver.NamedValue) error {
	if p, ok := nv.Value.(review5Point); ok {
		nv.Value = fmt.Sprintf("POINT(%d %d)", p.x, p.y)
		return nil
	}
	return driver.ErrSkip
}

func (c *review5Conn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := c.fullConn.QueryContext(ctx, q, args)
	if err != nil || c.rows == nil {
		return rows, err
	}
	return c.rows(), nil
}

type review5Point struct{ x, y int }

// review5Connector connects with review5Conns.
type review5Connector struct {
	srv   *fakeServer
	calls *ifaceCalls
	rows  func() driver.Rows
}

func (k *review5Connector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.srv.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &review5Conn{fullConn: &fullConn{fakeConn: conn.(*fakeConn), calls: k.calls}, rows: k.rows}, nil
}

func (k *review5Connector) Driver() driver.Driver { return fakeDriver{} }

// newReview5Fake is newRoutedFake with review5Conns whose queries return
// rows() when it is not nil.
func newReview5Fake(t *testing.T, n int, rows func() driver.Rows) (*Cluster, []*fakeServer) {
	t.Helper()
	cfg := &Config{Defaults: Settings{Health: HealthConfig{Disabled: true}}, Clusters: map[string]ClusterConfig{"fake": {Nodes: []string{"x"}}}}
	log := slog.New(slog.DiscardHandler)
	c := &Cluster{name: "fake", settings: cfg.effective("fake"), log: log, events: newDispatcher(log, nil)}
	var servers []*fakeServer
	for i := range n {
		s := &fakeServer{addr: string(rune('a'+i)) + ":3306", gtid: "0-1-1", serverID: strconv.Itoa(i + 1)}
		servers = append(servers, s)
		c.nodes = append(c.nodes, newNodeWithConnector(s.addr, &review5Connector{srv: s, calls: &ifaceCalls{}, rows: rows}, c.settings))
	}
	c.initHealth()
	t.Cleanup(func() {
		c.close()
		c.events.close()
	})
	return c, servers
}

func review5Execs(srv []*fakeServer) (n int64) {
	for _, s := range srv {
		n += s.execs.Load()
	}
	return n
}

// TestReview5DSNNeverShowsPassword: a go-sql-driver DSN handed to the
// dbrouter driver by mistake ("user:password@tcp(host)/db") is refused
// without showing any part of the password, whichever part of the DSN
// the password falls in.
func TestReview5DSNNeverShowsPassword(t *testing.T) {
	cfg := &Config{
		Defaults: Settings{User: "app", Health: HealthConfig{Disabled: true}},
		Clusters: map[string]ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1"}}},
		Logger:   slog.New(slog.DiscardHandler),
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := RegisterRouter("review5", r); err != nil {
		t.Fatal(err)
	}
	defer DeregisterRouter("review5")
	for _, dsn := range []string{
		"app:Hunter7zq@tcp(127.0.0.1:3306)/orders",
		"app:Hunter7zq@tcp(127.0.0.1:3306)/orders?parseTime=true",
		"app:Hunter7zq@/orders",
		"app:Hunter7zq@tcp(127.0.0.1:3306)",
		"app:Hun/ter7zq@tcp(127.0.0.1:3306)/orders",
		"app:Hun?ter7zq@tcp(127.0.0.1:3306)/orders",
		"app:Hun&ter7zq=1@tcp(127.0.0.1:3306)/orders",
		"review5/app:Hunter7zq@tcp(127.0.0.1:3306)/orders",
		"review5/app:Hunter7zq@orders",
	} {
		t.Run(dsn, func(t *testing.T) {
			_, err := sql.Open(DriverName, dsn)
			if err == nil {
				t.Fatalf("sql.Open accepted %q", dsn)
			}
			for _, part := range []string{"Hunter7zq", "Hun", "ter7zq"} {
				if strings.Contains(err.Error(), part) {
					t.Errorf("error shows %q of the password: %v", part, err)
				}
			}
			if _, err := (Driver{}).Open(dsn); err == nil || strings.Contains(err.Error(), "Hun") || strings.Contains(err.Error(), "ter7zq") {
				t.Errorf("Driver.Open: %v", err)
			}
		})
	}
	// A DSN without '@' still names the value it refuses.
	if _, err := sql.Open(DriverName, "review5/nope"); !errors.Is(err, ErrUnknownCluster) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown cluster: %v", err)
	}
}
