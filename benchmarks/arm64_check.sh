#!/usr/bin/env bash
# Correctness of skinedge on 64-bit ARM, by emulation (no board needed).
#
# Builds a Debian arm64 root (debootstrap --foreign + second stage under qemu-user, binfmt_misc),
# installs skinedge offline from a wheel built here plus the aarch64 wheels of its dependencies
# (numpy from Debian itself), runs `skinedge predict` and a raw-output dump on the reference
# ImageNet models and images and on the skinedge model over real photos, and compares with x86:
# identical top-1 and raw outputs within one quantization step.
#
# Emulated timings are NOT performance figures and this script reports none.
#
# Usage (root; Debian/Ubuntu host with apt; internet to the Debian mirror and PyPI):
#   benchmarks/arm64_check.sh                 # Debian bookworm, Python 3.11, python3-numpy 1.24
#   SUITE=trixie benchmarks/arm64_check.sh    # Debian trixie, Python 3.13, python3-numpy 2.2
# Environment:
#   ARM64_BASE       where roots, qemu and wheels go (default /work/arm64-root; keep it outside the repo)
#   SKINEDGE_SHARED  the shared folder (default: ../shared beside the repo)
#   SKINEDGE_MODEL   the skinedge model to check (default: the default bundled model, models/ + model_io.BUNDLED_MODEL;
#                    e.g. models/skinedge_mobilenetv2_int8.tflite for the paper's MobileNetV2, bundled by name)
#   HOST_PYTHON      x86 python with skinedge installed (default: /work/venv/bin/python, else python3)
#   MIRROR           Debian mirror (default http://deb.debian.org/debian)
# Result: $ARM64_BASE/$SUITE/result.json and benchmarks/results/arm64_<suite>.json; exit 0 when all match.
#
# Why qemu from trixie: Debian bookworm's qemu-user 7.2 crashed inside LiteRT's Interpreter;
# qemu 10 (trixie) runs it. The static qemu-aarch64 is taken from trixie's qemu-user package with a
# private apt configuration (nothing on the host's apt setup changes) and registered with binfmt_misc
# (flag F, so it also works inside the chroot).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
SUITE="${SUITE:-bookworm}"
BASE="${ARM64_BASE:-/work/arm64-root}"
ROOT="$BASE/$SUITE"
CACHE="$BASE/cache"
SHARED="${SKINEDGE_SHARED:-$REPO/../shared}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
if [[ -z "${HOST_PYTHON:-}" ]]; then
    if [[ -x /work/venv/bin/python ]]; then HOST_PYTHON=/work/venv/bin/python; else HOST_PYTHON=python3; fi
fi
# The file the wheel bundles as the default (the runtime's own constant, so this script never goes stale).
DEFAULT_MODEL="$REPO/models/$("$HOST_PYTHON" -c 'from skinedge.model_io import BUNDLED_MODEL; print(BUNDLED_MODEL)')"
MODEL="${SKINEDGE_MODEL:-$DEFAULT_MODEL}"
case "$SUITE" in
    bookworm) PYVER=3.11 ;;
    trixie) PYVER=3.13 ;;
    *) echo "SUITE must be bookworm or trixie" >&2; exit 2 ;;
