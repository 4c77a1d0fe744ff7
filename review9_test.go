package dbrouter

import (
	"crypto/rand"
	"crypto/rsa"

	"context"
	"github.com/go-sql-driver/mysql"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestReview9DecodeConfigMatchesYAMLMore extends TestDecodeConfigMatchesYAML
// with the shapes it does not try: explicit tags on keys and values, keys
// that resolve to other types (null, bool, float, hex, timestamps),
// aliases as keys, local tags, block styles.
func TestReview9DecodeConfigMatchesYAMLMore(t *testing.T) {
	docs := map[string]string{
		"tagged keys":     "clusters:\n  !!str c1: {nodes: [db1]}\n  !!int 5: {nodes: [db5]}\n  ? !!str c3\n  : {nodes: [db3]}\n",
		"odd keys":        "clusters:\n  true: {nodes: [dbt]}\n  1.5: {nodes: [dbf]}\n  0x1F: {nodes: [dbh]}\n  2001-12-14: {nodes: [dbd]}\n  1_000: {nodes: [dbu]}\n",
		"alias key":       "k: &k c9\nclusters:\n  *k : {nodes: [db9]}\nshard_maps:\n  m: {strategy: directory, entries: {*k : *k}}\n",
		"tagged values":   "clusters: !!map\n  c1: !!map {nodes: !!seq [!!str db1]}\nshard_maps: !!map\n  m: {strategy: !!str directory, entries: !!map {a: !!str c1}}\n",
		"local tags":      "clusters:\n  c1: !foo {nodes: [db1]}\nshard_maps:\n  m: {strategy: directory, entries: !bar {a: c1}}\n",
		"binary value":    "clusters:\n  c1: {nodes: [!!binary ZGIx]}\nshard_maps:\n  m: {strategy: directory, entries: {a: !!binary YzE=}}\n",
		"block styles":    "clusters:\n  c1:\n    nodes:\n      - db1\n      - >-\n        db2\n      - |-\n        db3\nshard_maps:\n  m:\n    strategy: directory\n    entries:\n      a: |-\n        c1\n",
		"wrong kinds":     "clusters:\n  c1: [db1]\n",
		"wrong kinds 2":   "clusters:\n  c1: {nodes: db1}\n",
		"wrong kinds 3":   "clusters: [c1]\n",
		"wrong kinds 4":   "shard_maps:\n  m: {strategy: directory, entries: [a, b]}\n",
		"wrong kinds 5":   "shard_maps:\n  m: {strategy: directory, entries: {a: [c1]}}\n",
		"wrong kinds 6":   "clusters:\n  c1: {nodes: [[db1]]}\n",
		"wrong kinds 7":   "clusters:\n  c1: {nodes: [{a: b}]}\n",
		"int value":       "shard_maps:\n  m: {strategy: directory, entries: {a: 0x1F, b: 1.50, c: true, d: 2001-12-14}}\n",
		"tagged null":     "clusters:\n  c1: !!null\n  c2: {nodes: !!null}\nshard_maps:\n  m: {strategy: directory, entries: {a: !!null}}\n",
		"merge into list": "b: &b [db1]\nclusters:\n  c1: {nodes: *b}\n  c2:\n    <<: [{nodes: [db2]}, {user: u}]\n",
		"str tag on int":  "clusters:\n  c1: {nodes: [!!str 0x1F, !!str true, !!str ~]}\n",
		"quoted null key": "clusters:\n  \"~\": {nodes: [dbq]}\n  '': {nodes: [dbe]}\n",
		"merge tag key":   "clusters:\n  !!merge <<: {c1: {nodes: [db1]}}\n  !!str <<: {nodes: [dbm]}\n",
		"merge alias seq": "a: &a {c1: {nodes: [db1]}}\nb: &b {c2: {nodes: [db2]}}\nclusters:\n  <<: [*a, *b]\n  c3: {nodes: [db3]}\n",
	}
	for name, doc := range docs {
		var root yaml.Node
		if err := yaml.Unmarshal([]byte(doc), &root); err != nil || len(root.Content) == 0 {
			t.Logf("%s: not YAML: %v", name, err)
			continue
		}
		var want, got Config
		errWant := root.Decode(&want)
		var errGot error
		func() {
			defer func() {
				if p := recover(); p != nil {
					errGot = nil
					t.Errorf("%s: decodeConfig panics: %v", name, p)
				}
			}()
			errGot = decodeConfig(&root, &got)
		}()
		if (errWant == nil) != (errGot == nil) {
			t.Errorf("%s: yaml.v3 err %v, decodeConfig err %v", name, errWant, errGot)
			continue
		}
		if errWant == nil && !reflect.DeepEqual(want, got) {
			t.Errorf("%s: decodeConfig differs from yaml.v3:\n got clusters %v maps %v\nwant clusters %v maps %v", name, got.Clusters, got.ShardMaps, want.Clusters, want.ShardMaps)
		}
		// ParseConfig as a whole must not panic on it either.
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("%s: ParseConfig panics: %v", name, p)
				}
			}()
			_, err := ParseConfig([]byte(doc))
			if err != nil && strings.Contains(err.Error(), "\n\n") {
				t.Logf("%s: %v", name, err)
			}
		}()
	}
}

