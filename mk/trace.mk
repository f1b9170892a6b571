# SPDX-License-Identifier: Apache-2.0

.PHONY: traces trace-fixtures

traces: build ## record dirty-memory traces of redis, pgbench, gcc and an EP loop into traces/ (root; Debian redis-server redis-tools postgresql gcc)
	OUT=traces scripts/traces.sh
	bin/resilire trace info traces/*/

# Fixtures use the small configurations and few epochs to stay near 4 MiB in all.
trace-fixtures: build ## re-record the small trace fixtures committed in testenv/trace/testdata/ (root)
	OUT=testenv/trace/testdata SIZE=small EPOCHS=16 WORKLOADS="redis ep" scripts/traces.sh
	OUT=testenv/trace/testdata SIZE=small EPOCHS=8 WORKLOADS=pgbench scripts/traces.sh
	bin/resilire trace info testenv/trace/testdata/redis testenv/trace/testdata/pgbench testenv/trace/testdata/ep
