# The ecosystem's own tools (issue 16), each pinned in hack/tools.env and built or installed
# once into $(TICKWORK_CACHE)/tools/NAME-VERSION/ (never into the repository):
#   kubeconform, kube-score, pluto, ct (chart-testing)   Go modules, `go build` (hack/build-go-tool.sh)
#   uv; yamllint and yamale (ct lint calls them)          PyPI, each in a virtual environment
# kube-linter is not among them: its module (golang.stackrox.io/kube-linter) is not served by
# the Go module proxy that this project's machines reach; kube-score checks the same ground.
# tests/support/tools.py computes the same paths (keep the two in step).

include $(dir $(lastword $(MAKEFILE_LIST)))../hack/tools.env
include $(dir $(lastword $(MAKEFILE_LIST)))../hack/versions.env

TOOLS_DIR := $(TICKWORK_CACHE)/tools
BUILD_GO_TOOL := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../hack/build-go-tool.sh)
KUBECONFORM := $(TOOLS_DIR)/kubeconform-$(KUBECONFORM_VERSION)/kubeconform
KUBE_SCORE := $(TOOLS_DIR)/kube-score-$(KUBE_SCORE_VERSION)/kube-score
PLUTO := $(TOOLS_DIR)/pluto-$(PLUTO_VERSION)/pluto
CT := $(TOOLS_DIR)/ct-$(CHART_TESTING_VERSION)/ct
KSTATUS := $(TOOLS_DIR)/kstatus-$(KSTATUS_VERSION)/kstatus
UV_HOME := $(TOOLS_DIR)/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
CT_PYTHON := $(TOOLS_DIR)/ct-python-yamllint-$(YAMLLINT_VERSION)-yamale-$(YAMALE_VERSION)
# kubeconform's schemas of the built-in kinds, made offline from the swagger.json of the
# Kubernetes release the test cluster runs (hack/kube_json_schemas.py).
KUBE_SCHEMAS := $(TOOLS_DIR)/kube-json-schemas-$(KUBERNETES_VERSION)

.PHONY: tools uv kube-schemas kstatus

$(KUBECONFORM):
	@$(BUILD_GO_TOOL) $@ github.com/yannh/kubeconform $(KUBECONFORM_VERSION) github.com/yannh/kubeconform/cmd/kubeconform

$(KUBE_SCORE):
	@$(BUILD_GO_TOOL) $@ github.com/zegl/kube-score $(KUBE_SCORE_VERSION) github.com/zegl/kube-score/cmd/kube-score

# hack/kstatus: cli-utils' kstatus over `kubectl get -o json` (tests/e2e/test_real_node.py).
$(KSTATUS): hack/kstatus/main.go hack/kstatus/go.mod
	@$(dir $(BUILD_GO_TOOL))build-kstatus.sh $@

kstatus: $(KSTATUS) ## build hack/kstatus (cli-utils' kstatus status of objects; cached)

$(PLUTO):
	@$(BUILD_GO_TOOL) $@ github.com/fairwindsops/pluto/v5 $(PLUTO_VERSION) github.com/fairwindsops/pluto/v5/cmd/pluto

# ct reads its default chart_schema.yaml and lintconf.yaml from $(dir $(CT))etc (CT_CONFIG_DIR).
$(CT): $(CT_PYTHON)/.installed
	@$(BUILD_GO_TOOL) $@ github.com/helm/chart-testing/v3 $(CHART_TESTING_VERSION) github.com/helm/chart-testing/v3/ct etc

$(CT_PYTHON)/.installed:
	@test -x $(CT_PYTHON)/bin/python || $(PYTHON) -m venv $(CT_PYTHON)
	@$(CT_PYTHON)/bin/python -m pip install --quiet --disable-pip-version-check \
	  yamllint==$(YAMLLINT_VERSION) yamale==$(YAMALE_VERSION)
	@touch $@

$(UV):
	@test -x $(UV_HOME)/bin/python || $(PYTHON) -m venv $(UV_HOME)
	@$(UV_HOME)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

uv: $(UV) ## install uv (cached outside the repository)

$(KUBE_SCHEMAS)/.done: hack/kube_json_schemas.py
	@set -e; command -v go >/dev/null || { echo "kube-schemas needs the go command" >&2; exit 1; }; \
	dir="$$(cd $(TOOLS_DIR) && GOFLAGS=-mod=mod go mod download -json k8s.io/kubernetes@$(KUBERNETES_VERSION) \
	  | $(PYTHON) -c 'import json, sys; d = json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error")))')"; \
	rm -rf $(KUBE_SCHEMAS); \
	$(PYTHON) hack/kube_json_schemas.py kubernetes "$${dir}/api/openapi-spec/swagger.json" $(KUBE_SCHEMAS); \
	touch $@

kube-schemas: $(KUBE_SCHEMAS)/.done ## kubeconform's JSON schemas of Kubernetes $(KUBERNETES_VERSION), made offline (cached)

tools: $(KUBECONFORM) $(KUBE_SCORE) $(PLUTO) $(CT) $(UV) $(KUBE_SCHEMAS)/.done $(KSTATUS) helm prometheus ## build/install kubeconform, kube-score, pluto, ct, uv, kstatus and kubeconform's schemas (cached)

# tests/integration/test_ecosystem_tools.py runs them.
test-deps: tools
