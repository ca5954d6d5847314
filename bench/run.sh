#!/usr/bin/env bash
# make bench: each of our stages against its Python peer on the same input, in one run.
#
#   bash bench/run.sh [NAME ...]     (default: every benchmark)
#
# Prints one line per comparison, `bench NAME ours=X peer=Y unit=U ratio=R`, where R > 1
# means we are better (faster). Needs the peers' venv: made on first use from
# ../shared/peers/setup.sh into $PEERS_VENV (default .venv-peers). Each comparison runs ours
# and the peer alternately, REPEAT times each (default 3), and compares medians, so both see
# the same machine load.
set -euo pipefail
cd "$(dirname "$0")/.."

root=$(pwd)
peers="${PEERS_DIR:-$root/../shared/peers}"
venv="${PEERS_VENV:-$root/.venv-peers}"
repeat="${REPEAT:-3}"
data="$root/data/cifar10-small"
bin="$root/target/release"
work="$root/runs/bench"
mkdir -p "$work"

if [ ! -x "$venv/bin/python" ]; then
  echo "bench: installing the Python peers into $venv (about 6 GB, once)" >&2
  bash "$peers/setup.sh" "$venv" >&2
fi
py="$venv/bin/python"

# median of numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END {if (NR % 2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# seconds since the epoch, with nanoseconds
now() { date +%s.%N; }
# a JSON field of a one-line JSON document on stdin
field() { "$py" -c "import json,sys; d=json.loads(sys.stdin.readlines()[-1]); print(eval('d' + sys.argv[1]))" "$1"; }
report() { # name ours peer unit higher-is-better(1|0)
  local ratio
  if [ "$5" = 1 ]; then ratio=$(awk -v a="$2" -v b="$3" 'BEGIN {printf "%.2f", a / b}')
  else ratio=$(awk -v a="$2" -v b="$3" 'BEGIN {printf "%.2f", b / a}'); fi
  echo "bench $1 ours=$2 peer=$3 unit=$4 ratio=$ratio"
}

images_table="$work/images.parquet"
ensure_images() {
  [ -f "$images_table" ] || "$bin/latent-ingest" "$data" --out "$images_table" -q
}

bench_ingest() {
  local ours=() peer=()
  for _ in $(seq "$repeat"); do
    local t0 t1
    t0=$(now); "$bin/latent-ingest" "$data" --out "$work/ingest.parquet" -q; t1=$(now)
    ours+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", 6000 / (b - a)}')")
    peer+=("$(cd "$peers" && "$py" ingest_pillow.py "$data" "$work/ingest_peer.parquet" \
      --workers 2 --repeat 1 2>/dev/null | field "['images_per_s_median']")")
  done
  report ingest "$(printf '%s\n' "${ours[@]}" | median)" "$(printf '%s\n' "${peer[@]}" | median)" images/s 1
}

bench_augment() { # size
  local size=$1 ours=() peer=()
  ensure_images
  for _ in $(seq "$repeat"); do
    local t0 t1
    t0=$(now)
    "$bin/latent-augment" "$images_table" --epochs 2 --size "$size" --out /dev/null -q
    t1=$(now)
    ours+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", 2 * 2 * 5000 / (b - a)}')")
    peer+=("$(cd "$peers" && "$py" augment_torchvision.py "$data" --size "$size" --epochs 2 \
      --workers 2 2>/dev/null | field "['views_per_s']")")
  done
  report "augment-$size" "$(printf '%s\n' "${ours[@]}" | median)" \
    "$(printf '%s\n' "${peer[@]}" | median)" views/s 1
}

bench_probes() {
  # The same probes on the same latent table (the random-init encoder's): our time is the
  # analyzer's own timing of that feature set (load, standardise, probes, kNN, k-means),
  # the peer's its total wall time. Accuracies are printed beside, to check agreement.
  ensure_images
  local latent="$work/latent_random.parquet"
  [ -f "$latent" ] || "$bin/latent-export" "$images_table" --random-init --out "$latent" -q
  local ours=() peer=() ours_acc peer_acc
  for _ in $(seq "$repeat"); do
    "$bin/latent-analyze" --images "$images_table" --latent random-init="$latent" \
      --out "$work/probe_report" -q
    ours+=("$("$py" -c "import json; s=json.load(open('$work/probe_report/report.json'))['feature_sets'][1]; print(round(sum(v for v in s['timings_s'].values() if isinstance(v, (int, float))), 3))")")
    ours_acc=$("$py" -c "import json; s=json.load(open('$work/probe_report/report.json'))['feature_sets'][1]; print(' '.join(f\"lin{p['fraction']}={100*p['mean']:.1f}\" for p in s['linear_probe']), f\"knn20={100*s['knn']['vote_accuracy']:.1f}\")")
    local line
    line=$(cd "$peers" && "$py" probe_sklearn.py "$latent" 2>/dev/null | tail -1)
    peer+=("$(echo "$line" | field "['total_wall_s']")")
    peer_acc=$(echo "$line" | "$py" -c "import json,sys; d=json.loads(sys.stdin.read()); print(' '.join(f\"{k}={100*(v['mean'] if isinstance(v, dict) else v):.1f}\" for k, v in d.items() if k.startswith(('linear', 'knn')) and not isinstance(v, str)))")
  done
  report probes "$(printf '%s\n' "${ours[@]}" | median)" "$(printf '%s\n' "${peer[@]}" | median)" s 0
  echo "# probes accuracy ours: $ours_acc"
  echo "# probes accuracy peer: $peer_acc"
}

