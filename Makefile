# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
STAMP  := $(VENV)/.installed

.PHONY: demo test venv browser pyradiomics-data clean

demo: $(STAMP)
	$(VENV)/bin/qsmrepro demo -o demo-output
	@echo "Report: $(CURDIR)/demo-output/report.html"

test: $(STAMP) browser pyradiomics-data
	$(PY) -m pytest

venv: $(STAMP)

# PyRadiomics 3.0.1 has no wheel for Python >= 3.10 and its build needs numpy at build time:
# numpy, setuptools and wheel first, then PyRadiomics without build isolation, then the package.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "numpy>=2.0" setuptools wheel
	$(PIP) install --quiet --no-build-isolation pyradiomics==3.0.1
	$(PIP) install --quiet --no-build-isolation -e ".[test]"
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

clean:
	rm -rf $(VENV) demo-output
