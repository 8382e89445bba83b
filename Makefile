# Set-up is automatic: every target creates the project-local virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
# A second venv holding the declared minimum versions of the dependencies (`make test-floors`).
FLOORS := .venv-floors
EXAMPLE ?= examples/model_comparison.ipynb

.PHONY: help venv demo test test-fast test-floors coverage bench clean

help:
	@echo "make demo    convert $(EXAMPLE) and run the pipeline locally with kfp.local"
	@echo "make test    run the test suite (test-floors first)"
	@echo "make test-fast  the in-process tier, tests/unit and tests/golden: no process started (under half a minute)"
	@echo "make test-floors  run tests/floors against the declared minimum dependency versions"
	@echo "make coverage  run the suite under coverage.py, processes it starts included, and report"
	@echo "make bench   run the benchmarks in bench/ (ratios against baselines measured in the same run)"
	@echo "make clean   remove the virtual environment and generated files"

# `make demo` installs nbconvert-kfp and what the example notebook imports; `make test` adds the
# test extra (TensorFlow, PyTorch, JupyterLab, ...) to the same venv, in one resolution with the demo's.
$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "demo: installing nbconvert-kfp, kfp and the example's libraries into $(VENV) (about a minute)"
	$(BIN)/python -m pip install --quiet -e ".[demo]"
	touch $(DEMO_STAMP)

# The test extra is large (about 220 packages, 4 GB): uv installs it in well under a minute where pip took
# two. torch goes first, through pip, and on its own: so asked, pip takes a CPU-only build where the
# machine's pip configuration offers one (a find-links folder, say), where inside a resolution of the whole
# extra pip 26 and uv took PyPI's CUDA build of the same version and 3 GB of NVIDIA libraries.
# uv then keeps the torch it finds installed.
TORCH := $(shell sed -n 's/.*"\(torch==[^"]*\)".*/\1/p' pyproject.toml)

$(STAMP): pyproject.toml | $(VENV)/bin/python
	@echo "test: installing the test dependencies into $(VENV): TensorFlow, PyTorch, XGBoost, JupyterLab, ..."
	$(BIN)/python -m pip install --quiet uv "$(TORCH)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[demo,test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# An editable install skips data-files: enable the Jupyter server extension in the venv by hand.
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	cp jupyter-config/jupyter_server_config.d/nbconvert_kfp.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	touch $(DEMO_STAMP) $(STAMP)

venv: $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/jupyter nbconvert --to kfp $(EXAMPLE)
	$(BIN)/python $(EXAMPLE:.ipynb=_pipeline.py)
	$(BIN)/python $(EXAMPLE:.ipynb=_pipeline.py) --local

# The browser tests (tests/browser/) drive Debian's chromium; only `make test` needs it.
$(VENV)/.chromium: | $(VENV)/bin/python
	@test -x /usr/bin/chromium || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@touch $@

# The two venvs and chromium are installed side by side (pip mostly keeps one CPU busy); then the floors
# tier runs, then the suite, on every CPU (pytest-xdist: each test keeps to its own folders, ports and processes).
test:
	@$(MAKE) --no-print-directory -j2 $(STAMP) $(VENV)/.chromium $(FLOORS)/.installed FLOORS_AFTER=$(STAMP)
	@# Where PYTHONDONTWRITEBYTECODE is set, every process the tests start would compile the package again.
	$(BIN)/python -m compileall -q nbconvert_kfp >/dev/null
	@$(MAKE) --no-print-directory test-floors
	$(BIN)/python -m pytest -n auto

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n auto tests/unit tests/golden

# The floors come from pyproject.toml alone: .ci/floors.py turns each `name>=X` of [project]
# dependencies into the constraint `name==X`. constraints.txt is rewritten only when it changes,
# so an edit elsewhere in pyproject.toml does not reinstall the venv.
$(FLOORS)/constraints.txt: pyproject.toml .ci/floors.py
	@mkdir -p $(FLOORS)
	$(PYTHON) .ci/floors.py > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(FLOORS)/.deps: $(FLOORS)/constraints.txt
	@echo "test-floors: creating the venv $(FLOORS) with the declared minimum versions"
	$(PYTHON) -m venv --clear $(FLOORS)
	@echo '*' > $(FLOORS)/.gitignore
	$(PYTHON) .ci/floors.py > $(FLOORS)/constraints.txt
	$(FLOORS)/bin/python -m pip install --quiet uv
	@# numpy and pandas for the example notebook
	$(FLOORS)/bin/uv pip install --quiet --compile-bytecode --python $(FLOORS)/bin/python -r $(FLOORS)/constraints.txt \
	  pytest nbclient ipykernel numpy pandas -c $(FLOORS)/constraints.txt
	@touch $@

# nbconvert-kfp itself goes in last, and (under `make test`) after the main venv's editable install: both
# builds write nbconvert_kfp.egg-info into this folder.
$(FLOORS)/.installed: $(FLOORS)/.deps | $(FLOORS_AFTER)
	$(FLOORS)/bin/uv pip install --quiet --compile-bytecode --python $(FLOORS)/bin/python -e . -c $(FLOORS)/constraints.txt
	@touch $@

test-floors: $(FLOORS)/.installed
	$(FLOORS)/bin/python -m pytest -q tests/floors

# The processes the tests start find the configuration and the data file through the environment.
coverage: $(STAMP) $(VENV)/.chromium
	rm -f .coverage .coverage.*
	@# The report comes also when a test fails (timing tests can, under coverage); the status is pytest's.
	status=0; COVERAGE_FILE=$(CURDIR)/.coverage COVERAGE_RCFILE=$(CURDIR)/pyproject.toml \
	  $(BIN)/python -m coverage run -m pytest -n auto -q || status=$$?; \
	$(BIN)/python -m coverage combine -q && $(BIN)/python -m coverage report --sort=cover; exit $$status

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(FLOORS) .coverage .coverage.* examples/*_pipeline.py examples/*_pipeline.yaml examples/*/*_pipeline.py examples/*/*_pipeline.yaml examples/local_outputs examples/*/local_outputs examples/outputs
