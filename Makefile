# porl_ros: the README's two commands are `make run` and `make test`; both set up the
# environment (.venv) first when it is missing or out of date.
SHELL := /bin/bash
ENV := scripts/porl-env
RUN_ARGS ?=
TEST_ARGS ?=

.PHONY: setup run test bench colcon-check clean

setup:
	@scripts/setup_env.sh

run: setup
	$(ENV) porl-ros run $(RUN_ARGS)

test: setup
	$(ENV) scripts/run_tests.sh $(TEST_ARGS)

bench: setup
	$(ENV) python benchmarks/bench_learner.py

colcon-check: setup
	$(ENV) scripts/colcon_check.sh

clean:
	rm -rf .venv build install log .ws
