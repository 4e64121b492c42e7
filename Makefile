# The README's two set-up commands: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# The torch release the tests were run with; `make TORCH_SPEC=torch ...` takes the newest.
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
