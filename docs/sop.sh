#!/usr/bin/env bash
# Runs docs/sop.md's steps in order (from the repo root, after `bash .ci/setup`). A failed acceptance
# check stops the procedure, as it would stop a person; set SOP_CONTINUE=1 to go on and see the rest.
set -uo pipefail
py=${PYTHON:-.venv/bin/python}
step() {
  echo "== $1"; shift
  "$@"; status=$?
  if [ $status -ne 0 ] && [ -z "${SOP_CONTINUE:-}" ]; then echo "== stopped: exit $status"; exit $status; fi
}
step "1 heuristic smoke run" $py -m cli rollout --env lightspiel/RepeatedPoker-v0 --agent heuristic --games 200 \
  --out sop/logs/heuristic.jsonl --require "parse_rate>=0.98" --require "illegal_rate<=0.01"
step "2 LLM self-play logs" $py -m cli rollout --env lightspiel/RepeatedPoker-v0 --agent llm --mode score \
  --temperature 1.5 --games 64 --out sop/logs/llm.jsonl --require "parse_rate>=0.98" --require "illegal_rate<=0.01"
step "3 pairs" $py -m cli pairs --episodes sop/logs/llm.jsonl --strategy margin --margin 1.0 --out sop/pairs/all.jsonl
step "4 split" $py -m cli split --pairs sop/pairs/all.jsonl --eval_ratio 0.1 --seed 0 --out sop/pairs
step "5 baseline tournament" $py -m cli tournament --env lightspiel/RepeatedPoker-v0 --opponent heuristic \
  --games 100 --mode generate --out sop/reports/before.json
step "6 DPO" $py -m cli fit --config configs/repeated_poker_dpo.yaml --trainer.default_root_dir sop/run \
  --trainer.max_epochs 1 "--trainer.callbacks=[]" \
  --data.init_args.pairs_path sop/pairs/pairs_train.jsonl --data.init_args.eval_pairs_path sop/pairs/pairs_eval.jsonl
step "7 tournament after training" $py -m cli tournament --env lightspiel/RepeatedPoker-v0 --opponent heuristic \
  --games 100 --mode generate --config configs/repeated_poker_dpo.yaml --ckpt_path sop/run/checkpoints/last.ckpt \
  --out sop/reports/after.json --baseline sop/reports/before.json --max_illegal_increase 0.01
step "7b head to head" $py -m cli tournament --env lightspiel/RepeatedPoker-v0 --opponent llm --games 40 \
  --mode score --config configs/repeated_poker_dpo.yaml --ckpt_path sop/run/checkpoints/last.ckpt \
  --out sop/reports/head_to_head.json
step "8 export" $py -m cli export --config configs/repeated_poker_dpo.yaml --ckpt_path sop/run/checkpoints/last.ckpt \
  --out sop/export --merge
echo "== done"
