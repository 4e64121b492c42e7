# The README's two set-up commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch (a local wheel on our machines); `make TORCH_SPEC=torch ...` takes the default build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet "$(TORCH_SPEC)"
	$(VENV)/bin/pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(VENV)/bin/amft demo

test: install
	$(VENV)/bin/python -m pytest -q
