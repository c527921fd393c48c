# Two commands do everything on a fresh machine: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.thaw-installed

.PHONY: run test install clean

# Re-install only when the dependencies change.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) main.py $(ARGS)

# ruff and the import contracts (pyproject.toml) first: a lint error or a broken boundary fails in seconds, before
# the suite's minutes. The suite runs in TEST_WORKERS processes (pytest-xdist), a test file to a worker (each file's
# module fixtures are made once); `make test TEST_WORKERS=0` runs it in this one process, TEST_WORKERS=auto in one
# per core. Files go out longest first (tests/conftest.py: LONGEST_FILES).
TEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Packaging (packaging/README.md): a PyInstaller onedir bundle in dist/Thaw/, its self-test, the desktop entry.
.PHONY: package package-test install-desktop

package: $(STAMP)
	PY=$(PY) packaging/build.sh

package-test: package
	packaging/package_test.sh

install-desktop:
	packaging/install_desktop.sh
