#!/usr/bin/awk -f
# Summarises `go test -bench Compare -count N ./bench/mcpbench/` output: for
# each target, the median over the N runs of each BenchmarkCompare metric,
# and the median one-commit audit latency when BenchmarkAuditCommit ran.
#
#   go test -run '^$' -bench 'Compare|AuditCommit' -benchtime 8x -count 3 ./bench/mcpbench/ | tee bench.txt
#   awk -f bench/mcpbench/summary.awk bench.txt

function median(key,    n, i, j, t, v) {
	n = count[key]
	if (n == 0) return ""
	for (i = 1; i <= n; i++) v[i] = vals[key, i]
	for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j-1] > v[j]; j--) { t = v[j]; v[j] = v[j-1]; v[j-1] = t }
	if (n % 2) return v[(n+1)/2]
	return (v[n/2] + v[n/2+1]) / 2
}

function show(key, fmt) {
	m = median(key)
	return m == "" ? "-" : sprintf(fmt, m)
}

/^BenchmarkCompare\// {
	runs++
	for (i = 5; i < NF; i += 2) {
		unit = $(i+1)
		if (match(unit, /-(p50-us|p99-us|added-p50-us|added-p99-us|req\/s|allocs\/call|x-minimal-req\/s)$/)) {
			target = substr(unit, 1, RSTART-1); metric = substr(unit, RSTART+1)
			if (!(target in seen)) { seen[target] = 1; order[++n] = target }
			key = target SUBSEP metric
			vals[key, ++count[key]] = $i
		}
	}
}

/^BenchmarkAuditCommit\// {
	for (i = 3; i < NF; i += 2) { key = "audit" SUBSEP $(i+1); vals[key, ++count[key]] = $i }
}

END {
	# A fixed order for the known targets, then any others.
	split("direct minimal minimal-pooled locksmith-noaudit locksmith-durable locksmith-noaudit-2026", pref, " ")
	m2 = 0
	for (k = 1; k in pref; k++) if (pref[k] in seen) { ordered[++m2] = pref[k]; done[pref[k]] = 1 }
	for (k = 1; k <= n; k++) if (!(order[k] in done)) ordered[++m2] = order[k]
	for (k = 1; k <= m2; k++) order[k] = ordered[k]
	printf "medians of %d runs\n", runs
	printf "%-24s %8s %8s %8s %8s %9s %10s %9s\n", "target", "p50 us", "p99 us", "+p50 us", "+p99 us", "req/s", "x minimal", "allocs"
	for (k = 1; k <= n; k++) {
		t = order[k]
		printf "%-24s %8s %8s %8s %8s %9s %10s %9s\n", t, show(t SUBSEP "p50-us", "%.0f"), show(t SUBSEP "p99-us", "%.0f"),
			show(t SUBSEP "added-p50-us", "%.0f"), show(t SUBSEP "added-p99-us", "%.0f"), show(t SUBSEP "req/s", "%.0f"),
			show(t SUBSEP "x-minimal-req/s", "%.2f"), show(t SUBSEP "allocs/call", "%.0f")
	}
	if (count["audit" SUBSEP "p50-us"] > 0)
		printf "\none audit commit on its own: p50 %.0f us, p99 %.0f us\n", median("audit" SUBSEP "p50-us"), median("audit" SUBSEP "p99-us")
}
