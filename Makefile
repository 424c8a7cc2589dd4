# ESG-ConvNeXt companion. Every target works on its own from a fresh clone.
#   make reproduce [PROFILE=smoke|cpu|paper]   set up, then regenerate the paper's tables and figures
#                  [TRAIN=missing]            cpu/paper: also train missing runs (hours); default: none
#   make test [PYTEST_WORKERS=2]               set up, then run the test suite (in 2 processes; 0: in one)
#   make fuzz [FUZZ_INPUTS=10000]              fuzz images, archives, records, checkpoints and --set values
#                                              (~40 min on 2 cores); table in results/benchmarks/fuzz.md
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= smoke
TORCH_REQUIREMENTS ?= requirements-torch.txt
KERNEL ?= esg-lib
PYTEST_ARGS ?= --durations=25
# pytest-xdist workers for make test (0: one process); tests/conftest.py pins each to a core of its own
PYTEST_WORKERS ?= 2

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install git-filter reproduce test fuzz lab lock clean-venv help
help:
	@grep -E '^#  ' Makefile | sed 's/^#  //'

install: $(STAMP) git-filter

# Executed notebook outputs never reach git: .gitattributes sends *.ipynb through the "nbstripout"
# filter, defined here in this clone's git config (runs every install: cheap, and follows a moved venv).
# Not marked required, so git still works in a clone whose venv is gone (it then stores notebooks as is).
# The index refresh runs the filter once over files a fresh clone wrote in the same second as its index
# ("racily clean"), so that later `git status` calls (run records ask it) stay fast.
# Besides nbstripout's defaults: what a kernel writes into language_info (the committed notebooks keep
# only its name) and JupyterLab's trusted flag. .jupyter/jupyter_server_config.py strips the same keys.
NB_EXTRA_KEYS := cell.metadata.trusted metadata.language_info.codemirror_mode \
  metadata.language_info.file_extension metadata.language_info.mimetype \
  metadata.language_info.nbconvert_exporter metadata.language_info.pygments_lexer metadata.language_info.version
NBSTRIPOUT := "$(abspath $(BIN))/python" -m nbstripout --keep-id
git-filter: $(STAMP)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then \
	  git config filter.nbstripout.clean '$(NBSTRIPOUT)' && git config filter.nbstripout.smudge cat && \
	  git config filter.nbstripout.extrakeys '$(NB_EXTRA_KEYS)' && \
	  git config diff.ipynb.textconv '$(NBSTRIPOUT) -t' && \
	  git update-index -q --refresh >/dev/null 2>&1; \
	  echo "git filter: notebooks are committed without outputs (nbstripout, see .gitattributes)"; fi

# Re-installs only when the lock, torch pins or package metadata change.
$(STAMP): requirements-lock.txt $(TORCH_REQUIREMENTS) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=77" wheel
	$(if $(TORCH_REQUIREMENTS),$(BIN)/python -m pip install --quiet -r $(TORCH_REQUIREMENTS))
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (esg-lib)" >/dev/null
	$(BIN)/python -c "import esg_lib, torch, timm; print('esg_lib', esg_lib.__version__, '| torch', torch.__version__, '| timm', timm.__version__)"
	@# torch.compile on CPU (opt-in: --set compile=true, esg benchmark --compile) builds C++: say so now, not mid-run
	@$(BIN)/python -c "from esg_lib.engine.compile import cxx_compiler as c; import sys; p = c(); print('C++ compiler for torch.compile:', p or 'NONE (eager works; compile=true will stop with an error: apt-get install g++)')"
	@touch $@

# cpu/paper: also renders the executed notebooks as pages in docs/notebooks/<profile>/ (committed; see docs/jupyterlab.md)
reproduce: install
	$(BIN)/esg reproduce --profile $(PROFILE) $(if $(filter missing,$(TRAIN)),--train-missing)

test: install
	$(BIN)/python -m pytest $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadgroup) $(PYTEST_ARGS)

# Issue 35's fuzz harnesses (esg_lib/fuzz, docs/reliability.md): FUZZ_INPUTS Hypothesis inputs per harness, each
# ending in a success or one UserError line naming the input; prints the table and writes it. Exit 1 on a crash.
# A few hundred inputs per harness run in `make test` (tests/test_reliability.py).
FUZZ_INPUTS ?= 10000
fuzz: install
	OMP_NUM_THREADS=1 $(BIN)/python -m esg_lib.fuzz --inputs $(FUZZ_INPUTS) --out results/benchmarks/fuzz.md

# .jupyter/ holds the lab's settings for this checkout: notebooks/ are saved without outputs (git stays clean).
# root (containers, CI images) needs --allow-root; LAB_ARGS adds any other jupyter option (e.g. --no-browser --port 8890)
LAB_ARGS ?=
lab: install
	JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
	  $(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Refresh requirements-lock.txt from the current venv (after changing dependencies).
lock: install
	@{ head -3 requirements-lock.txt; $(BIN)/python -m pip freeze --exclude-editable | \
	   grep -viE '^(torch|torchvision|nvidia-|triton|cuda-)'; } > requirements-lock.txt.new
	@mv requirements-lock.txt.new requirements-lock.txt

clean-venv:
	rm -rf $(VENV)
