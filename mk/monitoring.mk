# Monitoring (issue 4): Prometheus alert rules, their promtool tests, the Grafana dashboard.
# `make prometheus` installs the Debian package `prometheus` (2.42: prometheus + promtool)
# only when either binary is missing from PATH. The package's own service is never left
# running: tests start their own Prometheus on 127.0.0.1 with a temporary storage dir.

MONITORING_DIR := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../monitoring)
# Root installs directly; anyone else goes through sudo.
APT_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: prometheus monitoring-check

prometheus: ## Install prometheus + promtool (Debian package) if not on PATH
	@if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then \
	  exit 0; \
	fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt_run() { $(APT_SUDO) env DEBIAN_FRONTEND=noninteractive "$$@"; }; \
	candidate=$$(apt-cache policy prometheus 2>/dev/null || true); \
	if ! grep -q 'Candidate: [0-9]' <<<"$$candidate"; then \
	  echo "== apt-get update (no candidate for prometheus yet)"; \
	  apt_run apt-get update -qq; \
	fi; \
	policy=/usr/sbin/policy-rc.d; \
	if [ ! -e $$policy ]; then \
	  trap 'apt_run rm -f '$$policy EXIT; \
	  printf '#!/bin/sh\n# tickwork: do not start services during this install\nexit 101\n' \
	    | apt_run tee $$policy >/dev/null; \
	  apt_run chmod 0755 $$policy; \
	fi; \
	echo "== apt-get install prometheus (without recommends: no node exporter)"; \
	apt_run apt-get install -y -qq --no-install-recommends \
	  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold prometheus; \
	if [ -d /run/systemd/system ]; then \
	  apt_run systemctl disable --now prometheus.service >/dev/null 2>&1 || true; \
	elif [ -e /run/prometheus/prometheus.pid ]; then \
	  apt_run start-stop-daemon --stop --quiet --oknodo --retry=TERM/30/KILL/5 \
	    --pidfile /run/prometheus/prometheus.pid --exec /usr/bin/prometheus || true; \
	fi; \
	prometheus --version 2>&1 | sed -n 1p; promtool --version 2>&1 | sed -n 1p

monitoring-check: prometheus ## promtool: check and unit-test the alert rules
	promtool check rules $(MONITORING_DIR)/alerts.yaml
	cd $(MONITORING_DIR) && promtool test rules alerts_test.yaml

# promtool runs in the unit tests (tests/unit/test_monitoring_files.py), prometheus in the
# integration tests (tests/integration/test_prometheus.py).
test-unit: prometheus
test-deps: prometheus
