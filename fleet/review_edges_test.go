package fleet

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// Review of the fleet edges: a campaign left behind by Close, the start-up
// refusal of a cluster whose writer key cannot be read.

// campaignGoroutines counts the goroutines of the process inside etcd's
// Election.Campaign.
func campaignGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "concurrency.(*Election).Campaign(") {
			count++
		}
	}
	return count
}

// Defect: Coordinator.Close while etcd was down returned within a few
// seconds, but left etcd's Election.Campaign running: its ctx ended, it
// resigns with the client's own context, which ends only when the client
// is closed — and a Coordinator does not close the client it was given.
// One goroutine leaked per Close until etcd answered again. Expected: the
// campaign's goroutine ends soon after Close, etcd still down. Not
// parallel: it counts the goroutines of the whole process.
func TestReviewEdgesCloseEndsCampaign(t *testing.T) {
	base := campaignGoroutines()
	te := startEtcd(t)
	const pfx = "/review-edges-campaign/"
	a, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "a", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	eventually(t, "a decider", a.IsDecider)
	b, err := New(newClient(t, te.endpoints[0]), Options{Prefix: pfx, RouterID: "b", LeaseTTL: testTTL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "b campaigning behind a", func() bool { return campaignGoroutines() > base })
	te.crash()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- b.Close() }()
	select {
	case <-done:
		t.Logf("Close with etcd down: %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("Close still waiting 15 s after etcd went down")
	}
	deadline := time.Now().Add(10 * time.Second)
	for campaignGoroutines() > base {
		if time.Now().After(deadline) {
			t.Fatalf("10 s after Close (etcd still down): %d goroutines in Election.Campaign, %d before the test: the closed coordinator's campaign is still running", campaignGoroutines(), base)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("campaign goroutine gone %v after Close was called", time.Since(start).Round(time.Millisecond))
}
