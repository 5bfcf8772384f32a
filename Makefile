# Set-up and everyday commands. Each target creates the project's virtual environment (.venv, from
# python3) unless one is active, and installs what it needs first: `make demo` the package, `make test`
# and `make lint` the package with its [dev] extra (pytest, hypothesis, Ray, ruff, mypy).
PYTHON ?= python3
ifdef VIRTUAL_ENV
VENV := $(VIRTUAL_ENV)
else
VENV := .venv
endif
BIN := $(VENV)/bin

# torch is installed first, on its own, so that the package's `torch>=2.3` installs nothing more.
# Default: torch==2.13.0 from pip's configured indexes (on our machines that is a local CPU wheel; from
# the public index it is the CUDA build, about 18 nvidia/cuda packages). CPU-only machines elsewhere:
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_INSTALL := $(BIN)/python -m pip install "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: install install-dev demo test lint format docs package bench masks ad attention pretraining-trunks sequence territory clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/.sb3ma-install
$(VENV)/.sb3ma-install: setup.cfg pyproject.toml | $(BIN)/python
	$(TORCH_INSTALL)
	$(BIN)/python -m pip install -e .
	touch $@

install-dev: $(VENV)/.sb3ma-dev
$(VENV)/.sb3ma-dev: setup.cfg pyproject.toml | $(BIN)/python
	$(TORCH_INSTALL)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(VENV)/.sb3ma-install $@

demo: install
	$(BIN)/sb3ma demo

# Learning runs and benchmarks are not tests: they live in bench/ and results/ scripts.
test: install-dev
	@echo "Tests: the README's commands included; duration: see the README's set-up section"
	$(BIN)/python -m pytest -q

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (Sphinx, API reference from the docstrings); warnings are errors, as in CI.
docs: install-dev
	$(BIN)/sphinx-build -W --keep-going -q -c docs -b html . docs/_build/html

