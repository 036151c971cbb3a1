#!/usr/bin/env bash
# Every GPU check of the project in one command, sized to a time budget (a lent GPU is
# often lent for minutes): the CUDA tests, SimCLR and I-JEPA throughput (ours; lightly's too
# when it is installed), profiles of I-JEPA and SimCLR steps (benchmarks/profile_step.py), then the
# GPU recipe for as many epochs as fit, with --eval.
#
#   bash benchmarks/gpu_check.sh [BUDGET_SECONDS] [OUT_DIR]       (defaults: 540, gpu_check)
#
# Run from the repository root with CIFAR-10 where selfsup finds it (SELFSUP_DATA or
# ../shared/datasets). Environment: DEVICE (cuda), EPOCHS (fixed instead of fitted),
# EVAL_SECONDS (time kept for --eval, 90), LIGHTLY_WORKERS (8), RECIPE_OVERRIDES (key=value
# items for the recipe), QUICK=1 (the benchmarks' --quick: a rehearsal, e.g. on a CPU),
# PARTS (which parts run, of: tests simclr ijepa profiles recipe; default all of them; the
# recipe without `simclr` needs EPOCHS, since its length is fitted to the measured rate).
# Writes logs and JSON files to OUT_DIR and a summary line per part to OUT_DIR/summary.log.
set -u
T0=$(date +%s)
BUDGET=${1:-540}
OUT=${2:-gpu_check}
DEVICE=${DEVICE:-cuda}
EVAL_SECONDS=${EVAL_SECONDS:-90}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
left() { echo $((BUDGET - $(date +%s) + T0)); }
say() { echo "[$(($(date +%s) - T0)) s] $*" | tee -a "$OUT/summary.log"; }

python3 - <<'EOF' 2>&1 | tee "$OUT/env.txt"
import sys, torch, torchvision
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print("python", sys.version.split()[0], "torch", torch.__version__, "torchvision",
      torchvision.__version__, "gpu", gpu)
EOF
if python3 -c "import lightly" 2>/dev/null; then  # lightly's side too, with more workers
  SIMCLR_LIGHTLY=(--workers "${LIGHTLY_WORKERS:-8}" --lightly-bf16)
  IJEPA_LIGHTLY=(--workers "${LIGHTLY_WORKERS:-8}")
else
  SIMCLR_LIGHTLY=(--skip lightly)
  IJEPA_LIGHTLY=(--skip lightly-model --skip lightly --skip lightly-bf16)
fi
QUICK_FLAG=()
[ "${QUICK:-0}" = 1 ] && QUICK_FLAG=(--quick)
read -r -a OVERRIDES <<<"${RECIPE_OVERRIDES:-}"
PARTS=" ${PARTS:-tests simclr ijepa profiles recipe} "
for part in $PARTS; do
  case $part in tests | simclr | ijepa | profiles | recipe) ;;
  *) echo "gpu_check.sh: unknown part '$part' in PARTS (tests simclr ijepa profiles recipe)" >&2
     exit 2 ;;
  esac
done
if [[ $PARTS == *" recipe "* && $PARTS != *" simclr "* && -z ${EPOCHS:-} ]]; then
  echo "gpu_check.sh: PARTS has recipe without simclr: set EPOCHS (the run's length)" >&2
  exit 2
fi
wants() { [[ $PARTS == *" $1 "* ]]; }

if wants tests; then
say "CUDA tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider --continue-on-collection-errors tests -k cuda 2>&1 \
  | tee "$OUT/tests.log" | tail -1 | tee -a "$OUT/summary.log"
fi

if wants simclr; then
say "SimCLR throughput, batch 512"
timeout 150 python3 benchmarks/throughput_simclr.py --device "$DEVICE" --batch-size 512 \
  --steps 30 --repeats 3 --warmup 20 "${SIMCLR_LIGHTLY[@]}" "${QUICK_FLAG[@]}" --json "$OUT/throughput_simclr.json" \
  >"$OUT/throughput_simclr.log" 2>&1
grep -E "^(model only|selfsup|lightly|ratio)" "$OUT/throughput_simclr.log" | tee -a "$OUT/summary.log"
fi

if wants ijepa; then
say "I-JEPA throughput, batch 256"
timeout 150 python3 benchmarks/throughput_ijepa.py --device "$DEVICE" --batch-size 256 \
  --steps 20 --repeats 3 --warmup 20 "${IJEPA_LIGHTLY[@]}" "${QUICK_FLAG[@]}" --json "$OUT/throughput_ijepa.json" \
  >"$OUT/throughput_ijepa.log" 2>&1
grep -E "^(model only|selfsup|lightly|ratio)" "$OUT/throughput_ijepa.log" | tee -a "$OUT/summary.log"
fi

if wants profiles; then
say "I-JEPA step profile, batch 256 (throughput_ijepa.py's 56 px setting)"
timeout 120 python3 benchmarks/profile_step.py ijepa --device "$DEVICE" --batch-size 256 \
  --warmup 20 --steps 10 --trace "$OUT/ijepa_trace.json.gz" "${QUICK_FLAG[@]}" \
  augment.size=56 model.patch_size=4 augment.flip=true >"$OUT/profile_ijepa.log" 2>&1
sed -n '/^host waits/,$p' "$OUT/profile_ijepa.log" | tee -a "$OUT/summary.log"

say "SimCLR step profile, batch 512"
timeout 90 python3 benchmarks/profile_step.py simclr --device "$DEVICE" --batch-size 512 \
  --warmup 20 --steps 10 "${QUICK_FLAG[@]}" >"$OUT/profile_simclr.log" 2>&1
sed -n '/^host waits/,$p' "$OUT/profile_simclr.log" | tee -a "$OUT/summary.log"
fi

if wants recipe; then
# The recipe's length: EPOCHS, or what the measured Trainer rate fits in the time left
# after EVAL_SECONDS (10 % kept for the kNN monitor, start-up and the first epoch's tuning).
EPOCHS=${EPOCHS:-$(python3 - "$OUT/throughput_simclr.json" "$(left)" "$EVAL_SECONDS" <<'EOF'
import json, sys
rate = json.load(open(sys.argv[1]))["median_pairs_per_second"]["selfsup Trainer"]
seconds_per_epoch = 50000 // 512 * 512 / rate * 1.1
print(max(1, int((float(sys.argv[2]) - float(sys.argv[3])) / seconds_per_epoch)))
EOF
)}
WARMUP=$(python3 -c "print(min(10.0, $EPOCHS / 10))")
say "GPU recipe: $EPOCHS epochs (warm-up $WARMUP), $(left) s left"
timeout $(($(left) > 30 ? $(left) : 30)) python3 -c 'import sys; from selfsup.cli import main; sys.exit(main())' \
  pretrain simclr --config configs/simclr_cifar10_gpu.yaml --eval train.epochs="$EPOCHS" \
  optim.warmup_epochs="$WARMUP" train.progress=false train.device="$DEVICE" \
  train.run_dir="$OUT/run" "${OVERRIDES[@]}" >"$OUT/recipe.log" 2>&1
grep -E "^(knn|linear|checkpoint|selfsup: error)" "$OUT/recipe.log" | tee -a "$OUT/summary.log"
fi
say "done"
