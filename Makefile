# dbrouter: two commands do all setup on a fresh Debian machine.
#   make demo   runs examples/failover against a MariaDB ring it starts itself
#   make demo-fleet  three routers (processes) sharing one writer through etcd
#   make test   go vet, gofmt check, and go test -race on real MariaDB rings
# Both install mariadb-server from Debian's packages when no server is found.

export PATH := $(PATH):/usr/local/go/bin
GO ?= go
TEST_TIMEOUT ?= 20m
# Test packages run one at a time (-p 1): each starts its own MariaDB rings,
# and on 2 cores two packages' rings at once starve each other's timing.

# The repository's Go modules: the library at the root, and the others with
# their own go.mod so that a module importing the library never needs the
# test harness, its Docker client, the charts, etcd, the ORMs, or the
# Prometheus and OpenTelemetry adapters' libraries (docs/testing.md,
# "Module hygiene"). vet, mod-check and the tests take them one after the
# other, each on its own (GOWORK=off), as a clone without go.work would;
# go.work only lets commands run from the root name packages of every
# module (go run ./bench/report, go test ./integration).
MODULES := . ringtest integration examples bench fleet orm prometheus otel
# each runs $(1) in every module and fails at the end if it failed in one.
each = rc=0; for m in $(MODULES); do echo "[module $$m] $(1)"; (cd $$m && GOWORK=off $(1)) || { echo "FAIL in module $$m: $(1)"; rc=1; }; done; exit $$rc

.PHONY: test demo demo-fleet deps vet fmt-check mod-check fuzz bench test-docker

deps:
	@scripts/ensure-mariadb.sh

vet:
	@$(call each,$(GO) vet ./...)

# mod-check fails when a module's go.mod or go.sum is not what go mod tidy
# makes of it: the root's must not regain the harness's requirements.
mod-check:
	@$(call each,$(GO) mod tidy -diff)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test: deps vet fmt-check mod-check
	@$(call each,$(GO) test -race -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...)
	@scripts/check-orphans.sh

# test-docker runs the same tests with every ring in Docker containers
# (DBROUTER_RING_BACKEND=docker; needs a Docker engine, no registry): it
# builds the local MariaDB image when absent, then checks that no container,
# network or volume is left behind.
test-docker: vet fmt-check mod-check
	@bash ringtest/build-mariadb-image.sh
	@scripts/check-docker-leftovers.sh --before
	@rc=0; ($(call each,DBROUTER_RING_BACKEND=docker $(GO) test -race -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...)) || rc=$$?; \
	scripts/check-docker-leftovers.sh || rc=1; exit $$rc

demo: deps
	cd examples && $(GO) run ./failover

# demo-fleet runs three routers as separate processes sharing one writer
# decision through an etcd it embeds (fleet/cmd/fleetdemo, docs/fleet.md).
demo-fleet: deps
	cd fleet && $(GO) run ./cmd/fleetdemo

# fuzz runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	for f in FuzzParseConfig FuzzExpandEnv FuzzNormalizeAddr FuzzShardMap FuzzParseGTIDSet FuzzParseDriverDSN; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) . || exit 1; \
	done
	cd fleet/cmd/dbrouter && $(GO) test -run '^$$' -fuzz '^FuzzReview6ParseArgs$$' -fuzztime $(FUZZTIME) .

# bench runs every benchmark (Go benchmarks, bench/failover for each fault,
# bench/scale) and regenerates docs/performance.md, its charts in docs/img
# and the README's headline numbers. About 20 minutes on 2 cores. It runs
# from the root through go.work: it runs go test and go run on packages of
# the root, integration and bench modules.
bench: deps
	$(GO) run ./bench/report
