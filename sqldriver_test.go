package dbrouter

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
)

func TestParseDriverDSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dsn, router, cluster string
		read                 bool
		field                string // of the *ConfigError; "" for none
	}{
		{dsn: "app/orders", router: "app", cluster: "orders"},
		{dsn: "app/orders?read=true", router: "app", cluster: "orders", read: true},
		{dsn: "app/orders?read=0", router: "app", cluster: "orders"},
		{dsn: "", field: "dsn"},
		{dsn: "app", field: "dsn"},
		{dsn: "/orders", field: "dsn router"},
		{dsn: "app/", field: "dsn cluster"},
		{dsn: "app/a/b", field: "dsn cluster"},
		{dsn: "app/orders?reads=1", field: "dsn parameter"},
		{dsn: "app/orders?read=yes", field: "dsn parameter read"},
		{dsn: "app/orders?read=%zz", field: "dsn parameters"},
	} {
		t.Run(tc.dsn, func(t *testing.T) {
			router, cluster, read, err := parseDriverDSN(tc.dsn)
			if tc.field != "" {
				var ce *ConfigError
				if !errors.As(err, &ce) || ce.Field != tc.field {
					t.Fatalf("error %v, want a *ConfigError on %q", err, tc.field)
				}
				return
			}
			if err != nil || router != tc.router || cluster != tc.cluster || read != tc.read {
				t.Fatalf("got %q %q %v %v, want %q %q %v", router, cluster, read, err, tc.router, tc.cluster, tc.read)
			}
		})
	}
}

// TestDriverDSN: sql.Open with the registered driver reaches the named
// cluster of the registered router, checks both at Open, and its
// connector says which driver it belongs to.
func TestDriverDSN(t *testing.T) {
	t.Parallel()
	cfg := &Config{
		Defaults: Settings{User: "app", Password: "pw-Secret9", Health: HealthConfig{Disabled: true}},
		Clusters: map[string]ClusterConfig{"orders": {Nodes: []string{"127.0.0.1:1"}}},
		Logger:   slog.New(slog.DiscardHandler),
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := RegisterRouter("drvtest", r); err != nil {
		t.Fatal(err)
	}
	defer DeregisterRouter("drvtest")
	for _, tc := range []struct {
		name, reg string
		r         *Router
	}{{"again", "drvtest", r}, {"empty", "", r}, {"slash", "a/b", r}, {"nil", "x", nil}} {
		var ce *ConfigError
		if err := RegisterRouter(tc.reg, tc.r); !errors.As(err, &ce) {
			t.Errorf("RegisterRouter %s: %v, want a *ConfigError", tc.name, err)
		}
	}
	if _, err := sql.Open(DriverName, "drvtest/nope"); !errors.Is(err, ErrUnknownCluster) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown cluster: %v", err)
	}
	if _, err := sql.Open(DriverName, "other/orders"); err == nil || !strings.Contains(err.Error(), `"other"`) {
		t.Errorf("unknown router: %v", err)
	}
	db, err := sql.Open(DriverName, "drvtest/orders")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok := db.Driver().(Driver); !ok {
		t.Errorf("db.Driver() is %T, want Driver", db.Driver())
	}
	// Nothing listens on 127.0.0.1:1: not sent, and no password shown.
	err = db.PingContext(t.Context())
	if !errors.Is(err, ErrNotSent) || strings.Contains(err.Error(), "pw-Secret9") {
		t.Errorf("ping: %v, want ErrNotSent without the password", err)
	}
	DeregisterRouter("drvtest")
	if _, err := sql.Open(DriverName, "drvtest/orders"); err == nil {
		t.Errorf("sql.Open after DeregisterRouter succeeded")
	}
	if _, err := (Driver{}).Open("drvtest"); err == nil {
		t.Errorf("Driver.Open of a bad DSN succeeded")
	}
}

