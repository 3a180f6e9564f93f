# The sandbox's commands. Everything runs from the project's own venv (.venv), which the
# first command creates: Python 3.13+ and the pinned dependencies in constraints.txt.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
P ?=
comma := ,

# Host packages by mode: in Docker mode LocalStack runs in its container, so this host needs
# boto3 and the CLI only; any other mode runs LocalStack from this venv (the `embedded` extra).
HOST_MODE := $(or $(SANDBOX_MODE),$(shell cat .sandbox/mode 2>/dev/null),$(shell \
  command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 && echo docker))
EXTRAS := $(if $(filter docker,$(HOST_MODE)),dev,dev$(comma)embedded)
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
MIN_PYTHON := $(if $(filter docker,$(HOST_MODE)),12,13)

# LocalStack 4.14 imports code that needs Python 3.13 (threading.Lock as a type); Docker mode
# runs LocalStack and the handlers in containers, so the host's Python may be 3.12.
define find_python
for c in python3.14 python3.13 python3.12 python3 $$HOME/.pyenv/versions/3.1[2-9]*/bin/python3 \
         /usr/local/bin/python3.1[2-9] /opt/homebrew/bin/python3.1[2-9]; do \
  p=$$(command -v "$$c" 2>/dev/null) || continue; \
  "$$p" -c 'import sys; sys.exit(sys.version_info < (3, $(MIN_PYTHON)))' 2>/dev/null && { echo "$$p"; exit 0; }; \
done; exit 1
endef

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "Browser tests (tests/browser) drive /usr/bin/chromium; without it they skip."
	@echo "  Install it with: sudo apt-get install chromium   (Debian/Ubuntu package)"

$(PY):
	@py=$$($(find_python)) || { echo "error: the sandbox needs Python 3.$(MIN_PYTHON) or newer here, and none was found." \
	  "Install it (pyenv install 3.13, apt-get install python3.13, brew install python@3.13), then run make again." >&2; exit 1; }; \
	echo "Creating $(VENV) with $$py"; "$$py" -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	@rm -f $(VENV)/.installed*; touch $@

deps: $(STAMP) ## Create the venv and install the pinned dependencies

up: deps ## Start the sandbox (Docker if an engine answers, else embedded) and provision every pattern
	@$(PY) -m sandbox up

down: ## Stop what `make up` started
	@if [ -x $(PY) ]; then $(PY) -m sandbox down; else echo "nothing to stop (no venv)"; fi

status: deps ## Show mode, health and what is provisioned
	@$(PY) -m sandbox status

logs: deps ## Show the sandbox's log (make logs F=1 to follow)
	@$(PY) -m sandbox logs $(if $(F),-f)

list: deps ## List the patterns
	@$(PY) -m sandbox list

bootstrap: deps ## Provision all patterns, or one: make bootstrap P=<slug>
	@$(PY) -m sandbox bootstrap $(or $(P),all)

scenario: deps ## Run one pattern's scenario (and write the report): make scenario P=<slug>
	@if [ -z "$(P)" ]; then echo "usage: make scenario P=<slug>   (make list shows the slugs)" >&2; exit 2; fi
	@$(PY) -m sandbox scenario $(P)

scenarios: deps ## Run every scenario, then write the report
	@$(PY) -m sandbox scenario all

# `make test`: the sandbox as `make up` leaves it (stopped again at the end if it was not
# running), then the suite in two parallel runs of pytest-xdist (tests/conftest.py):
#   1. the tests marked waits_long, side by side: the scenarios, the poison fault, and the
#      lifecycle faults on a sandbox of their own. They mostly wait on queues, timers and
#      starts; the scenarios are the checks a loaded machine can upset, so nothing else runs;
#   2. everything else, TEST_WORKERS at a time: unit tests, sandboxes of their own, faults.
TEST_PATHS := tests/unit tests/integration tests/docker tests/browser tests/faults
TEST_WORKERS ?= 4
XDIST := --dist loadfile --no-loadscope-reorder --durations=5

test: deps lint ## Lint, then all tests: unit, browser, integration against the sandbox (started if none runs), faults; writes the report
	@if $(PY) -m sandbox status >/dev/null 2>&1; then was_running=1; else was_running=; fi; \
	$(PY) -m sandbox up || exit $$?; \
	$(PY) -m pytest -n 3 $(XDIST) -m waits_long $(TEST_PATHS); first=$$?; \
	$(PY) -m pytest -n $(TEST_WORKERS) $(XDIST) -m "not waits_long" $(TEST_PATHS); second=$$?; \
	[ -n "$$was_running" ] || $(PY) -m sandbox down; \
	$(PY) -m sandbox report; [ $$first = 0 ] && [ $$second = 0 ]

mutants: deps ## Break each pattern on purpose (its documented mutants) and check its scenario fails: make mutants [P=<slug>]
	@$(PY) -m sandbox mutants $(or $(P),all)

report: deps ## Write .sandbox/reports/index.html: every scenario's last run on a timeline
	@$(PY) -m sandbox report

faults: deps ## Inject faults for real (killed runtime and LocalStack, timeouts, log flood, poison, load, up/down races); print the accounting
	@$(PY) -m pytest tests/faults

unit: deps ## Run the unit tests only (no sandbox needed)
	@$(PY) -m pytest tests/unit

ui: deps ## Serve the live page on 127.0.0.1 (PORT=8566): resources, run buttons, the report
	@$(PY) -m sandbox ui $(if $(PORT),--port $(PORT))

bench: deps ## Print performance figures with their targets (SUITE=1 also times make test)
	@$(PY) -m sandbox bench $(if $(SUITE),--suite)

lint: deps ## ruff, mypy, and actionlint over the CI workflows
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy sandbox scenarios bootstrap
	$(VENV)/bin/actionlint .github/workflows/*.yml

pull: deps ## Fetch every Docker image the sandbox needs, so later runs work offline
	@$(PY) -m sandbox pull

lock: deps ## Re-pin constraints.txt from the venv after changing pyproject.toml
	@$(PY) -c 'import localstack' 2>/dev/null || { echo "error: make lock pins every extra, and this" \
	  "venv has no LocalStack (Docker mode). Run: make deps SANDBOX_MODE=embedded, then make lock." >&2; exit 1; }
	@{ sed -n '/^#/p' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	@mv constraints.txt.new constraints.txt

clean: down ## Remove the venv and the sandbox's state (keeps the DynamoDB Local cache)
	rm -rf $(VENV) .sandbox

.PHONY: help deps up down status logs list bootstrap scenario scenarios test mutants report ui faults unit bench lint pull lock clean
