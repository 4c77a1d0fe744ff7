package dbrouter

import (
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"
)

// copyTestConfig is a configuration that Open accepts without network I/O:
// probes are disabled and the addresses are never dialled.
func copyTestConfig() *Config {
	return &Config{
		Defaults: Settings{User: "app", Health: HealthConfig{Disabled: true},
			Params: map[string]string{"parseTime": "true"}},
		Clusters: map[string]ClusterConfig{
			"c": {Nodes: []string{"127.0.0.1:1", "127.0.0.1:2"}},
			"d": {Nodes: []string{"127.0.0.1:3"}},
		},
		ShardMaps: map[string]ShardMapConfig{
			"m": {Strategy: StrategyDirectory, Entries: map[string]string{"k": "c"}},
		},
		Logger: slog.New(slog.DiscardHandler),
	}
}

// TestReloadSeesConfigEditedInPlace: the hardening issue's item 4. Open, edit
// the same *Config in place, Reload it: the router must use the new node,
// not compare the edited Config with itself and keep the old one.
func TestReloadSeesConfigEditedInPlace(t *testing.T) {
	cfg := copyTestConfig()
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	cc := cfg.Clusters["c"]
	cc.Nodes[0] = "127.0.0.1:9" // in place: the map value still shares the slice
	cfg.ShardMaps["m"].Entries["k"] = "d"
	if err := r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	c, err := r.Cluster("c")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Nodes(), []string{"127.0.0.1:9", "127.0.0.1:2"}; !slices.Equal(got, want) {
		t.Errorf("after Reload of the edited Config, cluster c has nodes %v, want %v", got, want)
	}
	m, err := r.Route("m", "k")
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "d" {
		t.Errorf("after Reload of the edited Config, key k routes to %s, want d", m.Name())
	}
}

// TestOpenCopiesConfig: editing the Config after Open, without Reload,
// changes nothing: reloading the original configuration afterwards keeps
// every cluster as it is, because the router compares with its own copy.
func TestOpenCopiesConfig(t *testing.T) {
	cfg := copyTestConfig()
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	before, _ := r.Cluster("c")

	cfg.Clusters["c"].Nodes[0] = "127.0.0.1:9"
	cfg.Defaults.Params["parseTime"] = "false"
	cfg.ShardMaps["m"].Entries["k"] = "d"
	cfg.Clusters["e"] = ClusterConfig{Nodes: []string{"127.0.0.1:4"}}

	if got := r.Clusters(); !slices.Equal(got, []string{"c", "d"}) {
		t.Errorf("clusters after editing cfg = %v, want [c d]", got)
	}
	if m, _ := r.Route("m", "k"); m == nil || m.Name() != "c" {
		t.Errorf("key k routes to %v after editing cfg, want c", m)
	}
	if err := r.Reload(copyTestConfig()); err != nil {
		t.Fatal(err)
	}
	after, _ := r.Cluster("c")
	if after != before {
		t.Errorf("Reload of the configuration Open was given replaced cluster c: the router's copy had changed with the caller's Config")
	}
	if got := after.Nodes(); !slices.Equal(got, []string{"127.0.0.1:1", "127.0.0.1:2"}) {
		t.Errorf("cluster c nodes = %v", got)
	}
}

// TestOpenConfigEditedConcurrently: the caller may edit its Config while the
// router reloads other configurations (run with -race).
func TestOpenConfigEditedConcurrently(t *testing.T) {
	cfg := copyTestConfig()
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			cfg.Clusters["c"].Nodes[1] = "127.0.0.1:" + string(rune('5'+i%4))
			cfg.Defaults.Params["parseTime"] = []string{"true", "false"}[i%2]
			cfg.ShardMaps["m"].Entries["k"] = []string{"c", "d"}[i%2]
		}
	})
	for range 20 {
		if err := r.Reload(copyTestConfig()); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
}

// TestConfigClone checks that a clone shares no map, slice or pointer with
// the original except those it documents as shared (Logger, OnEvent and a
// ready ShardMapConfig.Map), by walking every field: a field added later
// without a copy in Clone fails here.
func TestConfigClone(t *testing.T) {
	var nilCfg *Config
	if nilCfg.Clone() != nil {
		t.Error("(*Config)(nil).Clone() != nil")
	}
	full := func() *Config {
		s := Settings{User: "u", Password: "p", Params: map[string]string{"a": "b"}, TLS: &TLSConfig{ServerName: "x"}}
		return &Config{
			Defaults: s,
			Clusters: map[string]ClusterConfig{"c": {Nodes: []string{"a"}, Settings: s}},
			ShardMaps: map[string]ShardMapConfig{
				"m": {Strategy: "s", Ranges: map[string]string{"A-Z": "c"}, Entries: map[string]string{"k": "c"},
					Clusters: []string{"c"}, Params: map[string]string{"p": "v"}},
				"u": {Map: &directoryMap{}},
			},
		}
	}
	orig := full()
	cp := orig.Clone()
	if !reflect.DeepEqual(orig, cp) {
		t.Fatalf("clone differs:\n%#v\n%#v", orig, cp)
	}
	for _, p := range sharedRefs(reflect.ValueOf(orig).Elem(), reflect.ValueOf(cp).Elem(), "Config") {
		switch p {
		case "Config.ShardMaps[u].Map":
		default:
			t.Errorf("%s is shared between a Config and its Clone", p)
		}
	}
	// Nil maps and slices stay nil: Validate tells a field set to empty
	// from one left out (a shard map field set for the wrong strategy).
	empty := (&Config{Clusters: map[string]ClusterConfig{"c": {}}}).Clone()
	if empty.Clusters["c"].Nodes != nil || empty.ShardMaps != nil || empty.Defaults.Params != nil {
		t.Errorf("Clone turned nil into empty: %#v", empty)
	}
}

// sharedRefs lists the paths of the maps, slices and pointers that a and b,
// two values of the same type, share.
func sharedRefs(a, b reflect.Value, path string) []string {
	var out []string
	switch a.Kind() {
	case reflect.Map, reflect.Slice, reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return nil
		}
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.Pointer() == b.Pointer() {
			return []string{path}
		}
		return sharedRefs(a.Elem(), b.Elem(), path)
	case reflect.Interface:
		ae, be := a.Elem(), b.Elem()
		if ae.Kind() == reflect.Pointer && ae.Pointer() == be.Pointer() {
			return []string{path}
		}
	case reflect.Map:
		if a.Pointer() == b.Pointer() {
			return []string{path}
		}
		for _, k := range a.MapKeys() {
			out = append(out, sharedRefs(a.MapIndex(k), b.MapIndex(k), path+"["+k.String()+"]")...)
		}
	case reflect.Slice:
		if a.Len() > 0 && a.Pointer() == b.Pointer() {
			return []string{path}
		}
	case reflect.Struct:
		for i := range a.NumField() {
			out = append(out, sharedRefs(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name)...)
		}
	}
	return out
}
