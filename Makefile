# fleet-sandbox: the two commands of the quickstart are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps demo demo-local test test-real test-unit test-explore test-team test-under-load lint bench serve clean toolchain peers

# Idempotent: rebuilds the environment only when the lock or the project changes.
setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# Debian packages the integration tests run for real (idempotent; apt-get only when missing).
system-deps:
	sh scripts/install-system-deps.sh

demo: setup
	$(BIN)/sandbox demo

# The demo on real local clusters (Kubernetes and Flux built from Go modules, docs/local-cluster.md): the first run
# builds the toolchain (about 25 minutes on two cores), later runs take minutes.
demo-local: setup toolchain
	$(BIN)/sandbox demo --cluster local

# Everything, the real tier included (tests/real: local clusters from the toolchain, which is built first when
# missing: about 25 minutes on two cores the first time, nothing afterwards; docs/toolchain.md).
test: setup system-deps toolchain
	$(BIN)/pytest -q -n 4 --dist loadfile

# The real tier alone: real local clusters (Kubernetes and Flux built by make toolchain; docs/local-cluster.md), and
# the real side of the simulated-vs-real conformance scenarios (tests/conformance; docs/simulation.md).
test-real: setup toolchain
	$(BIN)/pytest -q -m real tests/real tests/conformance

# The Go peers the differential tests and `make bench` run beside the project (docs/peers.md): only semver-peer,
# built in seconds and cached by scripts/toolchain.py (`make test` builds the whole toolchain, the peer included).
# Without Go the build fails, the make goes on, and the differential test skips (fails under CI, tests/realparts.py).
peers:
	$(PYTHON) scripts/toolchain.py --only semver-peer || echo "make: semver-peer not built: its differential test will skip (fail under CI)"

# The whole suite RUNS times in a row with every CPU kept busy (flaky tests show up here).
test-under-load: setup system-deps
	sh scripts/test-under-load.sh $(or $(RUNS),3)

# The team setup alone: Prefect server on PostgreSQL with two workers, and the UI form in Chromium.
test-team: setup system-deps
	$(BIN)/pytest -q tests/integration/test_team_server.py tests/integration/test_serve_ui.py

test-unit: setup
	$(BIN)/pytest -q -m "not integration"

# The property tests with the explore profile: random, ten times the examples (make test runs them derandomized).
test-explore: setup peers
	$(BIN)/pytest -q -n 4 --dist loadfile -m hypothesis --hypothesis-profile=explore

lint: setup
	$(BIN)/ruff check sandbox flows tasks cli deployments tests bench
	$(BIN)/ruff format --check sandbox flows tasks cli deployments tests bench scripts
	$(BIN)/mypy

# A local Prefect server (not the ephemeral one: schedules need a real server) with the deployments served.
serve: setup
	$(BIN)/python -m deployments.serve $(if $(CONFIG),--config $(CONFIG)) $(if $(PORT),--port $(PORT))

# The real-cluster binaries (Kubernetes control plane, etcd, kwok, Flux controllers) built from the pinned Go modules
# in toolchain/ into $${FLEET_SANDBOX_CACHE:-~/.cache/fleet-sandbox}; builds only what is missing (docs/toolchain.md).
toolchain:
	$(PYTHON) scripts/toolchain.py

bench: setup peers
	$(BIN)/python -m bench

# A local demo's clusters are stopped before their directory goes (their processes would outlive it, unfindable).
clean:
	test ! -d .demo-local || ! test -x $(BIN)/python || $(BIN)/python -m sandbox.localcluster stop-below --dir .demo-local
	rm -rf .demo .demo-local .fleet-sandbox .pytest_cache .mypy_cache .ruff_cache
