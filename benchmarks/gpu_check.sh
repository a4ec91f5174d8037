#!/usr/bin/env bash
# fci's GPU check: in at most 8 minutes on one GPU,
#   1. the CUDA-marked tests (pytest -m cuda): the torch backend on the GPU against
#      the reference and the CPU kernel, CUDA graphs against eager epochs, no host
#      sync inside an epoch;
#   2. python -m benchmarks.trainer --device cuda at 256 and at 4096 models, against
#      the same peers on the same GPU (each result also written as JSON);
#   3. one study end to end on the GPU (analyses.capacity_vs_alpha --quick);
# then one summary line. Every step has its own time limit; the logs and the
# trainer's JSON records go to --out DIR (default: $OUT if set, else a new folder
# under /tmp).
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--out DIR]
#
# --dry-run lists the steps and their commands and runs nothing.
set -u

cd "$(dirname "$0")/.." || exit 2
dry=0
outdir="${OUT:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --out) outdir="${2:?--out needs a folder}"; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (use --dry-run, --out DIR)" >&2; exit 2 ;;
    esac
    shift
done
py="${PYTHON:-python}"
if [ $dry -eq 1 ]; then
    outdir="${outdir:-<out>}"
    data="<a fresh temporary folder>"
else
    outdir="${outdir:-$(mktemp -d /tmp/fci-gpu-check.XXXXXX)}"
    mkdir -p "$outdir" || exit 2
    data="$(mktemp -d /tmp/fci-gpu-study.XXXXXX)"
fi

# name | time limit (s) | command
steps=(
    "tests|110|$py -m pytest -q -m cuda tests -p no:cacheprovider"
    "trainer-256|100|$py -m benchmarks.trainer --device cuda --models 256 --rounds 5 --json $outdir/trainer-256.json --markdown"
    "trainer-4096|120|$py -m benchmarks.trainer --device cuda --models 4096 --epochs 6 --rounds 3 --json $outdir/trainer-4096.json --markdown"
    "study|130|$py -m analyses.capacity_vs_alpha --quick --device cuda --data $data"
)

if [ $dry -eq 1 ]; then
    echo "gpu_check (dry run): would run, in order, each under its time limit, logs in $outdir:"
    for s in "${steps[@]}"; do
        IFS='|' read -r name limit cmd <<< "$s"
        echo "  $name (at most ${limit} s): $cmd"
    done
    echo "gpu_check (dry run): nothing was run"
    exit 0
fi

gpu="$($py -c 'import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>/dev/null)"
if [ -z "$gpu" ]; then
    echo "gpu_check: FAIL: no CUDA device visible to torch ($($py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1)); nothing was run"
    exit 2
fi

start=$SECONDS
failed=()
declare -A took
for s in "${steps[@]}"; do
    IFS='|' read -r name limit cmd <<< "$s"
    echo "gpu_check: $name (at most ${limit} s): $cmd"
    t0=$SECONDS
    # shellcheck disable=SC2086  # the command is a word list by design
    timeout --signal=INT --kill-after=10 "$limit" $cmd > "$outdir/$name.log" 2>&1
    rc=$?
    took[$name]=$((SECONDS - t0))
    tail -n 3 "$outdir/$name.log" | sed 's/^/    /'
    if [ $rc -ne 0 ]; then
        failed+=("$name (exit $rc$([ $rc -eq 124 ] || [ $rc -eq 130 ] && echo ', time limit'))")
    fi
done

tests="$(grep -Eo '[0-9]+ (passed|failed|skipped|error)' "$outdir/tests.log" | paste -sd, - | sed 's/,/, /g')"
trainer="$($py - "$outdir" <<'EOF'
import json, os, sys
out = []
for m in (256, 4096):
    p = os.path.join(sys.argv[1], f"trainer-{m}.json")
    if not os.path.exists(p):
        out.append(f"{m} models: no result")
        continue
    r = json.load(open(p))
    rows = {row["trainer"]: row for row in r["rows"]}
    g = rows.get("fci torch backend + CUDA graphs")
    graphs = (f", with CUDA graphs {g['model_epochs_per_s']:,.0f} ({r['ratio_to_best_peer'] / g['auto_over_row']:.1f}x)"
              if g else "")
    out.append(f"{m} models: {r['model_epochs_per_s']:,.0f} model-epochs/s ({r['ratio_to_best_peer']:.1f}x best peer){graphs}")
print("; ".join(out))
EOF
)"
verdict=PASS
[ ${#failed[@]} -gt 0 ] && verdict="FAIL (${failed[*]})"
echo "gpu_check: $verdict in $((SECONDS - start)) s on $gpu; tests: ${tests:-none ran}; trainer ${trainer}; study ${took[study]} s; logs and JSON in $outdir"
[ ${#failed[@]} -eq 0 ]
