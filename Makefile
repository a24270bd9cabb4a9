# The project's commands. Every target does its own set-up and skips what is already done
# (stamp files under .state/setup and .venv), so running one twice costs seconds.
#   make setup      Debian packages, .venv, NLTK data, word vectors, image wheelhouse
#   make venv       Debian packages and .venv only (what lint and manifests need)
#   make wiki       the local MediaWiki farm on http://127.0.0.1:8180 (foreground)
#   make models     demo models for every inference service -> models/<isvc>/model.bin
#   make run        every inference service in one process on :8080 (REDIS=1: with a local Redis cache)
#   make test       setup + models + the whole pytest suite (the CI command)
#   make lint       ruff
#   make manifests  render the KServe manifests
#   make bench      the benchmark
#   make image IMAGE=editquality   build one image as localhost/lift-wing/<name>:dev (podman)
#   make images     build all six images
#   make pod ISVC=enwiki-damaging   the service's production pod: local Swift -> KServe's storage initializer -> server
#   make prodstack  the production stack as a reference venv, and binaries made with it (for the tests)
#   make fresh-check  the README's set-up from a fresh clone with no cache (CI runs it)
#   make bench-ores the ORES API's benchmark (batch vs single calls, cache, ores client)
#   make bench-profile [BASELINE=<git ref>]  where a request's CPU goes, per stage; a change before/after

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

SYSTEM_PYTHON ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMPS := .state/setup
WHEELHOUSE := .state/wheelhouse
REQUIREMENTS := $(filter-out requirements/apt-%.txt,$(wildcard requirements/*.txt))
APT_LISTS := $(wildcard requirements/apt-*.txt) requirements/dictionaries.tsv requirements/install-apt.sh
PTH_FILE_NAME := lift-wing-dev.pth

# pip sees PyPI and the project's pins only: no machine-wide or user pip configuration, extra index,
# find-links folder or constraint (they once hid wheels the project never built). The system CA store
# (PIP_CERT, Debian's default) is trust, not a package source, so it stays.
export PIP_CONFIG_FILE := /dev/null
export PIP_DISABLE_PIP_VERSION_CHECK := 1
unexport PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_NO_INDEX PIP_CONSTRAINT PIP_REQUIREMENT

# NLTK_DATA names where offline corpora come from (unset: ../shared/nltk_data when it is there,
# requirements/ensure_nltk_data.py). The set-up copies them into
# .venv/nltk_data, on NLTK's default path, and every command runs without NLTK_DATA: nltk 3.10 refuses
# corpus files that have several hard links, which such shared copies have.
export NLTK_SOURCE := $(NLTK_DATA)
unexport NLTK_DATA

.PHONY: help setup venv wiki models run test lint manifests bench bench-ores bench-profile prodstack fresh-check nltk-data \
	wheelhouse clean-venv image images pod

help:
	@sed -n 's/^#   make /make /p' Makefile

setup: venv word2vec/.generated nltk-data wheelhouse

venv: $(STAMPS)/apt $(VENV)/.pth

# Debian packages: install-apt.sh itself runs apt-get only for missing packages.
$(STAMPS)/apt: $(APT_LISTS)
	requirements/install-apt.sh
	@mkdir -p $(@D) && touch $@

# The venv is (re)installed only when a requirements file changed; pins come from constraints.txt. Every
# wheel is fetched (or compiled) once, into the wheelhouse the image builds read too (deploy/wheelhouse.py,
# which needs only the standard library), and the venv installs from there, offline.
$(VENV)/.requirements: $(REQUIREMENTS) deploy/wheelhouse.py | $(STAMPS)/apt
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/bootstrap.txt
	$(PY) -m deploy.wheelhouse
	$(PY) -m pip install --quiet --no-index --find-links $(WHEELHOUSE) -r requirements/dev.txt
	$(PY) -m pip check
	touch $@

# Puts the project's source folders on sys.path. `<repo>/revscoring` itself is listed (it has no
# __init__.py), so `import revscoring` still finds the library and `revscoring_server` finds ours.
$(VENV)/.pth: $(VENV)/.requirements Makefile
	site="$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
	printf '%s\n' "$(CURDIR)/python" "$(CURDIR)/revscoring" "$(CURDIR)/outlink-topic-model" \
		> "$$site/$(PTH_FILE_NAME)"
	touch $@

# Stand-in word vectors with the production file names, on revscoring's search path (word2vec/).
word2vec/.generated: dev/word_vectors.py $(wildcard dev/mediawiki_farm/fixtures/phrases.json) $(VENV)/.requirements
	$(PY) -m dev.word_vectors --force
	touch $@

# Cheap check each time: a no-op once the corpora are in the venv.
nltk-data: $(VENV)/.requirements
	@$(PY) requirements/ensure_nltk_data.py

# Wheels of every pin (the venv's and the images') in .state/wheelhouse, so the venv and the image builds
# install offline (deploy/wheelhouse.py keeps its own hash stamp: a no-op while requirements are unchanged).
wheelhouse: $(VENV)/.pth
	$(PY) -m deploy.wheelhouse

wiki: setup
	$(PY) -m dev.mediawiki_farm serve

models: setup
	$(PY) -m dev.demo_models

run: setup models
	$(PY) -m dev.run_all

# The production stack (scikit-learn 1.0.2, ...) in .state/prodstack: the tests' reference for production
# binaries (dev/prodstack/README.md); a no-op while its inputs are unchanged.
prodstack: venv nltk-data
	$(PY) -m dev.prodstack

# pytest's own exit code is make's: "no tests collected" (5) fails too.
test: setup models prodstack
	$(PY) -m pytest

# `make setup` and `make manifests` in a fresh clone of HEAD, with no pip cache and a clean environment.
fresh-check: venv
	$(PY) -m dev.fresh_clone

lint: venv
	$(PY) -m ruff check .

manifests: venv
	$(PY) -m deploy.render

bench: setup models
	$(PY) -m benchmark

bench-ores: setup models
	$(PY) -m benchmark.ores

bench-profile: setup models
	$(PY) -m benchmark.profile $(if $(BASELINE),--baseline $(BASELINE))

# Local images (deploy/containers.py): the project's own podman configuration and storage under .state/,
# the base built locally under the production name when missing, then the image; podman's layer cache
# makes a repeated build take seconds.
image: setup
	@test -n "$(IMAGE)" || { echo "usage: make image IMAGE=<name> (see deploy/images.py)" >&2; exit 2; }
	$(PY) -m deploy.containers build $(IMAGE)

images: setup
	$(PY) -m deploy.containers build --all

# The production pod of one inference service (dev/pod.py): a local Swift (S3 API) holding the demo binary, KServe's
# storage initializer as init container, the rendered manifest's container; `podman kube play`, foreground.
pod: setup models
	$(PY) -m dev.pod $(or $(ISVC),enwiki-damaging)

clean-venv:
	rm -rf $(VENV) $(STAMPS)
