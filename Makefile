# Set-up is automatic: every target creates the project-local virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE ?= examples/model_comparison.ipynb

.PHONY: help venv demo test bench clean

help:
	@echo "make demo    convert $(EXAMPLE) and run the pipeline locally with kfp.local"
	@echo "make test    run the test suite"
	@echo "make bench   run the benchmarks in bench/ (ratios against baselines measured in the same run)"
	@echo "make clean   remove the virtual environment and generated files"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@# An editable install skips data-files: enable the Jupyter server extension in the venv by hand.
	mkdir -p $(VENV)/etc/jupyter/jupyter_server_config.d
	cp jupyter-config/jupyter_server_config.d/nbconvert_kfp.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/jupyter nbconvert --to kfp $(EXAMPLE)
	$(BIN)/python $(EXAMPLE:.ipynb=_pipeline.py)
	$(BIN)/python $(EXAMPLE:.ipynb=_pipeline.py) --local

# The browser test (tests/test_browser.py) drives Debian's chromium; only `make test` needs it.
$(VENV)/.chromium: $(STAMP)
	@test -x /usr/bin/chromium || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@touch $@

test: $(STAMP) $(VENV)/.chromium
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) examples/*_pipeline.py examples/*_pipeline.yaml examples/local_outputs examples/outputs
