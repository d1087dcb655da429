#!/usr/bin/env bash
# One machine, one process per device, without Slurm: `python -m lit_i2v` under torchrun. Lightning picks up the
# torchrun environment (TorchElasticEnvironment), so ranks and world size come from torchrun.
#   launch/torchrun.sh NPROC SUBCOMMAND --config X.yaml [--key=value ...]
#   launch/torchrun.sh 8 fit --config configs/ssv2_adapter.yaml
# Multi-node and Slurm launchers come with cluster support (issue 4).
set -euo pipefail
nproc=${1:?usage: launch/torchrun.sh NPROC SUBCOMMAND --config X.yaml [--key=value ...]}
shift
# `python -m torch.distributed.run` is torchrun itself, without needing its script on PATH (a venv not activated).
exec "${PYTHON:-python}" -m torch.distributed.run --standalone --nproc_per_node="$nproc" -m lit_i2v "$@" --trainer.devices="$nproc" --trainer.num_nodes=1
