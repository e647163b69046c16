# meters — the two commands a newcomer types are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'pip==26.3'
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,cluster]'   # versions pinned: see constraints.txt
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then \
	  echo "mosquitto: found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq mosquitto mosquitto-clients; \
	else \
	  echo "error: mosquitto is not installed and apt-get is unavailable; install Mosquitto 2.x (mosquitto, mosquitto_passwd, mosquitto_pub) and re-run make setup"; exit 1; \
	fi
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "postgresql: found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; \
	else \
	  echo "error: postgresql is not installed and apt-get is unavailable; install PostgreSQL (initdb, pg_ctl: the account store tests start a throwaway cluster) and re-run make setup"; exit 1; \
	fi
	@if command -v systemd-analyze >/dev/null 2>&1; then \
	  echo "systemd-analyze: found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq systemd; \
	else \
	  echo "note: systemd-analyze not found: tests/test_systemd_units.py skips its verify test (fails on CI)"; \
	fi
	@if command -v chromium >/dev/null 2>&1 && fc-list :lang=zh 2>/dev/null | grep -q .; then \
	  echo "chromium: found"; \
	elif command -v apt-get >/dev/null 2>&1; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium fonts-wqy-zenhei; \
	else \
	  echo "error: chromium is not installed and apt-get is unavailable; install Chromium and a Chinese font (the web pages' browser tests drive it headless) and re-run make setup"; exit 1; \
	fi
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/meters demo

test: setup
	$(PY) -m pytest -n 2 --dist loadfile   # two processes (pytest-xdist); plain `pytest` runs serially

bench: setup
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
