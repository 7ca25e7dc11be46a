# Container images, deployment files and the container test tier.
# The root Makefile includes this file: `include deploy/deploy.mk`.
#
#   make images        static binaries and one image per service, the broker
#                      and nodex; the sandbox-runner on a debootstrap rootfs
#   make certs         nodex init --out deploy/compose/secrets
#   make test-deploy   the compose scenarios (build tag deploy)
#   make bench-deploy  benchmarks against the compose deployment

GO            ?= go
DEPLOY_DIR    := $(CURDIR)/deploy
DEPLOY_BUILD  := $(DEPLOY_DIR)/.build
DEPLOY_OUT    ?= $(DEPLOY_DIR)/compose/secrets
NODEX_TAG     ?= dev
# An operator with a registry may set BASE (services) and RUNNER_BASE
# (sandbox-runner) to ordinary base images, e.g. distroless/static and a
# Debian 13 image with python3, nodejs, bash, coreutils, gawk and bats.
BASE          ?= scratch
RUNNER_BASE   ?= nodex-runner-base:trixie
COMPOSE       ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
# Sandbox-runner replicas that runner.sh may start, one cgroup subtree each.
RUNNER_REPLICAS ?= 2
DEPLOY_IMAGES := broker codesec keyvault policy monitor incident nodex
DEPLOY_GOFLAGS := -trimpath -ldflags '-s -w'

export NODEX_TAG

# deploy-bin-NAME builds the static binary of image NAME into its context.
define deploy_bin
	@mkdir -p $(DEPLOY_BUILD)/$(1)/bin $(DEPLOY_BUILD)/$(1)/data
	cd services/$(2) && CGO_ENABLED=0 $(GO) build $(DEPLOY_GOFLAGS) \
		-o $(DEPLOY_BUILD)/$(1)/bin/$(3) ./cmd/$(3)
endef

.PHONY: deploy-binaries
deploy-binaries:
	$(call deploy_bin,broker,nodex,nodex-broker)
	$(call deploy_bin,nodex,nodex,nodex)
	$(call deploy_bin,codesec,codesec,codesec)
	$(call deploy_bin,keyvault,keyvault,keyvault)
	$(call deploy_bin,policy,policy,policy)
	$(call deploy_bin,monitor,monitor,monitor)
	$(call deploy_bin,incident,incident,incident)
	@mkdir -p $(DEPLOY_BUILD)/sandbox-runner
	cd services/sandbox-runner && CGO_ENABLED=0 $(GO) build $(DEPLOY_GOFLAGS) \
		-o $(DEPLOY_BUILD)/sandbox-runner/sandbox-runner ./cmd/sandbox-runner
	cd services/sandbox-runner && CGO_ENABLED=0 $(GO) build $(DEPLOY_GOFLAGS) \
		-o $(DEPLOY_BUILD)/sandbox-runner/sandbox-init ./cmd/sandbox-init

.PHONY: runner-base
runner-base: ## debootstrap the sandbox-runner base image (cached under deploy/.cache)
	@if [ "$(RUNNER_BASE)" = "nodex-runner-base:trixie" ]; then \
		$(DEPLOY_DIR)/docker/rootfs.sh; fi

.PHONY: runner-cgroups
runner-cgroups: ## create the cgroup v1 subtrees the sandbox-runner replicas write to (root)
	@for c in memory pids cpu cpuacct; do for i in $$(seq 1 $(RUNNER_REPLICAS)); do \
		mkdir -p /sys/fs/cgroup/$$c/nodex-sandbox/runner-$$i; done; done

.PHONY: images
images: deploy-binaries runner-base ## build every container image (no registry needed)
	@for s in $(DEPLOY_IMAGES); do \
		docker build -q --build-arg BASE=$(BASE) -t nodex-$$s:$(NODEX_TAG) \
			-f $(DEPLOY_DIR)/docker/service.Dockerfile $(DEPLOY_BUILD)/$$s >/dev/null \
			|| exit 1; \
		echo "image nodex-$$s:$(NODEX_TAG)"; \
	done
	docker build -q --build-arg RUNNER_BASE=$(RUNNER_BASE) \
		-t nodex-sandbox-runner:$(NODEX_TAG) \
		-f $(DEPLOY_DIR)/docker/runner.Dockerfile $(DEPLOY_BUILD)/sandbox-runner >/dev/null
	@echo "image nodex-sandbox-runner:$(NODEX_TAG)"

.PHONY: certs
certs: ## write keys, credentials and certificates to deploy/compose/secrets (nodex init)
	cd services/nodex && $(GO) build -o $(DEPLOY_BUILD)/nodex-host ./cmd/nodex
	$(DEPLOY_BUILD)/nodex-host init --out $(DEPLOY_OUT)

.PHONY: test-deploy
test-deploy: images certs runner-cgroups ## run the compose scenarios (needs Docker)
	cd tests && NODEX_COMPOSE="$(COMPOSE)" NODEX_DEPLOY_DIR=$(DEPLOY_DIR) \
		NODEX_BIN=$(DEPLOY_BUILD)/nodex-host \
		$(GO) test -tags deploy -count=1 -timeout 20m -v ./deploy/...

.PHONY: bench-deploy
bench-deploy: images certs runner-cgroups ## benchmark nodex run and publish rates against compose
	cd tests && NODEX_COMPOSE="$(COMPOSE)" NODEX_DEPLOY_DIR=$(DEPLOY_DIR) \
		NODEX_BIN=$(DEPLOY_BUILD)/nodex-host \
		$(GO) test -tags deploy -count=1 -timeout 20m -run '^$$' -bench . -benchtime 3s ./deploy/...
