# voicehooks: the verbs people type. `make help` lists them.
#
# Everything a target needs it installs itself, into the project: Python tools into
# virtualenvs under .venv/ pinned by infra/requirements/*.txt, Rust through cargo.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STACK_BIN := $(VENV)/stack/bin
LINT_BIN := $(VENV)/lint/bin
SAM_BIN := $(VENV)/sam/bin
TEMPLATE := infra/template.yaml
export SAM_CLI_TELEMETRY := 0
# cargo-lambda (its zig linker included) comes from the stack virtualenv.
export PATH := $(CURDIR)/$(STACK_BIN):$(PATH)

# Every Lambda function (one binary each under functions/).
FUNCTIONS := webhook-status webhook-voice webhook-fallback softphone-token reconciler webhook-recording webhook-transcription status-worker recording-worker transcript-worker spill-drainer

CALLS ?= 300
SEED ?= 42
EVENT ?= events/webhook-status/ringing.json
FUNCTION ?= webhook-status
LAMBDA_PORT ?= 9000
TO ?= +14155550100
# voicectl works on `make up`'s stack when .local/stack.env exists (it says where the emulator
# is); otherwise on the stack named by VOICEHOOKS_STACK with your AWS credentials.
# STACK_ENV_FILE names another one (tests/walkthroughs.rs runs the documented incident on its own stack).
VOICECTL := target/debug/voicectl
STACK_ENV_FILE ?= .local/stack.env
STACK_ENV := if [ -f "$(STACK_ENV_FILE)" ]; then set -a; . "$(STACK_ENV_FILE)"; set +a; \
	elif [ -z "$${VOICEHOOKS_STACK:-}" ]; then \
	echo "no local stack running ($(STACK_ENV_FILE) is missing): start one with 'make up' in another terminal, or set VOICEHOOKS_STACK=<name> for a deployed stack" >&2; exit 1; fi

.PHONY: help
help: ## List the verbs
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- tools
# One virtualenv per tool set: moto and cargo-lambda, the linters, SAM and the test oracles pin
# conflicting versions of boto3 and friends.
$(VENV)/%/.installed: infra/requirements/%.txt
	rm -rf $(VENV)/$*
	$(PYTHON) -m venv $(VENV)/$*
	$(VENV)/$*/bin/pip install --quiet --disable-pip-version-check --no-deps -r $<
	touch $@

.PHONY: venv
venv: $(VENV)/stack/.installed $(VENV)/lint/.installed $(VENV)/sam/.installed $(VENV)/oracle/.installed ## Install the pinned Python tools into .venv/

# ---------------------------------------------------------------- build
.PHONY: build-local
build-local: ## Build every binary for this machine (what the local stack runs)
	cargo build --workspace --bins

.PHONY: build-release-local
build-release-local: ## Build the functions' release binaries for this machine (what `make chaos` and `make bench` run)
	cargo build --release $(addprefix --bin ,$(FUNCTIONS))

