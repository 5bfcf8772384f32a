# Set-up and everyday commands. `make demo` and `make test` each install what they need first.
PYTHON ?= python
PIP := $(PYTHON) -m pip

.PHONY: install demo test test-all bench masks clean

# torch==2.13.0 first: it is the CPU wheel our machines hold locally; any other torch
# request would download gigabytes of CUDA wheels.
install: .install.stamp
.install.stamp: setup.cfg pyproject.toml
	$(PIP) install torch==2.13.0
	$(PIP) install -e ".[dev]"
	touch $@

demo: install
	sb3ma demo

test: install
	$(PYTHON) -m pytest -q -m "not slow"

test-all: install
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/core.py

masks: install
	sb3ma masks --strategy specialized --history-len 16 --out results/masks/specialized.png
	sb3ma masks --strategy diversified --history-len 16 --out results/masks/diversified.png

clean:
	rm -rf .install.stamp build dist *.egg-info .pytest_cache
