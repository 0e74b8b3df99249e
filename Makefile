# `make run` runs the platform, `make test` runs every test; both set up what
# they need first (Debian packages as root, then the virtual environment).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := mosquitto influxdb python3-venv python3-pip

.PHONY: run test lint format setup deps test-deps venv clean demo-config

run: setup
	$(BIN)/campus up

# The unit tests (pure logic, about 2 minutes of one core) run in the background
# while the integration tests run in order in the foreground (they start and stop
# servers and time faults); the unit tests' report follows theirs.
test: setup test-deps
	@unit_log=$$(mktemp); \
	$(BIN)/pytest -q -p no:cacheprovider --durations=5 tests/unit >"$$unit_log" 2>&1 & unit=$$!; \
	trap 'kill $$unit 2>/dev/null' INT TERM; \
	$(BIN)/pytest -q --durations=15 tests/integration; integration=$$?; \
	wait $$unit; unit_rc=$$?; \
	echo "== unit tests (run beside the integration tests)"; cat "$$unit_log"; rm -f "$$unit_log"; \
	echo "== integration exit $$integration, unit exit $$unit_rc"; \
	exit $$(( integration || unit_rc ))

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

setup: deps venv

# Debian packages, installed only when a command is missing.
deps:
	@missing=""; \
	command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	command -v influxd >/dev/null || [ -x /usr/bin/influxd ] || missing="$$missing influxdb"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv python3-pip"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The browser the page tests drive (Debian's, through its WebDriver: nothing downloaded).
test-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian packages: chromium chromium-driver"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver fonts-noto-cjk; }

venv: $(STAMP)

# grafana-client needs niquests, whose urllib3-future wheel replaces urllib3 itself
# (requests, selenium and schemathesis then run on the fork); built from source
# with URLLIB3_NO_OVERRIDE it installs beside urllib3 instead.
NO_URLLIB3_OVERRIDE := URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(NO_URLLIB3_OVERRIDE) $(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

demo-config: venv
	$(BIN)/python -m simulators.demo_campus > config/campus.yaml

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
