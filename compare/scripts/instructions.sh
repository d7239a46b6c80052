#!/usr/bin/env bash
# Instructions per unit (job, round trip or frame) of each `versus` workload on frame-scheduler
# with one worker, counted by cachegrind: the instruction counts at 10 and at 60 frames, their
# difference over 50 frames and over the workload's units. Deterministic up to the scheduler's
# clock reads, so two builds can be compared where timings on a small VM are too noisy.
#
#   compare/scripts/instructions.sh [path/to/instructions-binary]
#
# The binary defaults to target/release/examples/instructions, built first. Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-}
if [[ -z $bin ]]; then
    cargo build --release -q -p frame-scheduler-compare --example instructions
    bin=target/release/examples/instructions
fi
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

refs() { # <workload> <frames>
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        "$bin" "$1" "$2" --workers 1 2>&1 | sed -n 's/.*I *refs: *//p' | tr -d ,
}

# workload name : units per frame
while IFS=: read -r name units; do
    a=$(refs "$name" 10)
    b=$(refs "$name" 60)
    awk -v n="$name" -v a="$a" -v b="$b" -v u="$units" \
        'BEGIN { printf "%-30s %8.1f instructions per %s\n", n, (b - a) / 50 / u, (u == 1 ? "frame" : "unit") }'
done <<'LIST'
spawn 10k empty:10000
throughput 10k x ~100ns:10000
nested 64x64:4160
chain 1k:1000
ping-pong 1k:1000
counter fan-out 1k:1000
16 stages x 256:4096
empty frame:1
frame + 1 job:1
for_each_chunk 1k x ~5ns:1000
spawn_batch 10k empty:10000
LIST
