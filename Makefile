# Two commands a learner needs:  `make lab`  and  `make test`.
# Both create (once) and reuse a local virtual environment in .venv with pip.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.vaelab-installed

.PHONY: lab test notebooks student-notebooks bench site

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vaelab needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

# JupyterLab refuses to run as root (Docker, many cloud machines) without --allow-root.
LAB_AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
# JupyterLab settings, written as an override (Settings can still change them): no "get
# notified about news?" pop-up over the notebook, and widget state saved with a notebook (the
# save hook below reads a progress bar's final line from it).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.d/vaelab.json
LAB_SETTINGS := {"@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": true}, \
	"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}
# vaelab.jupyter.pre_save_hook: a saved notebook holds each explorer as its in-page copy (it
# reopens live, no kernel needed) and each progress bar as its final line, never a widget view
# that reopens as "Error displaying widget: model not found".
LAB_FLAGS := --ContentsManager.pre_save_hook=vaelab.jupyter.pre_save_hook

## Set up (first time) and open the notebook series in JupyterLab.
lab: $(STAMP)
	mkdir -p $(dir $(LAB_OVERRIDES))
	echo '$(LAB_SETTINGS)' > $(LAB_OVERRIDES)
	$(if $(LAB_AS_ROOT),@echo "make lab: running as root - JupyterLab starts with --allow-root")
	$(BIN)/jupyter lab $(LAB_AS_ROOT) $(LAB_FLAGS) notebooks/01_autoencoder.ipynb

## Set up (first time) and run every test: lint, unit tests, browser test, all notebooks (quick mode).
test: $(STAMP)
	$(BIN)/ruff check .
	VAELAB_QUICK=1 VAELAB_CACHE=$(CURDIR)/.cache/quick MPLBACKEND=agg $(BIN)/python -m pytest \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider \
		-rs tests notebooks

## Run the notebooks in full mode and store their outputs (a few minutes each).
notebooks: $(STAMP)
	for nb in notebooks/[0-9]*.ipynb; do \
		VAELAB_QUICK=0 VAELAB_CLAIMS=enforce $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.timeout=3600 "$$nb" || exit 1; \
	done
	$(BIN)/python tools/clean_notebooks.py notebooks/[0-9]*.ipynb
	$(BIN)/python -m vaelab student-notebooks

## Write notebooks/student/: the notebooks with exercise solutions replaced by stubs.
## New exercise cells tagged `solution` are first put in nbgrader's format (in place).
student-notebooks: $(STAMP)
	$(BIN)/python tools/nbgrader_cells.py notebooks/[0-9]*.ipynb
	$(BIN)/python -m vaelab student-notebooks

## Build the course website from the stored notebooks (not executed) into build/site.
site: $(STAMP)
	$(BIN)/python site/build.py build/site

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_training.py
