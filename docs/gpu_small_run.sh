#!/bin/bash
# ELECTRA-Small on one GPU, proven downstream (issue 20, part 4): the Table 6 shape
# (experiments/small.gin: 12 layers x 256, batch 128 x 128, lr 5e-4), bf16, packed rows of BERT
# uncased WordPiece built from WikiExtractor Wikipedia, the SST-2 probe at every evaluation, then
# SST-2 and CoLA fine-tuned from it and from random init (3 seeds, final checkpoint). One call of
# the device tool; everything a later reader needs lands in $OUT (default workdirs/gpu_small):
#
#   bash docs/gpu_small_run.sh prepare   # here: copies the data into gpu_data/ (<= 60 MiB) and
#                                        # lists it in .git/info/exclude, so `run` carries it
#   bash docs/gpu_small_run.sh run       # on the device, carry ["gpu_data"]
#
# Knobs (environment): STEPS (pre-training steps, default 6000; the benchmark once measured 58.6
# bf16 Small steps/s on an H100, synthetic batch: about 2 minutes at that pace, not measured in
# the training loop), TRAIN_EXAMPLES (each task's training subset, default 8000: SST-2 has 67k,
# CoLA 8.5k), EPOCHS (a float, default 3.0), CORPUS_MB (prepare: how much of
# pretrain_corpus_large, default 50), EXPERIMENT (default small), PRETRAIN_SET (extra
# `;`-separated bindings), BENCH_STEPS (timed steps of the benchmark at batch 128, default 50),
# SHARED (prepare: default ../shared/data). A CPU dry run of the plumbing (a few minutes):
#   CORPUS_MB=1 bash docs/gpu_small_run.sh prepare
#   STEPS=4 EXPERIMENT=tiny TRAIN_EXAMPLES=64 EPOCHS=0.1 BENCH_STEPS=2 \
#     PRETRAIN_SET="DataConfig.global_batch_size = 8;DataConfig.eval_batches = 1" \
#     bash docs/gpu_small_run.sh run
set -euo pipefail
MODE=${1:?usage: bash docs/gpu_small_run.sh prepare|run}
DATA=gpu_data
if [ "$MODE" = prepare ]; then
  SRC=${SHARED:-../shared/data}
  rm -rf "$DATA" && mkdir -p "$DATA/corpus" "$DATA/glue/SST-2" "$DATA/glue/CoLA"
  cp "$SRC/vocab/bert-uncased-vocab.txt" "$DATA/"
  cp "$SRC"/glue/SST-2/{train,dev}.tsv "$DATA/glue/SST-2/"
  cp "$SRC"/glue/CoLA/{train,dev}.tsv "$DATA/glue/CoLA/"
  budget=$(( ${CORPUS_MB:-50} * 1024 * 1024 )); used=0
  for f in $(find "$SRC/pretrain_corpus_large/enwiki_2015_wikiextractor" -type f -name 'wiki_*' | sort); do
    size=$(stat -c %s "$f"); [ $(( used + size )) -gt $budget ] && break
    dir="$DATA/corpus/$(basename "$(dirname "$f")")"; mkdir -p "$dir"; cp "$f" "$dir/"
    used=$(( used + size ))
  done
  exclude="$(git rev-parse --git-common-dir)/info/exclude"; mkdir -p "$(dirname "$exclude")"
  grep -qx "/$DATA/" "$exclude" 2>/dev/null || echo "/$DATA/" >> "$exclude"
  du -sh "$DATA"; exit 0
fi
[ "$MODE" = run ] || { echo "usage: bash docs/gpu_small_run.sh prepare|run" >&2; exit 2; }
[ -d "$DATA/corpus" ] || { echo "no $DATA/: run 'bash docs/gpu_small_run.sh prepare' first" >&2; exit 2; }
OUT=${OUT:-workdirs/gpu_small}; WORK=${WORK:-/tmp/gpu_small}; STEPS=${STEPS:-6000}
mkdir -p "$OUT" "$WORK"
{ date -u; git rev-parse HEAD 2>/dev/null || true; nvidia-smi -L 2>/dev/null || echo "no nvidia-smi";
  python -c "import jax; print(jax.__version__, jax.devices())"; } > "$OUT/device.txt" 2>&1
start=$(date +%s)
python -m data_pipelines.build_pretraining_data --corpus "wikiextractor:$DATA/corpus" \
  --tokenizer "wordpiece:$DATA/bert-uncased-vocab.txt" --seq_len 128 --output "$WORK/shards" \
  --num_shards 16 --num_workers "$(nproc)" --eval_shards 1 > "$OUT/build.log" 2>&1
echo "shards: $(( $(date +%s) - start )) s" >> "$OUT/device.txt"
python -m electra_jax.benchmark --size "${EXPERIMENT:-small}" --dtype bfloat16 --batch 128 \
  --data "$WORK/shards" --steps "${BENCH_STEPS:-50}" --json > "$OUT/benchmark.txt" 2>&1 || true
sets=(--pretrain_set 'ModelConfig.dtype = "bfloat16"' --pretrain_set 'LogConfig.progress_bar = False'
      --pretrain_set "DataConfig.eval_every = $(( STEPS / 4 > 0 ? STEPS / 4 : 1 ))"
      --pretrain_set 'CheckpointConfig.save_every = 0')
IFS=';' read -ra extra <<< "${PRETRAIN_SET:-}"
for b in "${extra[@]}"; do [ -n "$b" ] && sets+=(--pretrain_set "$b"); done
python -m electra_jax.quality --pretrain_data "$WORK/shards" --experiment "${EXPERIMENT:-small}" \
  --objectives electra --pretrain_steps "$STEPS" --probe sst2 --tasks sst2,cola --seeds 1,2,3 \
  --data_dir "$DATA/glue" "${sets[@]}" \
  --gin_bindings "FinetuneConfig.max_train_examples = ${TRAIN_EXAMPLES:-8000}" \
  --gin_bindings 'FinetuneConfig.train_sample_seed = 0' \
  --gin_bindings "FinetuneConfig.num_epochs = ${EPOCHS:-3.0}" \
  --gin_bindings 'LogConfig.progress_bar = False' \
  --gin_bindings 'FinetuneConfig.write_predictions = False' \
  --gin_bindings 'FinetuneConfig.save_checkpoint = False' \
  --workdir "$WORK/quality" > "$OUT/quality.log" 2>&1
echo "total: $(( $(date +%s) - start )) s" >> "$OUT/device.txt"
cp "$WORK/quality/quality.json" "$WORK/quality/pretraining_curves.png" "$OUT/"
cp "$WORK/quality/electra/"{config.json,metrics.jsonl,eval_metrics.jsonl} "$OUT/"
tail -20 "$OUT/quality.log"
