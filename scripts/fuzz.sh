#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short, bounded time
# (FUZZTIME, default 5s each). Used by `make fuzz` and `make test`.
#
# A run that fails only with "context deadline exceeded" and no failing
# input is the fuzzing engine timing out its own worker on a loaded machine
# (no crasher was found); it is retried once, then reported as a warning.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
run() { $GO test -run '^$' -fuzz "^${2}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s "./$1" > "$log" 2>&1; }
engine_timeout() { grep -q "context deadline exceeded" "$log" && ! grep -qi "failing input" "$log"; }
while IFS= read -r file; do
	dir=$(dirname "$file")
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]+)\(/\1/'); do
		echo "fuzz: ./$dir $target ($FUZZTIME)"
		run "$dir" "$target" && continue
		if engine_timeout; then
			echo "fuzz: ./$dir $target: engine timeout without a failing input; retrying once"
			run "$dir" "$target" && continue
			if engine_timeout; then
				echo "fuzz: WARNING ./$dir $target: engine timed out twice, no failing input found"
				continue
			fi
		fi
		cat "$log"
		status=1
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' || true)
exit $status
