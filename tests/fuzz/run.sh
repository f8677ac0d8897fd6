#!/bin/sh
# Run every libFuzzer harness in a build directory for a fixed number of
# runs, each over a private copy of its seed corpus (tests/fuzz/corpus/NAME
# for BUILD_DIR/fuzz-NAME), so nothing is ever written into the repository.
# Usage: sh tests/fuzz/run.sh BUILD_DIR RUNS
# Exits non-zero if there is no harness or if any harness fails; the temp
# dir of a failed run (log, crash inputs) is then kept and named.

if [ $# -ne 2 ]; then
	echo "usage: sh $0 BUILD_DIR RUNS" >&2
	exit 2
fi
build=$(cd "$1" 2>/dev/null && pwd) || {
	echo "$0: no build directory $1" >&2
	exit 2
}
runs=$2
case $runs in
''|*[!0-9]*)
	echo "$0: RUNS must be a number" >&2
	exit 2
	;;
esac
root=$(cd "$(dirname "$0")/../.." && pwd) || exit 2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vspc-fuzz.XXXXXX") || exit 2
keep=0
trap '[ "$keep" -eq 1 ] || rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

found=0
failed=0
for bin in "$build"/fuzz-*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	found=$((found + 1))
	name=${bin##*/fuzz-}
	work=$tmp/$name
	mkdir -p "$work/corpus" "$work/artifacts"
	if [ -d "$root/tests/fuzz/corpus/$name" ]; then
		cp -R "$root/tests/fuzz/corpus/$name/." "$work/corpus/"
	else
		echo "$name: no seed corpus, starting empty"
	fi
	echo "== fuzz-$name: $runs runs"
	# Run from the temp dir: libFuzzer may drop files in the cwd.
	if (cd "$work" && "$bin" -runs="$runs" -max_len=4096 \
	    -artifact_prefix="$work/artifacts/" corpus) \
	    >"$work/log" 2>&1; then
		tail -n 1 "$work/log"
	else
		failed=$((failed + 1))
		keep=1
		tail -n 40 "$work/log"
		echo "FAIL fuzz-$name (log and crash inputs kept in $work)" >&2
	fi
done

if [ "$found" -eq 0 ]; then
	echo "$0: no fuzz-* binaries in $build" >&2
	exit 1
fi
if [ "$failed" -ne 0 ]; then
	echo "$failed of $found harnesses failed" >&2
	exit 1
fi
echo "all $found harnesses passed"
