# SPDX-License-Identifier: Apache-2.0

.PHONY: traces trace-fixtures

traces: build ## record dirty-memory traces of redis, pgbench, gcc and an EP loop into traces/ (root; Debian redis-server redis-tools postgresql gcc)
	OUT=traces scripts/traces.sh

trace-fixtures: build ## re-record the small committed trace fixtures in testenv/trace/testdata/ (root)
	OUT=testenv/trace/testdata SIZE=small EPOCHS=20 WORKLOADS="redis pgbench ep" scripts/traces.sh
