#!/usr/bin/env bash
# Continue training every shipped network on one GPU, all four at once, in
# a single call of the development `device` tool (15 minutes of GPU time in
# all, 10 per command), and bring the new weights back as one archive.
#
#   Here, once:     bash scripts/train_on_gpu.sh --prepare
#                   (copies the training photos into .train-photos/ and
#                   fetches the pyzmq wheel the GPU machine lacks into .whl/,
#                   both git-ignored, then checks the whole run on the CPU
#                   for a few seconds: the GPU's minutes are too few to find
#                   bugs with)
#   On the GPU:     device run, carry [".train-photos", ".whl"], timeout_s 600:
#                   SHARPFU_COMMIT=<git rev-parse HEAD here> bash scripts/train_on_gpu.sh 6
#                   (the tree there has no .git; the records take the commit
#                   from SHARPFU_COMMIT, so commit first)
#   Back here:      tar -xzf FILES_AT/weights.tar.gz -C models/weights
#                   then bench/sr_quality.py, deblur_quality.py and
#                   matting_quality.py; keep what beats the shipped weights
#                   and `git checkout` the rest (logs.tar.gz has each run's
#                   log and validation curve).
#
# MINUTES is each network's training time (the scripts' --minutes: steps
# only, without validation). Start-up, validation and export come on top:
# under 3 minutes for all four together in --check on the 2-core CPU, not
# yet measured on a GPU; 6 is meant to leave room in a 10-minute command.
# Each run starts from the shipped weights (--init) and keeps their data
# recipe; its record names the weights it started from and the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

# photos/ and photos-by-sa/ below it (tests point it at synthetic ones)
PHOTOS=${SHARPFU_TRAIN_PHOTOS:-.train-photos}
if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$PHOTOS"
    cp -r ../shared/data/photos ../shared/data/photos-by-sa "$PHOTOS"/
    case $PHOTOS in
        /*) ;;   # outside the checkout: nothing for git to ignore
        *) grep -qx "/$PHOTOS/" .git/info/exclude 2>/dev/null || echo "/$PHOTOS/" >> .git/info/exclude ;;
    esac
    # The scripts import server/, which imports the client library, which
    # needs pyzmq: the GPU machine's Python 3.12 has none and cannot fetch.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "pyzmq==$(.venv/bin/python -c \
        'import zmq; print(zmq.__version__)')"
    du -sh "$PHOTOS" .whl
    exec bash "$0" --check
fi

PYTHON=(python3)
if [ "${1:-}" = "--check" ]; then
    # The same commands on the CPU for a few seconds each: every code path
    # the GPU run takes except CUDA itself. Python runs without its site
    # hooks (-S), its packages on PYTHONPATH, so that SharpFu's own editable
    # install is invisible, as on the GPU machine.
    PYTHONPATH=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    PYTHON=(.venv/bin/python -S) DEVICE=cpu MINUTES=0.05 WORK=$(mktemp -d) OUT=${OUT:-$(mktemp -d)}
else
    MINUTES=${1:?usage: train_on_gpu.sh MINUTES | --prepare | --check}
    DEVICE=cuda WORK=$(mktemp -d) OUT=${OUT:?run it through the device tool, which sets OUT}
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "${PYTHON[@]}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/pyzmq-*.whl
    export PYTHONPATH=/tmp/site
fi
# the client library from this checkout, not an installed copy
export PYTHONPATH=$PWD/plugin${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
trap 'rm -rf "$WORK"' EXIT
WEIGHTS=$WORK/weights LOGS=$WORK/logs
mkdir -p "$WEIGHTS" "$LOGS"
SHIPPED=models/weights
COMMON=(--photos "$PHOTOS/photos" --photos "$PHOTOS/photos-by-sa" --device "$DEVICE"
        --weights-dir "$WEIGHTS" --minutes "$MINUTES" --bf16)
# the recipe the shipped SPAN weights finished with (see their records)
SR_RECIPE=(--recipe blur=0.1 --recipe blur_sigma=0.3,1.0 --recipe noise=0.1
           --recipe noise_sigma=1,5 --recipe jpeg=0.5 --recipe second_order=0.1)

# 16 cores: 14 batch workers and the four training processes. Batch and
# patch sizes are the GPU's (the CPU runs used 16 x 48, 16 x 32, 8 x 128, 4).
"${PYTHON[@]}" scripts/train_sr.py --scale 2 --name span-x2 --run "$WORK/span-x2" \
    --init $SHIPPED/span-x2.safetensors --batch 64 --patch 64 --workers 4 --threads 1 \
    --validate-every 90 "${SR_RECIPE[@]}" "${COMMON[@]}" > "$LOGS/span-x2.log" 2>&1 &
"${PYTHON[@]}" scripts/train_sr.py --scale 4 --name span-x4 --run "$WORK/span-x4" \
    --init $SHIPPED/span-x4.safetensors --batch 64 --patch 48 --workers 3 --threads 1 \
    --validate-every 90 "${SR_RECIPE[@]}" "${COMMON[@]}" > "$LOGS/span-x4.log" 2>&1 &
"${PYTHON[@]}" scripts/train_deblur.py --name mimo-unet-small --run "$WORK/mimo-unet-small" \
    --init $SHIPPED/mimo-unet-small.safetensors --batch 16 --patch 192 --workers 4 \
    --threads 1 --no-nice --validate-every 120 "${COMMON[@]}" \
    > "$LOGS/mimo-unet-small.log" 2>&1 &
"${PYTHON[@]}" scripts/train_matte.py --run "$WORK/matte" --init $SHIPPED --batch 16 --workers 3 \
    --threads 1 --validate-every 90 "${COMMON[@]}" > "$LOGS/matte.log" 2>&1 &

failed=0
for job in $(jobs -p); do
    wait "$job" || failed=$((failed + 1))
done
for log in "$LOGS"/*.log; do
    echo "== $(basename "$log")"
    tail -n 4 "$log"
done
for run in span-x2 span-x4 mimo-unet-small matte; do
    if [ -f "$WORK/$run/log.jsonl" ]; then cp "$WORK/$run/log.jsonl" "$LOGS/$run.jsonl"; fi
done
tar -czf "$OUT/weights.tar.gz" -C "$WEIGHTS" .
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
ls -l "$OUT"
[ "$failed" = 0 ] || { echo "$failed of the trainings failed: see the logs above" >&2; exit 1; }
