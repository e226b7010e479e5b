#!/usr/bin/env bash
# The whole SimCLRv2 recipe on CIFAR-10 at CPU size, step by step (each step resumes or
# skips when its model_dir is complete):
#   bash experiments/cifar10_semi_supervised/run_all.sh DATA_DIR RUNS_DIR
# DATA_DIR: the CIFAR-10 image folder (tar -xzf ../shared/data/cifar10-jpg.tar.gz -C DIR).
# Copies each step's config, train and eval results to docs/results/semi_supervised/<step>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:?DATA_DIR}; runs=${2:?RUNS_DIR}
here=experiments/cifar10_semi_supervised
step() {  # step NAME FLAGS...
  local name=$1; shift
  if [ -f "$runs/$name/train_result.json" ] && [ -d "$runs/$name/saved_model" ]; then
    echo "$name: done already"; return
  fi
  echo "$name: $(date +%T)"
  python run.py --flagfile="$here/$name.flags" --data_dir="$data" --model_dir="$runs/$name" "$@" \
    > "$runs/$name.log" 2>&1
  mkdir -p "docs/results/semi_supervised/$name"
  cp "$runs/$name"/{config.json,model.json,train_result.json} "docs/results/semi_supervised/$name/"
  if [ -f "$runs/$name/eval_results.json" ]; then
    cp "$runs/$name/eval_results.json" "docs/results/semi_supervised/$name/"
  fi
}
mkdir -p "$runs"
step pretrain
step finetune_10pct --checkpoint="$runs/pretrain"
step finetune_1pct --checkpoint="$runs/pretrain"
step distill_self --teacher="$runs/finetune_10pct" --checkpoint="$runs/pretrain"
step distill_small --teacher="$runs/finetune_10pct"
step baseline_small_10pct
echo "all done: $(date +%T)"
