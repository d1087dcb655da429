#!/usr/bin/env bash
# lit_i2v's GPU checks in one command, for a lent GPU machine (this workplace's device tool) or any CUDA node:
#   bash launch/gpu/fetch_wheels.sh          # here, once: what the GPU machine's image lacks, into .whl/
#   device run: carry [".whl"], command "bash launch/gpu/checks.sh", timeout_s 570
# Each step is bounded in time (8.75 minutes in all) and writes under $OUT (default benchmarks/out/gpu), at most 8 files:
#   1. tests/test_gpu.py: bf16 fits with the DDP and FSDP presets on one GPU, training clips decoded from JPEG shards
#      on the GPU, the device's resize and nvJPEG's pixels against the CPU's;
#   2. benchmarks/device_resize.py --device cuda: the device's share of the data path, crops and JPEGs;
#   3. benchmarks/train_step.py at bf16, batch 32: ViT-B/16 8x224 full fine-tuning and ST-Adapter, MFU;
#   4. benchmarks/selective_scan.py --device cuda: MoMa's scan (8 clips, 8 and 16 frames), the chunked torch scan
#      against the sequential one and, where mamba_ssm imports (the [mamba] extra, if the machine's image has it),
#      its kernel;
#   5. benchmarks/mllm_step.py --device cuda on the tiny LLaVA: the generative-QA path in bf16 on a GPU (overheads:
#      no 7B weights reach the machine); skipped when the image has no transformers (not among the carried wheels).
# None of it has run on a GPU yet (none lent): the bounds are guesses; a first run tells the real times.
# Record the figures, with the card (card.txt), in benchmarks/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-benchmarks/out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then  # the image's torch, torchvision and lightning stay; the carried wheels add the rest
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{ nvidia-smi -L; python3 -c "import torch, torchvision, lightning; print('torch', torch.__version__, 'torchvision',
  torchvision.__version__, 'lightning', lightning.__version__)"; } 2>&1 | tee "$out/card.txt"
status=0
timeout 180 python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py 2>&1 | tee "$out/tests.log" || status=1
timeout 60 python3 benchmarks/device_resize.py --device cuda --batch 32 --out "$out/device_resize" 2>&1 \
  | tee "$out/device_resize.log" || status=1
timeout 180 python3 benchmarks/train_step.py --device cuda --precision bf16 --batch 32 --steps 10 --out "$out/train_step" \
  --configs configs/recognition/k400/vit-b16-openai_full-finetune_8x224.yaml \
  configs/recognition/k400/vit-b16-openai_st-adapter-12x384_8x224.yaml 2>&1 | tee "$out/train_step.log" || status=1
timeout 60 python3 benchmarks/selective_scan.py --device cuda --frames 8 16 --clips 8 --out /tmp/selective_scan 2>&1 \
  | tee "$out/selective_scan.log" || status=1
if python3 -c "import transformers" 2>/dev/null; then
  timeout 45 python3 benchmarks/mllm_step.py --device cuda --precision bf16 --model tiny --out /tmp/mllm 2>&1 \
    | tee "$out/mllm_step.log" || status=1
fi
exit $status
