# NodeX build, run and test entry points. `make` alone prints this help.
#
# The go.work root has no go.mod, so `go test ./...` cannot run here: every
# target names the workspace modules through `go list -m`.

SHELL       := /bin/bash
GO          ?= go
MODULES     := $(shell $(GO) list -m -f '{{.Dir}}/...' 2>/dev/null)
BIN         := $(CURDIR)/bin
NODEX_CORPUS ?= $(abspath $(CURDIR)/../shared/corpus)
COMPOSE     := $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
GOTEST_FLAGS ?= -race -count=1 -timeout 20m
BENCH_FLAGS ?= -run '^$$' -bench . -benchtime 2s -count 1
SERVICES    := codesec sandbox-runner keyvault policy monitor incident

export NODEX_CORPUS

.DEFAULT_GOAL := help

.PHONY: help
help: ## print this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install the Debian packages the tests and benchmarks use (needs root)
	@missing=""; \
	for p in bubblewrap bats gawk debootstrap python3 nodejs; do \
		dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

.PHONY: build
build: ## build every binary into bin/
	@mkdir -p $(BIN)
	@for d in services/*/cmd/*/; do \
		name=$$(basename $$d); \
		if [ "$$name" = "sandbox-init" ]; then \
			(cd $$(dirname $$(dirname $$d)) && CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/$$name ./cmd/$$name) || exit 1; \
		else \
			(cd $$(dirname $$(dirname $$d)) && $(GO) build -trimpath -o $(BIN)/$$name ./cmd/$$name) || exit 1; \
		fi; \
	done
	@ls $(BIN)

.PHONY: run
run: build ## run everything on the embedded NATS server (nodex dev)
	$(BIN)/nodex dev

.PHONY: test
test: test-unit lint test-deploy ## every tier this machine can run: unit, sandbox, e2e, pentest, corpus sample, lint, containers

# SLOW_UNDER_RACE are tests whose work the race detector slows tenfold
# without adding coverage (100,000 envelopes per sender replica); they run
# once more without -race right after the race run.
SLOW_UNDER_RACE := ^TestNoncesNeverRepeat$$

.PHONY: test-unit
test-unit: build ## unit, embedded-NATS, sandbox and in-process end-to-end tests, with -race
	$(GO) test $(GOTEST_FLAGS) -skip '$(SLOW_UNDER_RACE)' $(MODULES)
	$(GO) test -count=1 -timeout 20m -run '$(SLOW_UNDER_RACE)' ./libs/envelope/

# BENCH_SUITE lists every benchmark as package:regexp:benchtime. The
# benchtimes keep the whole suite near 5 minutes on two loaded cores:
# benchmarks that time a fixed workload themselves and report it through
# b.ReportMetric (SecureBus, Ingest, ServicePath) run once or a fixed
# count, because a larger b.N only repeats a multi-second setup.
BENCH_SUITE := \
	'./libs/envelope/:.:2s' \
	'./libs/bus/:SecureBus:1x' \
	'./libs/bundle/:.:200x' \
	'./libs/broker/:.:200x' \
	'./services/policy/policy/:Decide:1s' \
	'./services/policy/policy/:RoleDataReload:50x' \
	'./services/keyvault/keyvault/:Retrieve:1000x' \
	'./services/codesec/internal/app/:.:2s' \
	'./services/monitor/monitor/:Ingest:1x' \
	'./services/sandbox-runner/internal/executor/:SpawnOverhead|Throughput:100x' \
	'./services/sandbox-runner/sandbox/:ServicePath:30x' \
	'./tests/bench/:NodexRun:160x' \
	'./services/nodex/examples/agent/:RunHello:48x'

.PHONY: corpus
corpus: build ## run every corpus item through the full path (about 10 minutes)
	cd tests && $(GO) test -count=1 -timeout 40m -tags corpus -run '^TestCorpus$$' -v ./corpus/

.PHONY: pentest
pentest: build ## attack an in-process deployment with nodex pentest (also part of test-unit)
	$(GO) test -count=1 -timeout 20m -run '^TestPentestAgainstDevSystem$$' -v ./services/nodex/internal/pentest/

# bench runs bench-deploy last, through a sub-make inside its recipe and not
# as a prerequisite, so that a host without Docker still runs every other
# benchmark and bench lists bench-deploy among the failed ones.
.PHONY: bench
bench: deps build ## run every benchmark, the compose deployment's last (needs Docker); output in bench.out
	@uptime | tee bench.out
	@set -o pipefail; failed=""; for entry in $(BENCH_SUITE); do \
		IFS=: read -r pkg re n <<<"$$entry"; \
		echo "== $$pkg -bench '$$re' -benchtime $$n" | tee -a bench.out; \
		$(GO) test -count 1 -timeout 20m -run '^$$' -bench "$$re" -benchtime "$$n" "$$pkg" \
			2>&1 | tee -a bench.out || failed="$$failed $$pkg($$re)"; \
	done; \
	echo "== ./tests/deploy/ -bench . (make bench-deploy)" | tee -a bench.out; \
	$(MAKE) --no-print-directory bench-deploy 2>&1 | tee -a bench.out \
		|| failed="$$failed bench-deploy"; \
	uptime | tee -a bench.out; \
	$(MAKE) --no-print-directory bench-summary; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

.PHONY: bench-summary
bench-summary: ## print the figures of the last make bench from bench.out
	@echo; echo "== summary (every figure is from this run; see docs/benchmarks.md)"
	@awk '/^== /{pkg=$$2} /^Benchmark[^ \t]*: /{print pkg, $$0; next} \
		/^Benchmark/{sub(/-[0-9]+$$/, "", $$1); printf "%s %s\n", pkg, $$1; \
		for (i = 3; i < NF; i += 2) printf "    %-32s %s\n", $$(i+1), $$i}' bench.out

.PHONY: lint
lint: ## go vet and staticcheck over every module
	$(GO) vet $(MODULES)
	@cd tools && GOWORK=off $(GO) build -o $(BIN)/staticcheck honnef.co/go/tools/cmd/staticcheck
	$(BIN)/staticcheck $(MODULES)

.PHONY: fmt
fmt: ## gofmt every Go file
	gofmt -s -w $$(git ls-files '*.go')

-include deploy/deploy.mk

.PHONY: clean
clean: ## remove built binaries and benchmark output
	rm -rf $(BIN) bench.out
