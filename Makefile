# ESG-ConvNeXt companion. Every target works on its own from a fresh clone.
#   make reproduce [PROFILE=smoke|cpu|paper]   set up, then regenerate the paper's tables and figures
#   make test                                  set up, then run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= smoke
TORCH_REQUIREMENTS ?= requirements-torch.txt
KERNEL ?= esg-lib
PYTEST_ARGS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install reproduce test lab lock clean-venv help
help:
	@grep -E '^#  ' Makefile | sed 's/^#  //'

install: $(STAMP)

# Re-installs only when the lock, torch pins or package metadata change.
$(STAMP): requirements-lock.txt $(TORCH_REQUIREMENTS) pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" "setuptools>=77" wheel
	$(if $(TORCH_REQUIREMENTS),$(BIN)/python -m pip install --quiet -r $(TORCH_REQUIREMENTS))
	$(BIN)/python -m pip install --quiet -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (esg-lib)" >/dev/null
	$(BIN)/python -c "import esg_lib, torch, timm; print('esg_lib', esg_lib.__version__, '| torch', torch.__version__, '| timm', timm.__version__)"
	@touch $@

reproduce: install
	$(BIN)/esg reproduce --profile $(PROFILE)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# root (containers, CI images) needs --allow-root; LAB_ARGS adds any other jupyter option (e.g. --no-browser --port 8890)
LAB_ARGS ?=
lab: install
	$(BIN)/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Refresh requirements-lock.txt from the current venv (after changing dependencies).
lock: install
	@{ head -3 requirements-lock.txt; $(BIN)/python -m pip freeze --exclude-editable | \
	   grep -viE '^(torch|torchvision|nvidia-|triton|cuda-)'; } > requirements-lock.txt.new
	@mv requirements-lock.txt.new requirements-lock.txt

clean-venv:
	rm -rf $(VENV)
