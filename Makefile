# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed

# Test environments that stand in for 3D Slicer's Python: Python 3.12 with the numpy, scipy and SimpleITK a
# Slicer release bundles, pinned in Testing/slicer-<version>-constraints.txt (which names the files of Slicer's
# SuperBuild they were read from). Slicer 5.10's environment also holds the lowest versions of the library's
# other requirements; Slicer 5.12's holds what pip resolves for the module's requirements.txt. `make test`
# runs the suite in both after the main one; `make test-slicer SLICER_VERSIONS=5.12` runs one of them.
SLICER_VERSIONS ?= 5.10 5.12
SLICER      ?= 5.10
SLICER_VENV := .venv-slicer-$(SLICER)
SLICER_PINS := Testing/slicer-$(SLICER)-constraints.txt
SLICER_REQS := QSMReproducibility/Resources/requirements.txt
SPY         := $(SLICER_VENV)/bin/python
SPIP        := $(SPY) -m pip --disable-pip-version-check
# python3.12 on PATH, else the newest 3.12 that pyenv holds (its shims answer only for the active version).
ifndef PYTHON312
PYTHON312 = $(eval PYTHON312 := $(shell for p in python3.12 $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 2>/dev/null | sort -rV); do "$$p" -c "import sys; sys.exit(sys.version_info[:2] != (3, 12))" >/dev/null 2>&1 && { command -v "$$p"; break; }; done))$(PYTHON312)
endif

# The browser reading station (`qsmrepro station`) needs trame-slicer, which needs slicer-core 5.11.0 while the
# main environment tests the MRML code on the newest slicer-core: it gets its own environment, built from the
# `station` and `station-test` extras, where `make test` runs its tests (end to end in Debian's chromium).
# `make station` starts a station on the demo study for observer $(STATION_OBSERVER) (STATION_ARGS: e.g. --port 8081).
COMMA            := ,
STATION_VENV     := .venv-station
STATION_PY       := $(STATION_VENV)/bin/python
STATION_PIP      := $(STATION_PY) -m pip --disable-pip-version-check
STATION_OBSERVER ?= O3
STATION_ARGS     ?=
STATION_TESTS    := Testing/Python/test_station_e2e.py Testing/Python/test_station_cli.py \
                    Testing/Python/test_reading_core_mrml.py

.PHONY: demo test test-slicer slicer-suite test-station station station-system venv browser pyradiomics-data clean

demo: $(STAMP)
	$(VENV)/bin/qsmrepro demo -o demo-output
	@echo "Report: $(CURDIR)/demo-output/report.html"

# The Slicer and station suites run even when the main one fails; `make test` fails if any does.
test: $(STAMP) browser pyradiomics-data
	$(PY) -m pytest; status=$$?; \
	$(MAKE) --no-print-directory test-slicer || status=1; \
	$(MAKE) --no-print-directory test-station || status=1; \
	exit $$status

test-station: $(STATION_VENV)/.installed station-system
	@echo "The reading station's tests, with slicer-core 5.11 and trame-slicer ($(STATION_VENV)):"
	$(STATION_PY) -m pytest $(STATION_TESTS)

# One observer's reading station on the demo study (made by `qsmrepro demo` if absent), on this machine only.
station: $(STATION_VENV)/.installed station-system
	test -f demo-output/study/study.sqlite || $(STATION_VENV)/bin/qsmrepro demo -o demo-output
	$(STATION_VENV)/bin/qsmrepro study add-observer demo-output/study $(STATION_OBSERVER)
	$(STATION_VENV)/bin/qsmrepro station demo-output/study --observer $(STATION_OBSERVER) $(STATION_ARGS)

# Mesa's EGL and software OpenGL (offscreen rendering without a display) and chromium, from Debian.
station-system:
	@bash Testing/install_station_libraries.sh

