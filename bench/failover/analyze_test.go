package main

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	o := options{before: 2 * time.Second, after: 3 * time.Second}
	ms := time.Millisecond
	faultAt := 2 * time.Second
	var calls []call
	// Before the fault: an acknowledged write on A every 10 ms.
	for at := time.Duration(0); at < faultAt; at += 10 * ms {
		calls = append(calls, call{id: "x", start: at, latency: ms, class: classOK, node: "A"})
	}
	// The write in flight at the fault is outcome unknown after 500 ms;
	// writes resume on B 600 ms after the fault.
	calls = append(calls, call{start: faultAt - ms, latency: 501 * ms, class: classUnknown, node: "A"})
	for at := faultAt + 599*ms; at < faultAt+o.after; at += 10 * ms {
		calls = append(calls, call{start: at, latency: ms, class: classRetried, node: "B"})
	}
	s := summarize(o, "test", "", "A", "A", calls, faultAt, verdict{})
	if got := s.FirstSuccessElsewhere.D(); got != 600*ms {
		t.Errorf("FirstSuccessElsewhere = %v, want 600ms", got)
	}
	// Last ack before the fault ends at 1.991 s; first after at 2.6 s.
	if got := s.Stall.D(); got != 609*ms {
		t.Errorf("Stall = %v, want 609ms", got)
	}
	if got := s.PreMaxGap.D(); got != 10*ms {
		t.Errorf("PreMaxGap = %v, want 10ms", got)
	}
	if s.PreRate != 100 {
		t.Errorf("PreRate = %v, want 100", s.PreRate)
	}
	if s.PostOutcomes[classRetried] != 241 || s.PostOutcomes[classUnknown] != 0 || s.Outcomes[classUnknown] != 1 {
		t.Errorf("outcomes: post %v, all %v", s.PostOutcomes, s.Outcomes)
	}
	if got := s.PostMax.D(); got != ms {
		t.Errorf("PostMax = %v, want 1ms (the unknown call started before the fault)", got)
	}
	if len(s.PerSecond) != 3 || s.PerSecond[0] != 40 || s.PerSecond[1] != 100 {
		t.Errorf("PerSecond = %v, want [40 100 ...]", s.PerSecond)
	}
}
