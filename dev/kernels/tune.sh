#!/usr/bin/env bash
# Sweeps v3's block sizes (KC MC NC) on the ViT-B/32 shapes and prints, per shape, the
# percentage of the FMA ceiling measured just before (bench_sgemm's %peak), the median of
# ROUNDS rounds with the configs interleaved: this machine's clock and the load other
# processes put on it drift by +-20%, which raw GFLOP/s would pin on whichever config ran
# then (and a best-of would pick the rounds whose ceiling measurement came out low).
#   ./tune.sh "256 72 256" "256 144 256 -DSGEMM_NO_PREFETCH_C" ...
#   (KC MC NC [compile flags]; default: the sweep recorded in README.md)
#   THREADS=2 ROUNDS=3 ./tune.sh
set -euo pipefail
cd "$(dirname "$0")"
configs=("$@")
if [ ${#configs[@]} -eq 0 ]; then
  configs=("128 72 256" "192 72 256" "256 72 256" "384 72 256" "256 48 256" "256 96 256"
           "256 144 256" "256 72 128" "256 72 512" "256 72 1024")
fi
threads=${THREADS:-1}
rounds=${ROUNDS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in "${!configs[@]}"; do
  read -r kc mc nc extra <<<"${configs[$i]}"
  make -s KC="$kc" MC="$mc" NC="$nc" EXTRA="${extra:-}" bench_sgemm >/dev/null
  cp bench_sgemm "$tmp/bench_$i"
done
for r in $(seq "$rounds"); do
  for i in "${!configs[@]}"; do
    "$tmp/bench_$i" --threads "$threads" --shapes vit v3 | awk '$2 == "v3" {print $6 + 0}' >"$tmp/r${r}_$i"
  done
done
echo "KC   MC   NC    flags                  1600x768x768 x768x3072 x3072x768 x768x512  (% of FMA peak, median of $rounds)"
for i in "${!configs[@]}"; do
  read -r kc mc nc extra <<<"${configs[$i]}"
  printf "%-4s %-4s %-5s %-22s " "$kc" "$mc" "$nc" "${extra:-}"
  paste "$tmp"/r*_"$i" | while read -r -a v; do
    printf "%10s" "$(printf "%s\n" "${v[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')"
  done
  echo
done
make -s bench_sgemm >/dev/null  # leave the default build behind