esac
case "$REPO/" in "$BASE"/*) echo "ARM64_BASE must be outside the repository" >&2; exit 2 ;; esac
[[ $EUID -eq 0 ]] || { echo "run as root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }

log() { printf '[arm64-check %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
mkdir -p "$CACHE"

# 1. qemu-aarch64 (static) from Debian trixie's qemu-user, via a private apt configuration.
QEMU="$CACHE/qemu/usr/bin/qemu-aarch64"
if [[ ! -x "$QEMU" ]]; then
    log "fetching qemu-user from Debian trixie"
    APT="$CACHE/apt"
    mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$CACHE/debs"
    cat > "$APT/trixie.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    aptopt=(-o "Dir::Etc::SourceList=$APT/trixie.sources" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o Dir::State::status=/dev/null
            -o APT::Architectures::=amd64 -o APT::Sandbox::User=root)
    apt-get "${aptopt[@]}" update -qq
    (cd "$CACHE/debs" && apt-get "${aptopt[@]}" download qemu-user)
    dpkg -x "$CACHE"/debs/qemu-user_*.deb "$CACHE/qemu"
fi
log "$("$QEMU" --version | head -1)"

# 2. binfmt_misc: run aarch64 ELF files with that qemu (F: opened now, usable inside the chroot).
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
BINFMT=/proc/sys/fs/binfmt_misc/skinedge-qemu-aarch64
if [[ -e "$BINFMT" ]] && ! grep -q "interpreter $QEMU" "$BINFMT"; then echo -1 > "$BINFMT"; fi
if [[ ! -e "$BINFMT" ]]; then
    printf '%s' ':skinedge-qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$QEMU"':F' \
        > /proc/sys/fs/binfmt_misc/register
fi

# 3. The Debian arm64 root with its own Python and numpy.
if [[ ! -x "$ROOT/usr/bin/python3" || ! -e "$ROOT/.skinedge-root-ok" ]]; then
    command -v debootstrap > /dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
    log "debootstrap $SUITE arm64 into $ROOT (first stage)"
    rm -rf "$ROOT"
    debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-numpy,ca-certificates "$SUITE" "$ROOT" "$MIRROR"
    log "second stage (under qemu)"
    chroot "$ROOT" /debootstrap/debootstrap --second-stage
    touch "$ROOT/.skinedge-root-ok"
fi

# 4. Wheels, downloaded here for aarch64 and installed offline inside.
# Debian's numpy stays: the other wheels are resolved against its version (e.g. ml_dtypes 0.6 needs
# numpy 2, so for bookworm's numpy 1.24 pip picks ml_dtypes 0.5).
DEB_NUMPY="$(chroot "$ROOT" /usr/bin/python3 -c 'import numpy; print(numpy.__version__)')"
log "Debian python3-numpy in the root: $DEB_NUMPY"
WHEELS="$CACHE/wheels-$SUITE-numpy$DEB_NUMPY"
rm -rf "$WHEELS/skinedge"; mkdir -p "$WHEELS/skinedge"
log "building the skinedge wheel"
"$HOST_PYTHON" -m pip wheel -q --no-deps -w "$WHEELS/skinedge" "$REPO"
if [[ ! -e "$WHEELS/.deps-ok" ]]; then
    log "downloading aarch64 wheels for cp${PYVER/./}"
    "$HOST_PYTHON" -m pip download -q --only-binary=:all: --implementation cp --python-version "$PYVER" \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_27_aarch64 \
        --platform manylinux_2_28_aarch64 --platform manylinux_2_34_aarch64 \
        -c <(echo "numpy==$DEB_NUMPY") -d "$WHEELS" ai-edge-litert 'pillow>=9.5' 'click>=8.1'
    touch "$WHEELS/.deps-ok"
fi

# 5. Inputs: reference models and images, the skinedge model, a few real photos (2 per class).
IN="$ROOT/tmp/skinedge-check"
rm -rf "$IN"; mkdir -p "$IN/wheels" "$IN/ref-images" "$IN/photos" "$IN/out"
cp "$WHEELS"/*.whl "$WHEELS"/skinedge/*.whl "$IN/wheels/"
cp "$SHARED"/reference-models/*.tflite "$SHARED/reference-models/imagenet_labels.txt" "$IN/"
cp "$SHARED"/reference-models/images/* "$IN/ref-images/"
cp "$REPO/benchmarks/arm64_outputs.py" "$IN/"
HAVE_MODEL=0
if [[ -f "$MODEL" ]]; then
    HAVE_MODEL=1
    cp "$MODEL" "$IN/skinedge.tflite"
    # The default model is the one the wheel bundles: then the arm64 side runs it with no --model
    # (checks the packaging too); the compare step checks both sides ran the same SHA-256.
    if [[ "$(realpath "$MODEL")" == "$(realpath "$DEFAULT_MODEL")" ]]; then
        touch "$IN/use_bundled"
    fi
    for d in "$SHARED"/data/skin6/test/*/; do
        mapfile -t found < <(find "$d" -maxdepth 1 -type f -iname '*.jp*g' | sort)
        for f in "${found[@]:0:2}"; do cp "$f" "$IN/photos/$(basename "$d")__$(basename "$f")"; done
    done
else
    log "no skinedge model at $MODEL: checking the reference models only"
fi

