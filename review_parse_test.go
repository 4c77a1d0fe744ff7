package dbrouter

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFastYAMLLongFlowKey checks that a flow mapping key more than 1024
// characters before its colon, which yaml.v3 refuses (a simple key is at
// most 1024 characters), is not accepted by fastYAML either: ParseConfig
// refused such a file before fastYAML.
func TestFastYAMLLongFlowKey(t *testing.T) {
	long := strings.Repeat("k", 1100)
	for _, s := range []string{
		"a: {" + long + ": b}\n",
		"a: {'" + long + "': b}\n",
		"a: {b: c, " + long + ": d}\n",
		"a:\n- {" + long + ": b}\n",
		"a: [{" + long + ": b}]\n",
	} {
		checkFastYAML(t, []byte(s))
	}
	_, err := ParseConfig([]byte("clusters: {c" + long + ": {nodes: [db1]}}\n"))
	if err == nil || !strings.Contains(err.Error(), "invalid YAML") {
		t.Fatalf("ParseConfig of a flow key of 1101 characters: %v, want yaml.v3's invalid YAML", err)
	}
}

// TestParseConfigConcurrentOpen parses and opens configurations from
// several goroutines at once (run it with -race): each router must have
// its own configuration's clusters, whether Open reused ParseConfig's
// plans or not, and a Config parsed twice opens twice.
func TestParseConfigConcurrentOpen(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				name := fmt.Sprintf("c%d_%d", g, i)
				yml := fmt.Sprintf("defaults:\n  user: app\n  health: {disabled: true}\n  params: {parseTime: 'true'}\nclusters:\n  %s:\n    nodes: [db%d:3306]\n    max_idle_conns: %d\n", name, i, i+1)
				a, err := ParseConfig([]byte(yml))
				if err != nil {
					t.Error(err)
					return
				}
				b, err := ParseConfig([]byte(yml))
				if err != nil {
					t.Error(err)
					return
				}
				for _, cfg := range []*Config{a, b, a} {
					r, err := Open(cfg)
					if err != nil {
						t.Error(err)
						return
					}
					if names := r.table.Load().plan.names; len(names) != 1 || names[0] != name {
						t.Errorf("router of %s has clusters %v", name, names)
					}
					if got := r.table.Load().plan.clusters[name].settings.MaxIdleConns; got != i+1 {
						t.Errorf("cluster %s: max_idle_conns %d, want %d", name, got, i+1)
					}
					r.Close()
				}
			}
		}()
	}
	wg.Wait()
}

// TestParsedPlanReleased checks that ParseConfig's plans are let go once
// the Config it returned is unreachable.
func TestParsedPlanReleased(t *testing.T) {
	cfg, err := ParseConfig([]byte("defaults: {user: app}\nclusters:\n  a:\n    nodes: [db1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if lastParsed.cfg.Value() != cfg {
		t.Fatal("plans not kept")
	}
	cfg = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		lastParsed.mu.Lock()
		p := lastParsed.p
		lastParsed.mu.Unlock()
		if p == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("ParseConfig's plans still held after the Config was collected")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOpenDropsParsedCopy checks that a router opened from ParseConfig's
// plans does not keep, for its lifetime, the copy of each cluster's nodes
// and own settings that ParseConfig kept only for Open to compare.
func TestOpenDropsParsedCopy(t *testing.T) {
	cfg, err := ParseConfig([]byte(reuseYAML))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for name, cp := range r.table.Load().plan.clusters {
		if cp.srcNodes != nil || cp.srcOwn != nil {
			t.Errorf("cluster %s: the router holds ParseConfig's copy (srcNodes %v, srcOwn %v)", name, cp.srcNodes, cp.srcOwn != nil)
		}
	}
}
