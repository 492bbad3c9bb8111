# Kubernetes delivery: chart checks, the container image, the kind end-to-end run.
# Included from the root Makefile, whose `sync` and $(RUN) it uses.

HELM := .local/bin/helm
CHART := deploy/helm/streamer
DOCKER ?= docker
KIND ?= kind
IMAGE ?= streamer
IMAGE_TAG ?= $(shell sed -n 's/^appVersion: *"*\([^"]*\)"*$$/\1/p' $(CHART)/Chart.yaml)

$(HELM):
	bash deploy/tools/install-helm.sh

.PHONY: chart-lint
chart-lint: $(HELM) ## helm lint --strict the chart with its defaults and every ci/*-values.yaml
	$(HELM) lint --strict $(CHART)
	@for values in $(CHART)/ci/*-values.yaml; do \
	  echo "$(HELM) lint --strict $(CHART) --values $$values"; \
	  $(HELM) lint --strict $(CHART) --values "$$values" >/dev/null || exit 1; \
	done

.PHONY: chart-check
chart-check: sync $(HELM) ## Offline chart checks: lint, render, Kubernetes schemas, policies
	$(RUN) pytest tests/chart $(PYTEST_ARGS)

.PHONY: image
image: ## Build the container image streamer:<appVersion> (needs a Docker engine)
	@DOCKER="$(DOCKER)" bash deploy/tools/need.sh docker "make image"
	$(DOCKER) build --file deploy/docker/Dockerfile --build-arg VERSION=$(IMAGE_TAG) \
	  --tag $(IMAGE):$(IMAGE_TAG) .

.PHONY: image-lint
image-lint: sync ## hadolint the Dockerfile
	$(RUN) hadolint deploy/docker/Dockerfile

.PHONY: kind-e2e
kind-e2e: ## On a kind cluster: install, helm test, stream via port-forward (needs Docker, kind)
	@DOCKER="$(DOCKER)" KIND="$(KIND)" bash deploy/tools/need.sh docker,kind,grpcurl "make kind-e2e"
	$(MAKE) --no-print-directory image $(HELM) sync
	DOCKER="$(DOCKER)" KIND="$(KIND)" UV="$(UV)" IMAGE="$(IMAGE):$(IMAGE_TAG)" \
	  bash deploy/tools/kind-e2e.sh
