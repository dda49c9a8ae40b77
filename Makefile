# Schoolgate: `make run` starts the gateway, `make test` runs every test. Both work from a fresh
# clone: they create .venv with Python 3.12+ (found by scripts/find-python) and install into it.

VENV    := .venv
PY      := $(VENV)/bin/python
CONFIG  ?= config/schoolgate.yaml
PYTEST_ARGS ?=

.PHONY: run check-config test test-unit lint bench bench-proxy clean

run: $(VENV)/.installed
	$(VENV)/bin/schoolgate run --config $(CONFIG)

# The config (CONFIG=path to check another) read as `make run` would read it, without starting
# anything: exit status 2 and a line per problem, naming the file and line, if it would refuse it.
check-config: $(VENV)/.installed
	$(VENV)/bin/schoolgate config check --config $(CONFIG)

# Lint first: a type error or a broken import rule fails in seconds, not after the e2e suite.
test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The fast tests alone (no subprocess gateway, no browser): about half a minute.
test-unit: $(VENV)/.installed-test
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

# ruff over the code, tests and benchmarks; mypy over the package (settings in pyproject.toml).
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check proxy tests benchmarks
	$(VENV)/bin/mypy

bench: $(VENV)/.installed-test
	$(PY) benchmarks/run.py

# Schoolgate against bare mitmdump and e2guardian through wrk and an HTTPS CONNECT load
# generator, in a private network namespace (loopback only): needs root, nginx-light, wrk,
# e2guardian, gcc and libssl-dev. About 15 minutes; BENCH_PROXY_SECONDS, BENCH_PROXY_RUNS and
# BENCH_PROXY_ARGS (such as "--mixes http,https-1 --ut1") change what it runs.
bench-proxy: $(VENV)/.installed-test
	$(PY) benchmarks/bench_proxy.py

$(VENV)/.created:
	@python=$$(scripts/find-python) || exit 1; \
	echo "Creating $(VENV) with $$python"; \
	"$$python" -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@touch $@

$(VENV)/.installed: $(VENV)/.created pyproject.toml
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

clean:
	rm -rf $(VENV) build proxy/*.egg-info .pytest_cache test-artifacts