test-slicer:
	@if [ -z "$(PYTHON312)" ]; then \
	  echo "No Python 3.12 interpreter (python3.12 on PATH or under pyenv): the suites with the packages of 3D Slicer ($(SLICER_VERSIONS)) did not run."; \
	else \
	  status=0; for version in $(SLICER_VERSIONS); do \
	    $(MAKE) --no-print-directory PYTHON312="$(PYTHON312)" SLICER=$$version slicer-suite || status=1; \
	  done; exit $$status; \
	fi

slicer-suite: $(SLICER_VENV)/.installed
	@echo "Python 3.12 with the packages of Slicer $(SLICER) ($(SLICER_PINS)):"
	$(SPY) -m pytest

venv: $(STAMP)

# PyRadiomics 3.0.1 has no wheel for Python >= 3.10 and its build needs numpy at build time:
# numpy, setuptools and wheel first, then PyRadiomics without build isolation, then the package with
# the extras $(2), into the environment whose pip is $(1).
define install-package
	$(1) install --quiet --upgrade pip
	$(1) install --quiet "numpy>=2.0" setuptools wheel
	$(1) install --quiet --no-build-isolation pyradiomics==3.0.1
	$(1) install --quiet --no-build-isolation -e ".[$(2)]"
endef

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call install-package,$(PIP),test)
	touch $@

# Headless Chromium for the report test: Debian's package where apt-get can install it, else the
# test is skipped with its reason.
browser:
	@bash Testing/install_chromium.sh

# PyRadiomics' published baseline (data/ of its 3.0.1 sdist) for Testing/Python/test_radiomics.py. Its
# metadata step imports numpy, hence no build isolation. Never fails the build: without it the test is skipped.
pyradiomics-data: $(STAMP)
	@test -f $(VENV)/pyradiomics-sdist/pyradiomics-3.0.1.tar.gz \
	  || $(PIP) download --quiet --no-deps --no-binary :all: --no-build-isolation pyradiomics==3.0.1 \
	       -d $(VENV)/pyradiomics-sdist \
	  || echo "PyRadiomics' sdist could not be downloaded; its baseline test will be skipped."

# Slicer's own packages first; then what slicer.packaging.pip_ensure would install inside Slicer for the module's
# requirements.txt, resolved without installing: it must leave Slicer's numpy, scipy and SimpleITK alone. Then
# that file at the versions the pins name, the test tools, and the package itself (PyRadiomics has no build
# for Python 3.12: the tests that need it skip and say so).
$(SLICER_VENV)/.installed: pyproject.toml $(SLICER_REQS) $(SLICER_PINS)
	rm -rf $(SLICER_VENV)
	$(PYTHON312) -m venv $(SLICER_VENV)
	$(SPIP) install --quiet --upgrade pip
	$(SPIP) install --quiet -c $(SLICER_PINS) numpy scipy SimpleITK packaging pyparsing six pillow \
	  python-dateutil typing_extensions
	$(SPIP) install --quiet --dry-run --report $(SLICER_VENV)/pip-ensure.json -r $(SLICER_REQS)
	$(SPY) -c 'import json, sys; new = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.load(open(sys.argv[1]))["install"]}; print("Inside Slicer $(SLICER), pip would install:", ", ".join(f"{k}=={v}" for k, v in sorted(new.items()))); bad = sorted(set(new) & {"numpy", "scipy", "simpleitk"}); sys.exit(f"{sys.argv[2]} would make pip replace what Slicer $(SLICER) bundles: {bad}" if bad else 0)' \
	  $(SLICER_VENV)/pip-ensure.json $(SLICER_REQS)
	$(SPIP) install --quiet -c $(SLICER_PINS) -r $(SLICER_REQS) pytest slicer-core qsm-forward
	$(SPIP) install --quiet --no-deps -e .
	touch $@

# As the main environment, with the station's exact pins instead of the test tools.
$(STATION_VENV)/.installed: pyproject.toml
	rm -rf $(STATION_VENV)
	$(PYTHON) -m venv $(STATION_VENV)
	$(call install-package,$(STATION_PIP),station$(COMMA)station-test)
	touch $@

clean:
	rm -rf $(VENV) .venv-slicer-* $(STATION_VENV) demo-output