.PHONY: build
build: $(VENV)/stack/.installed ## Build the Lambda bootstraps for arm64 (target/lambda/<function>/bootstrap)
	cargo lambda build --release --arm64 $(addprefix --bin ,$(FUNCTIONS))
	@ls -l target/lambda/*/bootstrap

# ---------------------------------------------------------------- run
.PHONY: demo
demo: $(VENV)/stack/.installed build-local ## Play CALLS calls through the local stack and check every one
	target/debug/devstack demo --calls $(CALLS) --seed $(SEED)

CHAOS_CALLS ?= 1000
.PHONY: chaos
chaos: $(VENV)/stack/.installed build-local build-release-local ## The demo under fire: CHAOS_CALLS calls, duplicates, reordering, refused enqueues, AWS faults, workers killed, poisoned calls redriven; exit 1 on any mismatch
	target/debug/devstack chaos --calls $(CHAOS_CALLS) --seed $(SEED) --release

.PHONY: up
up: $(VENV)/stack/.installed build-local ## Run the local stack until Ctrl-C
	target/debug/devstack up --lambda-port $(LAMBDA_PORT)

.PHONY: invoke
invoke: $(VENV)/stack/.installed ## Send EVENT to FUNCTION on a running `make up`
	cargo lambda invoke $(FUNCTION) --invoke-address 127.0.0.1 --invoke-port $(LAMBDA_PORT) --data-file $(EVENT)

.PHONY: twiml
twiml: ## Print the TwiML a call to TO gets, e.g. make twiml TO=+14155550101 (more: ARGS="--step menu --flow main-menu --digits 9")
	cargo run --quiet -p voicectl -- flows twiml --to '$(TO)' $(ARGS)

.PHONY: voicectl
voicectl:
	@cargo build --quiet -p voicectl

.PHONY: dlq
dlq: voicectl ## DLQ depth, and the spill; ARGS="peek", ARGS="redrive --dry-run", ARGS="redrive --call CA…" (`voicectl dlq --help`)
	@$(STACK_ENV); $(VOICECTL) dlq $(or $(ARGS),stats)

.PHONY: numbers reconcile
numbers: voicectl ## The numbers' and TwiML App's wiring in Twilio against the stack; ARGS="apply --dry-run", ARGS="apply" (`voicectl numbers --help`)
	@$(STACK_ENV); $(VOICECTL) numbers $(or $(ARGS),check)
reconcile: voicectl ## Repair from Twilio's REST API what no callback delivered: make reconcile SINCE=2h
	@$(STACK_ENV); $(VOICECTL) reconcile --since $(or $(SINCE),2h)

.PHONY: replay
replay: voicectl ## Send events again: ARGS="files dlq-saved/ --queue", ARGS="calls CA…" (`voicectl replay --help`)
	@$(STACK_ENV); $(VOICECTL) replay $(or $(ARGS),--help)

.PHONY: call
call: voicectl ## A call's timeline and recordings: make call CALL=CA…
	@$(STACK_ENV); $(VOICECTL) call '$(CALL)'

.PHONY: verify
verify: voicectl ## Why a request got 403: make verify ARGS="--url … --signature … --form '…'" (`voicectl verify --help`)
	@$(STACK_ENV); $(VOICECTL) verify $(ARGS)

.PHONY: break-table restore-table
break-table: ## Incident rehearsal on `make up`'s stack: delete the calls table (docs/OPERATIONS.md, the incident)
	@$(STACK_ENV); cargo run --quiet -p devstack -- break-table
restore-table: ## The rehearsal's fix: the calls table back, empty
	@$(STACK_ENV); cargo run --quiet -p devstack -- restore-table

.PHONY: smoke
smoke: voicectl ## One synthetic call through a stack, checked in its table: make smoke URL=<WebhookBaseUrl> (make up's stack: no URL)
	@$(STACK_ENV); $(VOICECTL) smoke $(if $(URL),--base-url '$(URL)')

.PHONY: events
events: ## Regenerate the signed sample events under events/
	cargo run --quiet -p devstack -- events

# ---------------------------------------------------------------- check
.PHONY: test
test: venv build-local ## Unit and integration tests (local AWS emulator), then lint
	cargo test --workspace
	$(MAKE) --no-print-directory lint

.PHONY: bench
bench: $(VENV)/stack/.installed build-local build ## Every performance figure beside its goal: ingress compute vs twilio-node, cold starts against the empty function, arm64 sizes, AWS calls per event, cost per million calls beside the peer, capacity at 10-1,000 calls/s, end-to-end acks at rising rates, archiving a four-hour recording (460.8 MB)
	cargo bench -p voicehooks --bench ingress -- --warm-up-time 1 --measurement-time 3
	cargo build --release $(addprefix --bin ,$(FUNCTIONS) empty-function)
	cargo run --quiet -p devstack -- bench
	cargo bench -p devstack --bench archive

# cargo-fuzz, pinned, into the project. This machine has one (stable) toolchain:
# RUSTC_BOOTSTRAP lets it take cargo-fuzz's coverage flags, and the sanitizer is off (the code
# under test is safe Rust; the targets look for panics and broken round trips).
CARGO_FUZZ := $(VENV)/cargo/bin/cargo-fuzz
FUZZ_SECS ?= 180
FUZZ_TARGETS := request_validation form_decoding envelope_decoding twiml_rendering
$(CARGO_FUZZ):
	cargo install cargo-fuzz --version 0.13.2 --locked --root $(VENV)/cargo

.PHONY: fuzz
fuzz: $(CARGO_FUZZ) ## Fuzz request validation, form and envelope decoding, TwiML rendering: FUZZ_SECS (180) each
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  echo "== $$target, $(FUZZ_SECS) s"; \
	  RUSTC_BOOTSTRAP=1 PATH="$(CURDIR)/$(VENV)/cargo/bin:$$PATH" \
	    cargo fuzz run --sanitizer none $$target -- -max_total_time=$(FUZZ_SECS) 2>&1 | grep -E '^(Done|INFO: seed|==|thread)|panicked|SUMMARY' ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

.PHONY: lint
lint: $(VENV)/lint/.installed $(VENV)/sam/.installed ## rustfmt, clippy, doc links, call flows, cfn-lint, checkov, sam validate
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
	cargo run --quiet -p voicectl -- flows check
	$(LINT_BIN)/cfn-lint $(TEMPLATE)
	$(LINT_BIN)/checkov --quiet --compact --skip-download --framework cloudformation -f $(TEMPLATE)
	AWS_REGION=us-east-1 $(SAM_BIN)/sam validate --lint --template-file $(TEMPLATE)

# ---------------------------------------------------------------- deploy
.PHONY: deploy
deploy: $(VENV)/sam/.installed $(VENV)/stack/.installed ## sam build + sam deploy --guided (needs AWS credentials)
	$(SAM_BIN)/sam build --beta-features --template-file $(TEMPLATE)
	$(SAM_BIN)/sam deploy --guided
	@echo
	@echo "Deployed. Next: put the Twilio credentials into the secret (docs/OPERATIONS.md, Deploy), then wire"
	@echo "the account's numbers and TwiML App to the stack and check them for drift:"
	@echo "  cargo run -q -p voicectl -- --stack <stack> numbers check"
	@echo "  cargo run -q -p voicectl -- --stack <stack> numbers apply --dry-run   # the diff"
	@echo "  cargo run -q -p voicectl -- --stack <stack> numbers apply"

# sam build in a target of its own (cargo-lambda, arm64), then sam deploy against the local
# emulator instead of an account (devstack/src/rehearsal.rs says what that shows and what not).
.PHONY: deploy-rehearsal
deploy-rehearsal: $(VENV)/sam/.installed $(VENV)/stack/.installed build-local ## `sam build` + `sam deploy` rehearsed against the local emulator, no account needed
	CARGO_TARGET_DIR=$(CURDIR)/target/sam $(SAM_BIN)/sam build --beta-features --template-file $(TEMPLATE)
	target/debug/devstack rehearse-deploy --build-dir .aws-sam/build

.PHONY: clean
clean: ## Remove build output, logs and virtualenvs
	cargo clean
	rm -rf $(VENV) .local .aws-sam