bench_probes_agreement() {
  # Linear-probe accuracy at 1% and 10% labels, ours and the peer's, each averaged over
  # SEEDS label subsets (default 20). Both draw class-stratified subsets and 3 folds with
  # their own random generators, so with the peer's usual 3 seeds the means differ by
  # about a point from draw luck alone; many seeds compare the protocols, not the luck.
  # Prints the difference (ours - peer) and its standard error per fraction.
  ensure_images
  local latent="$work/latent_random.parquet" seeds="${SEEDS:-20}"
  [ -f "$latent" ] || "$bin/latent-export" "$images_table" --random-init --out "$latent" -q
  local config="$work/probes-agreement.toml"
  printf '[analyze]\nlabel_fractions = [0.01, 0.1]\nseeds = [%s]\n' \
    "$(seq -s, 0 $((seeds - 1)))" > "$config"
  "$bin/latent-analyze" --images "$images_table" --latent random-init="$latent" \
    --config "$config" --out "$work/probes_agreement" -q
  local peer_line
  peer_line=$(cd "$peers" && "$py" "$root/bench/probe_seeds.py" . "$seeds" 0.01,0.1 -- \
    "$latent" 2>/dev/null | tail -1)
  "$py" - "$work/probes_agreement/report.json" "$peer_line" <<'PY'
import json, math, sys
ours = {p["fraction"]: [s["accuracy"] for s in p["per_seed"]]
        for p in json.load(open(sys.argv[1]))["feature_sets"][1]["linear_probe"]}
peer = json.loads(sys.argv[2])
for fraction, key in ((0.01, "linear_1pct"), (0.1, "linear_10pct")):
    a, b = ours[fraction], peer[key]["per_seed"]
    mean = lambda v: sum(v) / len(v)
    var = lambda v: sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1)
    se = math.sqrt(var(a) / len(a) + var(b) / len(b))
    print(f"bench probes-agreement-{fraction * 100:g}pct ours={100 * mean(a):.2f} "
          f"peer={100 * mean(b):.2f} unit=accuracy% seeds={len(a)}/{len(b)} "
          f"difference={100 * (mean(a) - mean(b)):+.2f} standard_error={100 * se:.2f}")
PY
}

bench_train_step() {
  # A SimCLR training run of 2 epochs at batch 256 (views made on the fly by one worker on
  # both sides); images/s over the whole run, as the peer reports it.
  ensure_images
  local config="$work/train-step.toml" ours=() peer=()
  printf '[augment]\nepochs = 2\nworkers = 1\n[train]\nbatch_size = 256\n' > "$config"
  for _ in $(seq "$repeat"); do
    "$bin/latent-augment" "$images_table" --config "$config" -q \
      | "$bin/latent-train" - --config "$config" --out "$work/train-step" -q
    ours+=("$("$py" -c "import json; print(round(json.load(open('$work/train-step/summary.json'))['images_per_s'], 1))")")
    peer+=("$(cd "$peers" && "$py" simclr_torch.py "$data" --epochs 2 --workers 1 \
      --out "$work/peer_latent.parquet" 2>/dev/null | field "['train_images_per_s']")")
  done
  report train-step "$(printf '%s\n' "${ours[@]}" | median)" \
    "$(printf '%s\n' "${peer[@]}" | median)" images/s 1
}

bench_export_memory() {
  # Peak memory of `latent-export` on the 6,000-image default and on the 60,000-image
  # CIFAR-10 tar (ten times the rows): export streams, so the ratio should stay near 1.
  # No peer: the line compares our two runs (ratio = small / large, 1 = flat).
  ensure_images
  local large_images="$work/images_60k.parquet"
  local tar="$root/../shared/datasets/cifar10/cifar10-images.tar"
  [ -f "$large_images" ] || "$bin/latent-ingest" "$tar" --out "$large_images" -q
  local small large
  small=$(/usr/bin/time -f '%M' "$bin/latent-export" "$images_table" --random-init \
    --out "$work/latent_mem_small.parquet" -q 2>&1 >/dev/null | tail -1)
  large=$(/usr/bin/time -f '%M' "$bin/latent-export" "$large_images" --random-init \
    --out "$work/latent_mem_large.parquet" -q 2>&1 >/dev/null | tail -1)
  echo "bench export-memory small=$((small / 1024)) large=$((large / 1024)) unit=MB-peak-RSS rows=6000/60000 ratio=$(awk -v a="$small" -v b="$large" 'BEGIN {printf "%.2f", a / b}')"
}

all=(ingest augment-32 augment-96 train-step probes export-memory)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for name in "${names[@]}"; do
  case "$name" in
    ingest) bench_ingest ;;
    augment-32) bench_augment 32 ;;
    augment-96) bench_augment 96 ;;
    train-step) bench_train_step ;;
    probes) bench_probes ;;
    export-memory) bench_export_memory ;;
    probes-agreement) bench_probes_agreement ;;
    *) echo "bench: unknown benchmark '$name' (known: ${all[*]} probes-agreement)" >&2; exit 2 ;;
  esac
done
