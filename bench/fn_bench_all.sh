#!/bin/sh
# The false-negative bench as run for bench/results/fn_report.md: train the cross-encoders, then the curves.
# Run under the shared lock: flock /tmp/negforge-heavy.lock sh bench/fn_bench_all.sh
set -e
date -u +%T; cat /proc/loadavg
python3 bench/fn_bench_prep.py --data ../shared/data/scifact --name scifact --max-pairs 1100 --max-length 96 \
  --freeze-layers 2 --dev-pairs 150 --evals 4
date -u +%T; cat /proc/loadavg
python3 bench/bench_fn_report.py --datasets scifact --max-positives 4 --out bench/results/scifact_only
date -u +%T; cat /proc/loadavg
python3 bench/fn_bench_prep.py --data ../shared/data/nfcorpus --name nfcorpus --sources bm25 --heldout-queries 40 \
  --max-positives 1 --max-pairs 700 --max-length 96 --freeze-layers 2 --dev-pairs 150 --evals 3
date -u +%T; cat /proc/loadavg
python3 bench/bench_fn_report.py --datasets scifact,nfcorpus --max-positives 4 --no-corpus-vectors-for nfcorpus
date -u +%T; cat /proc/loadavg
