#!/usr/bin/env bash
# Instruction counts (valgrind/callgrind, counting only inside the measured
# call) per operation: deterministic, so the ratios do not depend on what
# else the machine is doing.  Usage: benches/instructions.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-11}
cargo build -q --release --example profile_rewrite
ir() { valgrind --tool=callgrind --toggle-collect='*measured_*' --callgrind-out-file=/dev/null \
         target/release/examples/profile_rewrite "$@" 2>&1 | awk '/Collected/ {print $4}'; }
printf '%-16s %8s %12s %12s %7s %12s %7s %12s\n' query bytes floor_ir rewrite_ir ratio params_ir ratio ir_per_byte
for q in point_lookup dashboard_1kb in_list_1000 joins_50_20kb; do
  b=$(wc -c < "benches/corpus/$q.sql")
  f=$(ir floor "$q" "$n"); r=$(ir rewrite "$q" "$n"); p=$(ir params "$q" "$n")
  python3 -c "b,f,r,p,n=$b,$f,$r,$p,$n; fl=f/n; rw=r/n; pa=p/n; print('%-16s %8d %12d %12d %7.2f %12d %7.2f %12.0f' % ('$q', b, fl, rw, rw/fl, pa, pa/fl, rw/b))"
done
r=$(ir rewrite dashboard_1kb "$n" small); R=$(ir rewrite dashboard_1kb "$n" large)
python3 -c "r,R,n=$r,$R,$n; print('policy size: 1 KB rewrite, 10-user policy %d instructions, 100,000-user policy %d: ratio %.3f' % (r/n, R/n, R/r))"