# 6. Inside the root: a venv that sees Debian's numpy, offline install, predictions.
cleanup() {
    for m in "$ROOT/dev" "$ROOT/sys" "$ROOT/proc"; do
        if mountpoint -q "$m"; then umount -l "$m" || true; fi
    done
}
trap cleanup EXIT
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
mountpoint -q "$ROOT/sys" || mount --rbind /sys "$ROOT/sys"
mountpoint -q "$ROOT/dev" || mount --rbind /dev "$ROOT/dev"

cat > "$IN/run.sh" <<'EOF'
set -eu
cd /tmp/skinedge-check
uname -m > out/uname.txt
python3 --version > out/python.txt
python3 -c 'import numpy; print(numpy.__version__)' > out/debian_numpy.txt
rm -rf /opt/skinedge-venv
python3 -m venv --system-site-packages /opt/skinedge-venv
. /opt/skinedge-venv/bin/activate
numpy_pin="numpy==$(cat out/debian_numpy.txt)"
echo "$numpy_pin" > constraints.txt
pip install -q --no-index --find-links wheels -c constraints.txt skinedge > out/pip.txt 2>&1 || { cat out/pip.txt; exit 1; }
pip list --format=freeze > out/pip_freeze.txt
skinedge --version > out/skinedge_version.txt
run() { name=$1; shift; "$@" > "out/$name" 2> "out/$name.err" || echo "exit $? from: $*" >> "out/$name.err"; }
for m in mobilenet_v2_1.0_224_quant tf2_mobilenet_v2_1.0_224_ptq; do
    run "predict_$m.jsonl" skinedge predict --json --top-k 5 --model "$m.tflite" --labels imagenet_labels.txt ref-images
    run "raw_$m.json" python arm64_outputs.py dump --model "$m.tflite" --labels imagenet_labels.txt ref-images
done
if [ -f use_bundled ]; then
    run predict_skinedge.jsonl skinedge predict --json --top-k 6 photos
    run raw_skinedge.json python arm64_outputs.py dump photos
elif [ -f skinedge.tflite ]; then
    run predict_skinedge.jsonl skinedge predict --json --top-k 6 --model skinedge.tflite photos
    run raw_skinedge.json python arm64_outputs.py dump --model skinedge.tflite photos
fi
EOF
log "installing and predicting inside the arm64 root (emulated: slow)"
chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 /bin/sh /tmp/skinedge-check/run.sh

# 7. The same on this x86 host, then compare.
HOST_OUT="$CACHE/host-out-$SUITE"
rm -rf "$HOST_OUT"; mkdir -p "$HOST_OUT"
SKINEDGE_BIN="$(dirname "$HOST_PYTHON")/skinedge"
[[ -x "$SKINEDGE_BIN" ]] || SKINEDGE_BIN=skinedge
(
    cd "$IN"
    for m in mobilenet_v2_1.0_224_quant tf2_mobilenet_v2_1.0_224_ptq; do
        "$SKINEDGE_BIN" predict --json --top-k 5 --model "$m.tflite" --labels imagenet_labels.txt ref-images \
            > "$HOST_OUT/predict_$m.jsonl"
        "$HOST_PYTHON" arm64_outputs.py dump --model "$m.tflite" --labels imagenet_labels.txt ref-images \
            > "$HOST_OUT/raw_$m.json"
    done
    if [[ $HAVE_MODEL == 1 ]]; then
        "$SKINEDGE_BIN" predict --json --top-k 6 --model skinedge.tflite photos > "$HOST_OUT/predict_skinedge.jsonl"
        "$HOST_PYTHON" arm64_outputs.py dump --model skinedge.tflite photos > "$HOST_OUT/raw_skinedge.json"
    fi
)
mkdir -p "$REPO/benchmarks/results"
set +e
"$HOST_PYTHON" "$REPO/benchmarks/arm64_outputs.py" compare --suite "$SUITE" --qemu "$("$QEMU" --version | head -1)" \
    --arm "$IN/out" --x86 "$HOST_OUT" --out "$ROOT/result.json"
status=$?
set -e
cp "$ROOT/result.json" "$REPO/benchmarks/results/arm64_$SUITE.json"
log "result: $REPO/benchmarks/results/arm64_$SUITE.json (exit $status)"
exit $status
