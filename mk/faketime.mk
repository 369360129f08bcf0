# faketime for the skewed-clock tests (Debian package), installed only when missing.
.PHONY: faketime
faketime: ## install faketime (libfaketime) if it is not on PATH
	@command -v faketime >/dev/null || { \
	  echo "installing faketime (Debian package)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q faketime >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q faketime >/dev/null; }; }
	@dpkg-query -W -f='faketime $${Version}\n' faketime 2>/dev/null || command -v faketime

test-deps: faketime
