# The README's two commands: `make run` (set-up + the web app) and `make test` (set-up + the suite).
VENV ?= .venv
PY := $(VENV)/bin/python
# torch's CPU build: a wheel already at hand (pip's --find-links, as on this project's machines;
# its dependencies come with the package below) is taken first, otherwise PyTorch's CPU wheel
# index (the default index would give the CUDA build, gigabytes).
# Override: make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
SHARED_MNIST := $(abspath ../shared/mnist)
export DIGITREC_DATA ?= $(if $(wildcard $(SHARED_MNIST)),$(SHARED_MNIST),)

.PHONY: setup run test lint bench browser postgresql axe clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-index --no-deps torch==2.13.0 2>/dev/null \
		|| $(PY) -m pip install -q torch==2.13.0 --index-url $(TORCH_INDEX)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

browser:
	@scripts/ensure-chromium.sh

postgresql:
	@scripts/ensure-postgresql.sh

axe:
	@scripts/ensure-axe.sh

run: setup
	$(VENV)/bin/digitrec serve

lint: setup
	$(VENV)/bin/ruff check .

test: setup browser postgresql axe lint
	$(VENV)/bin/pytest -q

bench: setup
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
