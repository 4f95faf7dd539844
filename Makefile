# The enclave's two entry points on a fresh Debian machine (as root):
#   make up    install what is missing, build images, load demo data, start the enclave
#   make test  the whole test suite
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export ENCLAVE_HOME ?= $(CURDIR)/var

.PHONY: up test deps system venv acro services images demo down clean-state swarm-nodes swarm-nodes-down up-swarm down-swarm

up: deps services images
	bash scripts/up.sh

test: deps services images
	$(PY) -m pytest

deps: system venv acro

system:
	bash scripts/install-system.sh

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $@

# acro (the reference disclosure-control package) pins pandas 2, so it lives in its own
# venv; the parity tests and benchmarks reach it through a subprocess.
acro: .venv-acro/.installed

.venv-acro/.installed: scripts/install-acro.sh
	bash scripts/install-acro.sh
	@touch $@

services:
	bash scripts/services.sh

images: venv services
	bash scripts/build-images.sh

down:
	bash scripts/stop-hub.sh

# A two-node Docker Swarm on this machine for engine: swarm (this host the manager, a
# worker node in a container sharing ENCLAVE_HOME); see docs/deploy.md.
swarm-nodes: deps services images
	ENCLAVE_SWARM_SHARED="$(ENCLAVE_HOME)" bash scripts/swarm.sh up

swarm-nodes-down:
	bash scripts/swarm.sh down

# The whole enclave on that two-node swarm: PostgreSQL, the hub in a container on this host
# (the manager), servers and jobs on the worker node; prints the sign-in text like `make up`.
# State in $(ENCLAVE_HOME)/swarm; see docs/deploy.md.
up-swarm: deps services images
	bash scripts/up-swarm.sh

down-swarm:
	bash scripts/down-swarm.sh

# Remove the demo enclave's state (database, workspaces, keys) after stopping it.
clean-state: down
	rm -rf "$(ENCLAVE_HOME)"
