package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestSwitchover: an operator's switchover publishes the next epoch by a
// compare-and-swap, and is refused, with nothing published, without a
// decision, to the writer itself, to an unknown node, or to a node that a
// majority of live routers does not see Up and writable.
func TestSwitchover(t *testing.T) {
	te := startEtcd(t)
	cli := newClient(t, te.endpoints[0])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const pfx = DefaultPrefix
	put := func(key string, v any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if _, err := cli.Put(ctx, key, string(b)); err != nil {
			t.Fatal(err)
		}
	}
	view := func(router string, cState string) View {
		return View{Router: router, At: time.Now(), Writer: "a:3306", Nodes: []NodeView{
			{Addr: "a:3306", State: "up", Probed: true},
			{Addr: "b:3306", State: "up", Probed: true},
			{Addr: "c:3306", State: cState, Probed: true},
		}}
	}
	refused := func(to, want string) {
		t.Helper()
		_, err := Switchover(ctx, cli, pfx, "c1", to, "test")
		if !errors.Is(err, ErrSwitchoverRefused) || !strings.Contains(err.Error(), want) {
			t.Errorf("Switchover(%s): err = %v, want refused saying %q", to, err, want)
		}
	}

	refused("b:3306", "has not decided")
	for _, r := range []string{"web1", "web2", "web3"} {
		put(RouterKey(pfx, r), RouterInfo{ID: r})
	}
	put(ViewKey(pfx, "c1", "web1"), view("web1", "down"))
	put(ViewKey(pfx, "c1", "web2"), view("web2", "down"))
	put(ViewKey(pfx, "c1", "web3"), view("web3", "up"))
	put(ViewKey(pfx, "c1", "gone"), view("gone", "up")) // no presence key: does not count
	put(WriterKey(pfx, "c1"), Decision{Writer: "a:3306", Epoch: 4, Decider: "web1"})

	refused("a:3306", "already the writer")
	refused("z:3306", `no live router's view names a node "z:3306"`)
	refused("c:3306", "up and writable in 1 of 3 views")

	d, err := Switchover(ctx, cli, "/dbrouter", "c1", "b:3306", "ops@bastion") // prefix without the slash
	if err != nil {
		t.Fatal(err)
	}
	if d.Writer != "b:3306" || d.Epoch != 5 || !strings.Contains(d.Cause, "from a:3306 requested by ops@bastion") {
		t.Errorf("decision %+v", d)
	}
	resp, err := cli.Get(ctx, WriterKey(pfx, "c1"))
	if err != nil {
		t.Fatal(err)
	}
	var stored Decision
	if err := json.Unmarshal(resp.Kvs[0].Value, &stored); err != nil || stored.Writer != "b:3306" || stored.Epoch != 5 {
		t.Errorf("stored decision %+v (%v)", stored, err)
	}
}
