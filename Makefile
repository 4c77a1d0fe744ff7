# dbrouter: two commands do all setup on a fresh Debian machine.
#   make demo   runs examples/failover against a MariaDB ring it starts itself
#   make test   go vet, gofmt check, and go test -race on real MariaDB rings
# Both install mariadb-server from Debian's packages when no server is found.

export PATH := $(PATH):/usr/local/go/bin
GO ?= go
TEST_TIMEOUT ?= 20m
# Test packages run one at a time (-p 1): each starts its own MariaDB rings,
# and on 2 cores two packages' rings at once starve each other's timing.

.PHONY: test demo deps vet fmt-check fuzz bench test-docker

deps:
	@scripts/ensure-mariadb.sh

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

test: deps vet fmt-check
	$(GO) test -race -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./...
	@scripts/check-orphans.sh

# test-docker runs the same tests with every ring in Docker containers
# (DBROUTER_RING_BACKEND=docker; needs a Docker engine, no registry): it
# builds the local MariaDB image when absent, then checks that no container,
# network or volume is left behind.
test-docker: vet fmt-check
	@bash ringtest/build-mariadb-image.sh
	@rc=0; DBROUTER_RING_BACKEND=docker $(GO) test -race -count=1 -p 1 -timeout $(TEST_TIMEOUT) ./... || rc=$$?; \
	scripts/check-docker-leftovers.sh || rc=1; exit $$rc

demo: deps
	$(GO) run ./examples/failover

# fuzz runs each fuzz target for FUZZTIME (default 30s).
FUZZTIME ?= 30s
fuzz:
	for f in FuzzParseConfig FuzzExpandEnv FuzzNormalizeAddr FuzzShardMap FuzzParseGTIDSet; do \
		$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) . || exit 1; \
	done

# bench runs every benchmark (Go benchmarks, bench/failover for each fault,
# bench/scale) and regenerates docs/performance.md, its charts in docs/img
# and the README's headline numbers. About 7 minutes on 2 cores.
bench: deps
	$(GO) run ./bench/report
