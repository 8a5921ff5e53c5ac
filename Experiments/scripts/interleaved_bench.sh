#!/bin/bash
# Swift (2 threads in one process; 2 ranks × 1 thread under mpirun; 2 worker threads × 1 thread) and PyTorch (2 threads; two
# processes × 1 thread on half the work each), interleaved, three rounds, JSON into OUT.
#     Experiments/scripts/interleaved_bench.sh BINARY OUT
# BINARY: a copy of .build/release/diffusion-rl (so that a rebuild cannot change it mid-run).
# Summarize with Experiments/scripts/summarize_bench.py OUT.
set -e
cd "$(dirname "$0")/../.."
B=$1
O=$2
mkdir -p "$O"
P=".venv/bin/python Experiments/peers"
MPI="mpirun --allow-run-as-root -np 2"
for r in 1 2 3; do
  $B bench unet --threads 2 --json > $O/unet-swift-t2-$r.json 2>/dev/null
  $MPI $B bench unet --threads 1 --json > $O/unet-swift-r2-$r.json 2>/dev/null
  $B bench unet --workers 2 --threads 1 --json > $O/unet-swift-w2-$r.json 2>/dev/null
  $P/bench_unet_torch.py --threads 2 --json > $O/unet-torch-t2-$r.json
  $P/bench_unet_torch.py --threads 1 --batches 4,16 --json > $O/unet-torch-p2-$r-a.json &
  $P/bench_unet_torch.py --threads 1 --batches 4,16 --json > $O/unet-torch-p2-$r-b.json; wait
  $B bench ddpo --threads 2 --json > $O/ddpo-swift-t2-$r.json 2>/dev/null
  $MPI $B bench ddpo --threads 1 --json > $O/ddpo-swift-r2-$r.json 2>/dev/null
  $B bench ddpo --workers 2 --threads 1 --json > $O/ddpo-swift-w2-$r.json 2>/dev/null
  $P/ddpo_epoch_torch.py --threads 2 --repeats 1 --json > $O/ddpo-torch-t2-k1-$r.json
  $P/ddpo_epoch_torch.py --threads 2 --repeats 1 --steps-per-pass 4 --json > $O/ddpo-torch-t2-k4-$r.json
  for k in 1 4; do
    $P/ddpo_epoch_torch.py --threads 1 --repeats 1 --samples 16 --train-batch 4 --steps-per-pass $k --json > $O/ddpo-torch-p2-k$k-$r-a.json &
    $P/ddpo_epoch_torch.py --threads 1 --repeats 1 --samples 16 --train-batch 4 --steps-per-pass $k --json > $O/ddpo-torch-p2-k$k-$r-b.json; wait
  done
done
