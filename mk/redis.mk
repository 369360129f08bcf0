# redis-server for the integration tests (Debian package), installed only when missing. It
# brings redis-cli (redis-tools), which makes the test clusters (`redis-cli --cluster create`);
# the Sentinel tests run the sentinels as `redis-server sentinel.conf --sentinel`, the binary
# Debian's redis-sentinel package starts too.
.PHONY: redis-server
redis-server: ## install redis-server (and redis-cli) if they are not on PATH
	@{ command -v redis-server && command -v redis-cli; } >/dev/null || { \
	  echo "installing redis-server (Debian package)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q redis-server >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }; }
	@redis-server --version | cut -d' ' -f1-3

test-deps: redis-server