// TestOpenReadDB: a read connection goes to a read node in a read-only
// session; a write on it is the server's refusal (not a health event,
// not retried); once its node no longer serves reads it is refused before
// sending, and database/sql retries on a node that does; a connection
// lost after sending is outcome unknown.
func TestOpenReadDB(t *testing.T) {
	t.Parallel()
	c, srv, _ := newRoutedFake(t, 3)
	c.settings.ReadPolicy = ReadAnyUp
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.writes = func(q string) bool { return strings.HasPrefix(q, "INSERT") } })
	}
	c.mu.Lock()
	c.state.settings.ReadPolicy = ReadAnyUp
	c.mu.Unlock()
	c.reportCall(0, false, 0, nil) // rebuild the picker with the read policy
	var p atomic.Pointer[Cluster]
	p.Store(c)
	db := sql.OpenDB(&clusterConnector{resolve: func() (*Cluster, error) { return p.Load(), nil }, read: true})
	t.Cleanup(func() { db.Close() })
	ctx := t.Context()
	db.SetMaxOpenConns(1)

	rows, err := db.QueryContext(ctx, "SELECT 1")
	if err != nil {
		t.Fatal(err)
	}
	rows.Close()
	var ro int64
	for _, s := range srv {
		ro += s.roExecs.Load()
	}
	if ro != 1 {
		t.Fatalf("%d statements in read-only sessions, want 1", ro)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO t (id) VALUES (1)")
	if err == nil || errors.Is(err, driver.ErrBadConn) || errors.Is(err, ErrNotSent) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("write on a read connection: %v, want the server's refusal", err)
	}
	if w := c.WriterAddr(); w != srv[0].addr {
		t.Errorf("writer %s after a refused write in a read-only session, want %s", w, srv[0].addr)
	}
	// The connection's node leaves the read order.
	var used int
	for i, s := range srv {
		if s.roExecs.Load() > 0 {
			used = i
		}
	}
	for range c.settings.Health.FailAfter + 2 {
		c.reportCall(used, false, ClassNotSent, errors.New("dial refused"))
	}
	if c.pick.Load().takesReads(used) {
		t.Fatalf("node %d still serves reads: %+v", used, c.Stats().Nodes)
	}
	before := srv[used].execs.Load()
	rows, err = db.QueryContext(ctx, "SELECT 2")
	if err != nil {
		t.Fatalf("read after its node left the read order: %v", err)
	}
	rows.Close()
	if n := srv[used].execs.Load(); n != before {
		t.Errorf("the old node ran %d more statements, want 0", n-before)
	}
	// Lost after sending: outcome unknown, never retried.
	for _, s := range srv {
		s.set(func(s *fakeServer) { s.execErr = errors.New("connection reset") })
	}
	var total int64
	for _, s := range srv {
		total += s.execs.Load()
	}
	_, err = db.QueryContext(ctx, "SELECT 3")
	if !errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("read lost after sending: %v, want ErrOutcomeUnknown", err)
	}
	var after int64
	for _, s := range srv {
		after += s.execs.Load()
	}
	if after != total+1 {
		t.Errorf("%d statements ran, want 1", after-total)
	}
}

// FuzzParseDriverDSN: no DSN panics, and an accepted one names a router
// and a cluster without '/' that parse back to the same.
func FuzzParseDriverDSN(f *testing.F) {
	for _, s := range []string{"app/orders", "app/orders?read=true", "app", "/x", "a/b/c", "a/b?read=maybe&x=1", "a/b?%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		router, cluster, read, err := parseDriverDSN(dsn)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("%q: error %v is not a *ConfigError", dsn, err)
			}
			return
		}
		if router == "" || cluster == "" || strings.Contains(router, "/") || strings.Contains(cluster, "/") {
			t.Fatalf("%q: accepted router %q cluster %q", dsn, router, cluster)
		}
		again := router + "/" + cluster
		if read {
			again += "?read=true"
		}
		r2, c2, read2, err := parseDriverDSN(again)
		if err != nil || r2 != router || c2 != cluster || read2 != read {
			t.Fatalf("%q: %q does not parse back: %q %q %v %v", dsn, again, r2, c2, read2, err)
		}
	})
}
