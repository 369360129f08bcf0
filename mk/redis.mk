# redis-server for the integration tests (Debian package), installed only when missing.
.PHONY: redis-server
redis-server: ## install redis-server if it is not on PATH
	@command -v redis-server >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q redis-server >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }; }
	@redis-server --version | cut -d' ' -f1-3

test-deps: redis-server
