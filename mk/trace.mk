# SPDX-License-Identifier: Apache-2.0

.PHONY: traces trace-fixtures trace-deps

TRACE_PKGS := redis-server redis-tools postgresql gcc

trace-deps: ## install the Debian packages the trace workloads need (root)
	@missing=""; for p in $(TRACE_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi

traces: build trace-deps ## record dirty-memory traces of redis, pgbench, gcc and an EP loop into traces/ (root; installs the workloads' Debian packages)
	OUT=traces scripts/traces.sh
	bin/resilire trace info traces/*/

# Fixtures use the small configurations and few epochs to stay near 4 MiB in all.
trace-fixtures: build trace-deps ## re-record the small trace fixtures committed in checkpointer/trace/testdata/ (root)
	OUT=checkpointer/trace/testdata SIZE=small EPOCHS=16 WORKLOADS="redis ep" scripts/traces.sh
	OUT=checkpointer/trace/testdata SIZE=small EPOCHS=8 WORKLOADS=pgbench scripts/traces.sh
	bin/resilire trace info checkpointer/trace/testdata/redis checkpointer/trace/testdata/pgbench checkpointer/trace/testdata/ep
