# wsgi-wasm: the entry points a developer or CI uses. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BUILD_PYTHON ?= /usr/bin/python3.11
BIND ?= 127.0.0.1:8000

.PHONY: help python-wasi vendor testservices test serve build-embedded regrtest speed speed-trials bench bench-go bench-snapshots bench-tenants bench-outbound profile-guest check build fuzz

help:
	@echo "make serve        build what is missing, then serve the example tenants on 127.0.0.1:8000 (BIND=ADDR for another)"
	@echo "make test         build what is missing, then run every test (what CI runs)"
	@echo "make python-wasi  build (or reuse from cache) the CPython WASI interpreter"
	@echo "make vendor       vendor Flask, Bottle, Django and the outbound tests' client libraries from Debian, as wheels, with wsgi-wasm install (site-packages/ folders)"
	@echo "make testservices unpack PostgreSQL, MariaDB and Redis from Debian for the tests (internal/testservices)"
	@echo "make regrtest     CPython's regression tests under wazero -> python-wasi/REGRTEST.md"
	@echo "make speed        interpreter speed vs native python3.11 -> python-wasi/SPEED.md"
	@echo "make speed-trials speed of each build variant tried -> python-wasi/TRIALS.md (slow)"
	@echo "make bench        gunicorn/uWSGI/wsgi-wasm, cold start, density, profile, then bench-go -> benchmarks/ (~20 min)"
	@echo "make bench-go     Go benchmarks -> benchmarks/RESULTS.md, sandbox/README.md"
	@echo "make profile-guest guest time by wasm function -> benchmarks/PROFILE.md, benchmarks/profiles/ (~2 min)"
	@echo "make bench-snapshots  snapshot-restore: cold start, memory, density -> benchmarks/SNAPSHOTS.md"
	@echo "make bench-tenants    100-1000 tenants under Zipf load: wsgi-wasm, uWSGI Emperor, gunicorn behind nginx -> benchmarks/TENANTS.md"
	@echo "make bench-outbound   Flask+pg8000 vs gunicorn, round trip, HTTPS, PBKDF2 natively and in the sandbox -> benchmarks/OUTBOUND.md"
	@echo "make build-embedded  one binary with the interpreter inside -> bin/wsgi-wasm-embedded"
	@echo "make check        gofmt, go vet, go mod tidy, then git diff --exit-code"
	@echo "make fuzz         every fuzz target for FUZZTIME each (default 30s); crashers land in testdata/fuzz/"

python-wasi:
	@bash python-wasi/build.sh >/dev/null

build:
	$(GO) build -o bin/wsgi-wasm ./cmd/wsgi-wasm

# One self-contained binary with the interpreter and stdlib zip embedded.
build-embedded: python-wasi
	rm -rf python-wasi/embedded/files && mkdir -p python-wasi/embedded/files/lib
	d=$$(bash python-wasi/build.sh dir) && cp $$d/python.wasm $$d/python-reactor.wasm python-wasi/embedded/files/ && cp $$d/lib/python311.zip python-wasi/embedded/files/lib/
	$(GO) build -tags embed -o bin/wsgi-wasm-embedded ./cmd/wsgi-wasm

vendor: python-wasi
	@bash examples/vendor.sh

testservices:
	@bash internal/testservices/install.sh

test: python-wasi vendor testservices
	$(GO) vet ./...
	$(GO) test -race -count=1 -p 1 ./...
	# Tests that cannot run under -race (pool/warm_sketch_test.go says why).
	$(GO) test -count=1 -run 'TestWarmSetKeepsHotTenantsUnderUnevenTraffic|TestWarmSetCostUpdatesKeepBudget' ./pool/

serve: python-wasi vendor build
	./bin/wsgi-wasm serve --tenant-dir examples/tenants --data-dir $${XDG_DATA_HOME:-$$HOME/.local/share}/wsgi-wasm/data --bind $(BIND)

regrtest: python-wasi build
	bash python-wasi/regrtest.sh

speed: python-wasi build
	bash python-wasi/speed.sh

speed-trials: python-wasi build
	bash python-wasi/speed.sh --trials

# Installs what it compares against (benchmarks/install.sh), then writes
# benchmarks/RESULTS.md and the plots; extra cold-start rows with
# BENCH_FLAGS='--coldstart-variant "LABEL=SERVE FLAGS"'.
bench: python-wasi vendor build
	$(BUILD_PYTHON) benchmarks/bench.py --binary bin/wsgi-wasm $(BENCH_FLAGS)
	$(BUILD_PYTHON) benchmarks/gobench.py 5

bench-go: python-wasi vendor
	$(BUILD_PYTHON) benchmarks/gobench.py 5

bench-snapshots: python-wasi vendor
	$(GO) run ./benchmarks/snapbench

# Many tenants under Zipf traffic (benchmarks/tenantload), against uWSGI
# Emperor and gunicorn behind nginx; TENANTS_FLAGS for other sizes and rates
# (tenants.py --help). Not part of `make test`. The default is the run in
# TENANTS.md: gunicorn (42 MiB per idle tenant) and the nginx row only at
# 100 tenants, uWSGI up to 500 (22 MiB per idle tenant), and two cells
# under a memory budget.
TENANTS_FLAGS ?= --tenants 100,500,1000 --max-tenants gunicorn=100 --max-tenants "wsgi-wasm + nginx=100" \
	--max-tenants "uWSGI Emperor=500" --budget-cell 100:512 --budget-cell 1000:8192
bench-tenants: python-wasi vendor build
	$(GO) build -o bin/tenantload ./benchmarks/tenantload
	$(BUILD_PYTHON) benchmarks/tenants.py --binary bin/wsgi-wasm $(TENANTS_FLAGS)

# Where the guest's time goes, by wasm function (internal/guestprof):
# pprof profiles of a hello-Flask request and speed workloads.
profile-guest: python-wasi vendor
	GUESTPROF_DIR=$(CURDIR)/benchmarks/profiles GUESTPROF_REPORT=$(CURDIR)/benchmarks/PROFILE.md $(GO) test ./benchmarks -run '^TestGuestProfile$$' -count=1 -v -timeout 30m

# Outbound connections against real PostgreSQL, Redis and HTTPS servers
# (benchmarks/outbound_test.go); `make test` runs the same harness as a
# smoke run that writes into a temporary folder.
bench-outbound: python-wasi vendor testservices
	WSGI_WASM_BENCH_OUTBOUND=$(CURDIR)/benchmarks/OUTBOUND.md $(GO) test ./benchmarks -run '^TestOutboundFigures$$' -count=1 -v -timeout 30m

# Every fuzz target of the module in turn (go test -fuzz takes one target
# per run); their seed corpora run in every `go test` already.
FUZZTIME ?= 30s
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' .); do \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -c6-); do \
			echo "== $$t in $$(dirname $$f) ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$(dirname $$f)/; \
		done; \
	done

check:
	gofmt -l . | (! grep .)
	$(GO) vet ./...
	$(GO) mod tidy
	git diff --exit-code
