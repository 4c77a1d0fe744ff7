package dbrouter

import "testing"

// Defect (review of fleet-fixes): a WriterSource that refuses writes from
// the start (the fleet coordinator's start-up refusal, which lasts about
// a lease with etcd down) and then hands the decision back to the local
// rule had the first writer chosen after the first probe round: never
// provisional, so a node whose first probe had failed and whose first
// good probe then showed the first writer behind did not have the writer
// chosen again (TestStateFirstWriterProvisional without the refusal). The
// router kept writing on a node that lacked transactions of another.
// Expected: the first writer the local rule chooses is provisional
// whenever it is chosen, as at the end of the first round.
func TestStateFirstWriterProvisionalAfterSourceRefusal(t *testing.T) {
	m := newMachine(t, 3, Settings{})
	m.s.external = true
	m.record(m.s.decideExternal(-1, true, 0, "start-up refusal", m.now))
	m.ok(0, "1-1-3000,2-2-10")
	m.fail(1)
	m.ok(2, "1-1-3000,2-2-10")
	m.wantWriter(-1)
	m.record(m.s.decideExternal(-1, false, 0, "no decision: local rule", m.now))
	m.wantWriter(0)
	m.ok(1, "1-1-3000,2-2-5000") // b was ahead: a is behind
	m.wantWriter(1)
}

// TestStateFirstWriterAfterSourceRefusalNoProbes: without probes (ready
// from the start, no first round), a refusal handed back chooses the
// first writer without a panic (the first fix indexed the first round's
// unverified nodes, which a cluster without probes never had).
func TestStateFirstWriterAfterSourceRefusalNoProbes(t *testing.T) {
	m := newMachine(t, 2, Settings{Health: HealthConfig{Disabled: true}})
	m.s.external = true
	// No writer ever (every node was ineligible when the cluster was
	// built: drained by a Reload's carry-over, as in
	// TestReview6FleetUndrainAfterReloadWhileCut, where the panic held the
	// cluster's mutex and hung the test).
	m.s.writer, m.s.lastWriter = -1, -1
	m.record(m.s.decideExternal(-1, true, 0, "start-up refusal", m.now))
	m.wantWriter(-1)
	m.record(m.s.decideExternal(-1, false, 0, "no decision: local rule", m.now))
	m.wantWriter(0)
}
