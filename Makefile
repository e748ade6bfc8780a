# ticker — make run serves http://127.0.0.1:8888 with the simulated feed; make test runs the whole suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-server
ARGS   ?=

.PHONY: install run test test-unit lint system-deps jemalloc bytecode clean bench stress vendor

# Tests and lint: the server and the dev tools. An edited setup.cfg or pyproject.toml reinstalls.
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[server,dev]'
	touch $(STAMP) $(RUN_STAMP)

# Running: the server's dependencies only (the base install is the client's: docs/clients.md).
$(RUN_STAMP): setup.cfg pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[server]'
	touch $(RUN_STAMP)

install: $(STAMP)

run: $(RUN_STAMP)
	$(VENV)/bin/ticker serve $(ARGS)

system-deps:
	bash .ci/system-deps.sh

# The whole suite on TEST_WORKERS processes (pytest-xdist), each test file whole on one of them
# (module fixtures are built once); TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2

# The project's modules compiled once: each server, feed or CLI process a test starts would compile them again
# where PYTHONDONTWRITEBYTECODE is set (a fifth of a second each). Stale files are rewritten (timestamps); a
# tree it cannot write, or a file that does not compile, leaves it to each process (pytest reports the latter).
bytecode: $(STAMP)
	@$(PY) -m compileall -q -x '(node_modules|\.work)' ticker feeds bench tests > /dev/null || \
	  echo "bytecode not written (a cache only): each process compiles what it imports"

test: $(STAMP) system-deps bytecode
	$(PY) -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(ARGS)

# The fast half: pure unit tests, no sockets and no processes (seconds).
test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check ticker feeds tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_import_graph.py

# make bench [QUICK=1] [SCENARIO=crowd,...] [PEERS=naive,websockets,node] [PROFILE=1|native] [DOC=]: see docs/performance.md.
BENCH_STAMP := $(VENV)/.bench-installed
BENCH_ARGS  := $(if $(QUICK),--sizes quick) $(if $(SCENARIO),--scenario $(SCENARIO)) \
               $(if $(PROFILE),--profile $(if $(filter native,$(PROFILE)),native,python)) \
               $(if $(filter command line environment,$(origin PEERS)),--peers '$(PEERS)') \
               $(if $(filter command line,$(origin DOC)),--doc '$(DOC)')

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[server,dev,bench]'
	touch $(BENCH_STAMP)

# The server runs on jemalloc where installed (--allocator auto): the bench and the stress suite measure that, and
# install it first where they can (as root); without it they measure the server on pymalloc, and say so.
jemalloc:
	@ldconfig -p 2>/dev/null | grep -q libjemalloc.so.2 || \
	  { [ "$$(id -u)" -eq 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libjemalloc2 >/dev/null; } || \
	  echo "libjemalloc2 is not installed (apt-get install libjemalloc2): the server measured runs on pymalloc"

bench: $(BENCH_STAMP) jemalloc bytecode
	@test -d bench/node/node_modules/ws || { command -v npm >/dev/null && \
	  (cd bench/node && npm ci --no-audit --no-fund --loglevel=error); } || \
	  echo "npm unavailable: the Node ws peer will be skipped"
	$(PY) -m bench.run $(BENCH_ARGS)

# make stress [QUICK=1] [ATTACK=fd,slow-readers,...,soak,storm] [DOC=]: the attacks of issue 17 beside a canary
# (about 40 minutes; QUICK=1 about 12): see docs/security.md, "Stress suite".
STRESS_ARGS := $(if $(QUICK),--sizes quick) $(if $(ATTACK),--attack $(ATTACK)) \
               $(if $(filter command line,$(origin DOC)),--doc '$(DOC)')

stress: $(BENCH_STAMP) jemalloc bytecode
	$(PY) -m bench.stress $(STRESS_ARGS)

# The page's charting library, committed in web/vendor/ (so pip install and make run need no npm):
# rebuilt from web/vendor/package-lock.json with npm ci in build/ (tests/unit/test_web_vendor.py checks it).
VENDOR_PKG := build/web-vendor/node_modules/lightweight-charts

vendor:
	rm -rf build/web-vendor && mkdir -p build/web-vendor
	cp web/vendor/package.json web/vendor/package-lock.json build/web-vendor/
	cd build/web-vendor && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	cp $(VENDOR_PKG)/dist/lightweight-charts.standalone.production.js $(VENDOR_PKG)/LICENSE web/vendor/

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find ticker feeds bench tests -name __pycache__ -type d -prune -exec rm -rf {} +
