# Two commands on a fresh clone: `make demo` and `make test`. Both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: deps demo up down test lint format simulator clean

deps: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) bash scripts/bootstrap.sh
	touch $(STAMP)

demo: deps ## the main job: start the embedded stack, summarise 200 documents, report the cost
	$(VENV)/bin/thrifty demo

up: deps ## start the embedded stack and keep it running (Ctrl-C stops it)
	$(VENV)/bin/thrifty up

down: deps
	$(VENV)/bin/thrifty down

simulator: deps
	$(VENV)/bin/thrifty simulator

test: deps ## the test suite, against embedded Postgres+pgvector and Redis
	$(VENV)/bin/pytest

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy app workers

format: deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	-$(VENV)/bin/thrifty down
	rm -rf .thrifty
