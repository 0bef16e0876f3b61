# berth: `make up` installs what berth needs and starts berthd with a busybox image;
# `make test` installs the same plus test tools and runs lint, types, layering and the tests.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SOCK := /run/berth/berth.sock
PIDFILE := /run/berth/berthd.pid
LOG := /var/log/berthd.log
DEB_PKGS := runc crun conmon iptables nftables busybox-static uidmap procps python3-venv ca-certificates tini
# What only the tests need: a registry and a client berth did not write, etcd for the cluster,
# sshd for the machines' ssh driver, docker-compose v1, and gcc for a static syscall probe.
TEST_DEB_PKGS := docker-registry skopeo etcd-server etcd-client openssh-server docker-compose gcc libc6-dev
export PATH := /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$(PATH)

.PHONY: up down test deps venv test-venv lint unit

deps:
	@missing=""; for p in $(DEB_PKGS) $(EXTRA_DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed
test-venv: EXTRA_DEB_PKGS = $(TEST_DEB_PKGS)
test-venv: deps $(VENV)/.installed-test

up: venv
	@if [ -S $(SOCK) ] && $(VENV)/bin/berth version >/dev/null 2>&1; then \
	  echo "berthd is already running"; \
	else \
	  mkdir -p $(dir $(SOCK)); \
	  setsid nohup $(VENV)/bin/berthd --pidfile $(PIDFILE) >>$(LOG) 2>&1 < /dev/null & \
	  for i in $$(seq 100); do $(VENV)/bin/berth version >/dev/null 2>&1 && break; sleep 0.1; done; \
	  $(VENV)/bin/berth version >/dev/null || { echo "berthd did not start; see $(LOG)"; exit 1; }; \
	  echo "berthd started (socket $(SOCK), log $(LOG))"; \
	fi
	@$(VENV)/bin/berth image inspect busybox:latest >/dev/null 2>&1 || \
	  $(PY) scripts/mkbusybox.py -o - | $(VENV)/bin/berth load
	@mkdir -p $(HOME)/.docker/cli-plugins && \
	  ln -sfn $(CURDIR)/$(VENV)/bin/berth-compose $(HOME)/.docker/cli-plugins/docker-compose
	$(VENV)/bin/berth run --rm busybox echo "Hello from a berth container"

down:
	@if [ -f $(PIDFILE) ]; then kill $$(cat $(PIDFILE)) && echo "berthd stopped (containers keep running)"; \
	else echo "berthd is not running"; fi

lint: test-venv
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q -p no:cacheprovider tests
