# Packaging (issue 16): the sdist and wheel, the lowest declared versions, the image locks.
#
# `make test-lowest` keeps pyproject's lower bounds true: it builds the sdist and, from it,
# the wheel with the lowest setuptools that [build-system] allows; installs the wheel with
# `uv pip install --resolution lowest-direct` (every direct dependency at its declared
# minimum, the `test` group's too) into a fresh venv; and runs the unit tests and the Redis
# integration tests on it (compiled to bytecode, as pip installs: the processes the tests
# start would otherwise compile every module on each start), from the unpacked sdist with
# the source packages removed (so every import is the installed wheel's; the tests that run
# `make` there find that venv through VENV, its .installed stamp written once the wheel is
# in). `make test` runs it.
# `make lock` writes images/locks/*.txt (exact versions with hashes, what the images
# install); tests/unit/test_packaging.py fails when they no longer match pyproject.

LOWEST_TESTS := tests/unit tests/integration/test_redis_leases.py \
  tests/integration/test_redis_runtime.py tests/integration/test_fencing.py \
  tests/integration/test_metrics_exposition.py tests/integration/test_log_shape.py
LOCKS_DIR := images/locks
export UV_CACHE_DIR ?= $(TICKWORK_CACHE)/uv-cache

.PHONY: dist test-lowest lock

dist: $(UV) ## build the sdist and wheel into dist/
	$(UV) build --out-dir dist .

test-lowest: $(UV) helm prometheus redis-server ## the unit and Redis tests on the built wheel at the lowest declared versions
	@set -e; tmp="$$(mktemp -d)"; trap 'rm -rf "$${tmp}"' EXIT; \
	$(UV) venv --quiet --python $(PYTHON) "$${tmp}/build"; \
	$(PYTHON) images/requirements.py build >"$${tmp}/build-requirements.txt"; \
	$(UV) pip install --quiet --python "$${tmp}/build" --resolution lowest-direct -r "$${tmp}/build-requirements.txt"; \
	echo "== build backend at its lowest: $$($(UV) pip freeze --quiet --python "$${tmp}/build" | tr '\n' ' ')"; \
	$(UV) build --quiet --no-build-isolation --python "$${tmp}/build" --out-dir "$${tmp}/dist" .; \
	mkdir "$${tmp}/src"; tar -xzf "$${tmp}"/dist/*.tar.gz -C "$${tmp}/src" --strip-components=1; \
	rm -rf "$${tmp}/src/worker_runtime" "$${tmp}/src/operator"; \
	$(UV) venv --quiet --python $(PYTHON) "$${tmp}/venv"; \
	$(UV) pip install --quiet --compile-bytecode --python "$${tmp}/venv" --resolution lowest-direct \
	  -r "$${tmp}/src/pyproject.toml" --extra operator --group "$${tmp}/src/pyproject.toml:test" \
	  "$$(ls "$${tmp}"/dist/*.whl)[operator]"; \
	echo "== installed (lowest direct versions):"; \
	$(UV) pip freeze --quiet --python "$${tmp}/venv" | tr '\n' ' '; echo; \
	cd "$${tmp}/src"; \
	"$${tmp}/venv/bin/python" -c 'import sys, worker_runtime, worker_operator; \
	  paths = [worker_runtime.__file__, worker_operator.__file__]; \
	  sys.exit(None if all("site-packages" in p for p in paths) else f"not the wheel: {paths}")'; \
	touch "$${tmp}/venv/bin/.installed"; \
	VENV="$${tmp}/venv" "$${tmp}/venv/bin/pytest" -q -p no:cacheprovider $(LOWEST_TESTS)

lock: $(UV) ## write images/locks/*.txt: what the images install, exact versions with hashes
	@mkdir -p $(LOCKS_DIR); set -e; \
	compile() { out=$$1; shift; \
	  $(UV) pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
	    --no-header --output-file "$${out}" "$$@"; }; \
	$(PYTHON) images/requirements.py build | compile $(LOCKS_DIR)/build.txt -; \
	compile $(LOCKS_DIR)/worker.txt pyproject.toml; \
	compile $(LOCKS_DIR)/operator.txt pyproject.toml --extra operator; \
	echo "wrote $(LOCKS_DIR)/build.txt worker.txt operator.txt"

test: test-lowest