// TestReview9ParseConfigSecondDocument: a configuration with a second YAML
// document (after "---") is refused; before, the second one was ignored
// without a word (its clusters silently absent). An empty or null second
// document, an initial "---" and a final "..." are fine.
func TestReview9ParseConfigSecondDocument(t *testing.T) {
	one := "defaults: {user: u}\nclusters:\n  c1: {nodes: [db1]}\n"
	for doc, want := range map[string]string{
		one + "---\nclusters:\n  c2: {nodes: [db2]}\n": "more than one YAML document (the second starts at line 4)",
		one + "---\n- x\n": "more than one YAML document",
		one + "---\n":      "",
		one + "---\n~\n":   "",
		"---\n" + one:      "",
		one + "...\n":      "",
		"":                 "at least one cluster",
		"\ufeff" + one:     "",
	} {
		_, err := ParseConfig([]byte(doc))
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: err %v, want %q", doc, err, want)
		}
	}
}

// TestReview9LazyConnectorsOwnAddress: nodes that share their cluster's
// driver configuration (and clusters that share the defaults') each dial
// their own address, however many calls make the first connection at
// once (run with -race: the lazy connector is built once).
func TestReview9LazyConnectorsOwnAddress(t *testing.T) {
	const n = 4
	var accepts [n]atomic.Int32
	addrs := make([]string, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepts[i].Add(1)
				c.Close() // no handshake: the connect fails, sent nothing
			}
		}()
	}
	cfg := &Config{Defaults: Settings{User: "u", Password: "pw", ConnectTimeout: time.Second, Health: HealthConfig{Disabled: true}},
		Clusters: map[string]ClusterConfig{
			"a": {Nodes: addrs[:2]},
			"b": {Nodes: addrs[2:]},
		}, Logger: slog.New(slog.DiscardHandler)}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		c, err := r.Cluster(name)
		if err != nil {
			t.Fatal(err)
		}
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				c.Writer().PingContext(ctx)
				c.ExecContext(ctx, "DO 1")
			}()
		}
	}
	wg.Wait()
	// Every node was dialled at its own address: the first of each
	// cluster by Writer, the second once the calls failed over to it.
	for i := range n {
		if accepts[i].Load() == 0 {
			t.Errorf("node %s was never dialled (accepts %v)", addrs[i], []int32{accepts[0].Load(), accepts[1].Load(), accepts[2].Load(), accepts[3].Load()})
		}
	}
}

// TestReview9ServerPubKeyDeregisteredAfterOpen: a serverPubKey that Open
// accepted must keep working for a node that first connects later. With
// the lazy connectors (issue 17), go-sql-driver looks the name up again at
// the node's first connection: deregistered after Open, every node then
// fails with "unknown server pub key name" instead of dialling. Before, the
// connectors were built at Open. The listener refuses the handshake: the
// call must fail at the dial, not at the key.
func TestReview9ServerPubKeyDeregisteredAfterOpen(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepts atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			c.Close()
		}
	}()
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	mysql.RegisterServerPubKey("review9", &key.PublicKey)
	defer mysql.DeregisterServerPubKey("review9")
	cfg := &Config{Defaults: Settings{User: "u", Password: "pw", ConnectTimeout: time.Second, Health: HealthConfig{Disabled: true},
		Params: map[string]string{"serverPubKey": "review9"}},
		Clusters: map[string]ClusterConfig{"a": {Nodes: []string{ln.Addr().String()}}}, Logger: slog.New(slog.DiscardHandler)}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mysql.DeregisterServerPubKey("review9")
	c, _ := r.Cluster("a")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err = c.Writer().PingContext(ctx)
	if accepts.Load() == 0 {
		t.Fatalf("the node never dialled: %v", err)
	}
}