# A release's files: sdist and wheel in dist/, checked as PyPI would (twine).
package: install-dev
	rm -rf dist
	$(BIN)/python -m build --sdist --wheel --outdir dist . > /dev/null
	$(BIN)/twine check --strict dist/*

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The core benchmark, every part, into a new folder (BENCH_OUT=results/benchmarks adds to the committed results).
BENCH_OUT ?= runs/bench/core-$(shell date +%Y%m%d-%H%M%S)
bench: install
	$(BIN)/python bench/core.py throughput --out $(BENCH_OUT)
	$(BIN)/python bench/core.py kernel --out $(BENCH_OUT)
	$(BIN)/python bench/core.py sample-efficiency --out $(BENCH_OUT)

masks: install
	$(BIN)/sb3ma masks --strategy specialized --history-len 16 --out results/masks/specialized.png
	$(BIN)/sb3ma masks --strategy diversified --history-len 16 --out results/masks/diversified.png

# Algorithm Distillation on Dark Room and the attention analysis of the trained model (issue 6).
ad: install
	$(BIN)/sb3ma ad collect --out results/ad/darkroom_histories.npz
	$(BIN)/sb3ma ad train --dataset results/ad/darkroom_histories.npz --out results/ad/model --updates 4000 --torch-threads 1
	$(BIN)/sb3ma ad eval results/ad/model --out results/ad/eval --episodes 100

attention: install
	$(BIN)/sb3ma attention capture --model results/ad/model --goal 3,8 --steps 300 --full-samples 2 \
		--out results/attention/capture.npz
	$(BIN)/sb3ma attention analyze results/attention/capture.npz --out results/attention

# The pretrained trunks of studies/pretraining.yml (issue 7).
# The committed trunks (specialized masks: the default before 0.2.0). Into TRUNKS_OUT, a new folder unless given.
TRUNKS_OUT ?= runs/pretraining-trunks-$(shell date +%Y%m%d-%H%M%S)
pretraining-trunks: install
	$(BIN)/sb3ma pretrain --env sb3ma/TMaze-v0 --env-kwargs corridor_length=20 --history-len 24 --strategy specialized \
		--steps 2000 --collect-steps 20000 --out $(TRUNKS_OUT)/sb3ma-TMaze-v0.pt
	$(BIN)/sb3ma pretrain --env CartPoleNoVel-v1 --history-len 16 --normalize-keys obs,prev_reward --inverse-horizon 2 \
		--strategy specialized --steps 2000 --collect-steps 20000 --out $(TRUNKS_OUT)/CartPoleNoVel-v1.pt

# The action-sequence decoder, its GRU baseline and their comparison on held-out sessions (issue 8).
sequence: install
	$(BIN)/sb3ma events synth --sessions 2000 --duration 30 --seed 0 --out results/sequence/train.csv
	$(BIN)/sb3ma events synth --sessions 200 --duration 30 --seed 1 --prefix t --out results/sequence/test.csv
	$(BIN)/sb3ma events train --events results/sequence/train.csv --out results/sequence/attention --epochs 12
	$(BIN)/sb3ma events train --events results/sequence/train.csv --out results/sequence/gru --arch gru --epochs 12
	$(BIN)/sb3ma events eval --model results/sequence/attention --compare results/sequence/gru \
		--events results/sequence/test.csv --out results/sequence
	$(BIN)/sb3ma events train --events results/sequence/train.csv --out results/sequence/gru_wide --arch gru --width 96 --epochs 12
	$(BIN)/sb3ma events eval --model results/sequence/attention --compare results/sequence/gru_wide \
		--events results/sequence/test.csv --out results/sequence/matched_gru
	$(BIN)/sb3ma events train --events results/sequence/train.csv --out results/sequence/seed1/attention --epochs 12 --seed 1
	$(BIN)/sb3ma events train --events results/sequence/train.csv --out results/sequence/seed1/gru --arch gru --epochs 12 --seed 1
	$(BIN)/sb3ma events eval --model results/sequence/seed1/attention --compare results/sequence/seed1/gru \
		--events results/sequence/test.csv --out results/sequence/seed1

# TerritoryControl learning runs (results/multiscale/README.md): small, medium, medium from small; hours on 2 cores.
# Into a new folder (TERRITORY_OUT=results/multiscale resumes the committed study); every step resumes or skips what
# is done in that folder, so the target can be killed and run again with the same TERRITORY_OUT.
TERRITORY_OUT ?= runs/bench/multiscale-$(shell date +%Y%m%d-%H%M%S)
territory: install
	$(BIN)/python bench/multiscale.py pilot --out $(TERRITORY_OUT)
	$(BIN)/python bench/multiscale.py learn --preset small --out $(TERRITORY_OUT)
	$(BIN)/python bench/multiscale.py learn --preset medium --out $(TERRITORY_OUT)
	$(BIN)/python bench/multiscale.py learn --preset medium --init-from small --out $(TERRITORY_OUT)
	for preset in small medium; do \
		$(BIN)/python bench/multiscale.py final-eval --preset $$preset --out $(TERRITORY_OUT) && \
		$(BIN)/python bench/multiscale.py plot --preset $$preset --out $(TERRITORY_OUT) && \
		$(BIN)/python bench/multiscale.py rliable --preset $$preset --out $(TERRITORY_OUT) && \
		$(BIN)/python bench/multiscale.py attention --preset $$preset --out $(TERRITORY_OUT) && \
		$(BIN)/python bench/multiscale.py game --preset $$preset --out $(TERRITORY_OUT) && \
		$(BIN)/python bench/multiscale_actions.py --preset $$preset --study $(TERRITORY_OUT) \
			--out $(TERRITORY_OUT)/$$preset || exit 1; \
	done
	$(BIN)/python bench/multiscale.py curriculum-sources --preset medium --out $(TERRITORY_OUT)
	$(BIN)/python bench/multiscale.py tests --out $(TERRITORY_OUT)

clean:
	rm -rf build dist docs/_build *.egg-info .pytest_cache .mypy_cache .ruff_cache
