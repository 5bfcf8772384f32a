# Set-up and everyday commands. `make demo` and `make test` each install what they need first.
PYTHON ?= python
PIP := $(PYTHON) -m pip

.PHONY: install demo test test-all bench masks ad attention pretraining-trunks sequence clean

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

# Algorithm Distillation on Dark Room and the attention analysis of the trained model (issue 6).
ad: install
	sb3ma ad collect --out results/ad/darkroom_histories.npz
	sb3ma ad train --dataset results/ad/darkroom_histories.npz --out results/ad/model --updates 4000 --torch-threads 1
	sb3ma ad eval results/ad/model --out results/ad/eval --episodes 100

attention: install
	sb3ma attention capture --model results/ad/model --goal 3,8 --steps 300 --full-samples 2 --out results/attention/capture.npz
	sb3ma attention analyze results/attention/capture.npz --out results/attention

# The pretrained trunks of studies/pretraining.yml (issue 7).
pretraining-trunks: install
	sb3ma pretrain --env sb3ma/TMaze-v0 --env-kwargs corridor_length=20 --history-len 24 \
		--steps 2000 --collect-steps 20000 --out results/pretraining/trunks/sb3ma-TMaze-v0.pt
	sb3ma pretrain --env CartPoleNoVel-v1 --history-len 16 --normalize-keys obs,prev_reward --inverse-horizon 2 \
		--steps 2000 --collect-steps 20000 --out results/pretraining/trunks/CartPoleNoVel-v1.pt

# The action-sequence decoder, its GRU baseline and their comparison on held-out sessions (issue 8).
sequence: install
	sb3ma events synth --sessions 2000 --duration 30 --seed 0 --out results/sequence/train.csv
	sb3ma events synth --sessions 200 --duration 30 --seed 1 --prefix t --out results/sequence/test.csv
	sb3ma events train --events results/sequence/train.csv --out results/sequence/attention --epochs 12
	sb3ma events train --events results/sequence/train.csv --out results/sequence/gru --arch gru --epochs 12
	sb3ma events eval --model results/sequence/attention --compare results/sequence/gru \
		--events results/sequence/test.csv --out results/sequence
	sb3ma events train --events results/sequence/train.csv --out results/sequence/gru_wide --arch gru --width 96 --epochs 12
	sb3ma events eval --model results/sequence/attention --compare results/sequence/gru_wide \
		--events results/sequence/test.csv --out results/sequence/matched_gru
	sb3ma events train --events results/sequence/train.csv --out results/sequence/seed1/attention --epochs 12 --seed 1
	sb3ma events train --events results/sequence/train.csv --out results/sequence/seed1/gru --arch gru --epochs 12 --seed 1
	sb3ma events eval --model results/sequence/seed1/attention --compare results/sequence/seed1/gru \
		--events results/sequence/test.csv --out results/sequence/seed1

clean:
	rm -rf .install.stamp build dist *.egg-info .pytest_cache
