# Thin wrappers over the medlib CLI. Every target sets up .venv/ first (idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU build of torch. On a CUDA machine: `PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cu128
# make setup TORCH=torch==2.9.1 EXTRAS=gpu,dev` (the gpu extra pins torch 2.9.1 with its torchvision 0.24.1).
TORCH ?= torch==2.13.0
EXTRAS ?= cpu,dev,demo
STAMP := $(VENV)/.medlib-setup
PARAMS ?= params/tiny.yaml

.PHONY: setup reproduce test test-all lab lint report clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	$(BIN)/python -m ipykernel install --sys-prefix --name medlib --display-name "Python 3 (medlib)" >/dev/null
	bash scripts/install_wordnet.sh || echo "WordNet not installed (needs apt): METEOR is unavailable, its tests skip"
	touch $(STAMP)

reproduce: setup  ## build the tiny model + synthetic data, run every notebook into results/tiny/
	$(BIN)/medlib run $(PARAMS)

test: setup  ## unit tests + a papermill smoke run of every notebook
	$(BIN)/python -m pytest -q

test-all: setup  ## also the slow tests
	$(BIN)/python -m pytest -q -m "not gpu"

lab: setup  ## the notebooks with $(PARAMS)' parameters injected, in <runs_dir>/lab/, opened in JupyterLab
	$(BIN)/medlib lab $(PARAMS)

report: setup  ## results/index.html and the leaderboard across all experiments
	$(BIN)/medlib report

lint: setup
	$(BIN)/ruff check medlib tests

clean:
	rm -rf runs/tiny results/tiny
