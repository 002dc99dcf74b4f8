# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CDS    := $(VENV)/spark-cds.jsa
DEMO   := data/demo
DIST   := dist
PYTEST_ARGS ?=

.PHONY: demo test test-fast bench clean venv dist-env

venv: $(STAMP) $(CDS)

# the development environment: the package editable, with the tumor extra (TensorFlow), so the
# tests and the demo run every job
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,cluster,tumor,web,notebooks]'
	touch $(STAMP)

# the driver JVM's class-data sharing archive (see spark-submit.sh): the classes a warm-up job
# loads, recorded once per environment (~35 s); every local job then starts ~3 s sooner (left empty,
# and so unused, where the JVM cannot make one)
$(CDS): $(STAMP)
	rm -f $@ $@.tmp
	BATCHML_CDS_DUMP=$(abspath $@.tmp) ./spark-submit.sh jobs/warmup.py > /dev/null 2>&1 && mv $@.tmp $@ \
	  || { rm -f $@.tmp; touch $@; echo "warning: no class-data sharing archive: jobs start ~3 s slower"; }

demo: $(STAMP) $(CDS)
	./demo.sh $(DEMO)

# the cluster test (tests/test_cluster.py) submits with the archives of dist-env
test: $(STAMP) $(CDS) dist-env
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) $(CDS)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) data/demo $(DIST) .pytest_cache

# ---- environments shipped to a cluster (./spark-submit.sh --archives ARCHIVE#environment) ----
# venv-pack refuses an editable install, so each archive packs its own venv under dist/ holding the
# batchml wheel and its dependencies: dist/batchml-env.tar.gz for the rating jobs (no TensorFlow) and
# dist/batchml-tumor-env.tar.gz with the `tumor` extra.  Incremental: a venv is re-created when
# pyproject.toml changes; a change under lib/ only re-installs the wheel and re-packs.
# pyspark's jars are left out: executors and a cluster-mode driver run in the cluster's own Spark JVM.
LIB_SRC := $(shell find lib -type f \( -name '*.py' -o -name '*.sh' \) -not -path '*/__pycache__/*' 2>/dev/null)
WHEEL   := $(DIST)/wheel/.built
EXTRAS_rating :=
EXTRAS_tumor  := [tumor]
PACK    := $(VENV)/bin/venv-pack --format tar.gz --compress-level 1 --force --quiet \
           --exclude 'lib/python*/site-packages/pyspark/jars/*'

dist-env: $(DIST)/batchml-env.tar.gz $(DIST)/batchml-tumor-env.tar.gz

# built from a copy of the sources, so the checkout gets no build/ or egg-info dirs
$(WHEEL): pyproject.toml README.md $(LIB_SRC) | $(STAMP)
	rm -rf $(DIST)/wheel $(DIST)/src
	mkdir -p $(DIST)/src
	cp -r pyproject.toml README.md lib $(DIST)/src/
	$(PY) -m pip wheel --quiet --no-deps -w $(DIST)/wheel $(DIST)/src
	rm -rf $(DIST)/src
	touch $@

# the dependencies of one job family (rating | tumor), in a fresh non-editable venv
$(DIST)/env-%/.deps: pyproject.toml | $(WHEEL)
	rm -rf $(DIST)/env-$*
	$(PY) -m venv $(DIST)/env-$*
	$(DIST)/env-$*/bin/python -m pip install --quiet "$$(ls $(DIST)/wheel/*.whl)$(EXTRAS_$*)"
	touch $@

# repack with the current wheel (a re-install of batchml only)
define pack
	$(DIST)/env-$(1)/bin/python -m pip install --quiet --no-deps --force-reinstall $$(ls $(DIST)/wheel/*.whl)
	$(PACK) -p $(DIST)/env-$(1) -o $@.tmp
	mv $@.tmp $@
	du -h $@
endef

$(DIST)/batchml-env.tar.gz: $(DIST)/env-rating/.deps $(WHEEL)
	$(call pack,rating)

$(DIST)/batchml-tumor-env.tar.gz: $(DIST)/env-tumor/.deps $(WHEEL)
	$(call pack,tumor)
