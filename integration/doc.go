// Package integration holds dbrouter's tests on real MariaDB rings started
// by ringtest: failover (killed, frozen and read-only writers), health
// probes and failback, the hardening regressions, reload under load, the
// torture test, the routed-versus-bare benchmark, and runnable versions of
// the root package's examples. It has no code of its own.
//
// These tests live outside the root package, in a module of their own
// (github.com/dbrouter/dbrouter/integration), so that a module importing
// github.com/dbrouter/dbrouter never needs the test harness or its Docker
// client: go mod tidy loads the tests of every package a module imports,
// and a module's graph holds the requirements of every module it requires
// (docs/testing.md, "Module hygiene").
//
// Run one with, for example (from the repository root, through go.work):
//
//	go test -race -count=1 -run TestFreezeWriterThenThaw -v ./integration
//
// DBROUTER_RING_BACKEND=docker runs the rings in Docker containers.
package integration
