# auwild on a CUDA GPU node: batch feature extraction and head training.
#
# Build:  docker build -t auwild .                          (target main: encoders, FAN, Mamba scan)
#         docker build --target mediapipe -t auwild:mediapipe .   (MediaPipe FaceMesh landmarks)
# Run:    docker run --gpus all --rm --user "$(id -u):$(id -g)" \
#           -v /data:/data -v $HOME/models:/models \
#           -v auwild-hf:/cache/huggingface -v auwild-torch:/cache/torch auwild \
#           auwild-extract run --manifest /data/manifest.parquet --store /data/features.zarr \
#             --visual dinov2=/models/dinov2-base --audio wavlm=/models/wavlm-base-plus,logmel \
#             --landmarks fan --device cuda
#
# The base image's torch must satisfy the torch minimum of every transformers release that
# pyproject allows (transformers disables torch below it); tests/test_container.py checks the tag.
ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-devel

FROM ${BASE_IMAGE} AS base

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive \
    HF_HOME=/cache/huggingface \
    TORCH_HOME=/cache/torch \
    MPLCONFIGDIR=/tmp/matplotlib

# docker/constraints*.txt were resolved on Python 3.11 (transformers 5.24 needs >= 3.11, the
# MediaPipe pins have no 3.13 wheels); a base image with another Python says so here, at once.
RUN python -c "import sys; v = sys.version_info[:2]; \
assert (3, 11) <= v < (3, 13), f'docker/constraints*.txt are pinned on Python 3.11; the base image has {v}'"

# One unprivileged user (uid 1000, named auwild); the caches are volumes that any --user can
# write (sticky, like /tmp).
RUN if ! getent passwd 1000 >/dev/null; then useradd --create-home --uid 1000 --shell /bin/bash auwild; fi \
    && mkdir -p /cache/huggingface /cache/torch \
    && chmod 1777 /cache/huggingface /cache/torch

# Dependencies first, from pyproject alone (the packages are copied after them), so that editing
# the source does not rebuild mamba-ssm.
WORKDIR /opt/auwild
COPY docker/ ./docker/
COPY pyproject.toml README.md ./


# MediaPipe FaceMesh needs numpy<2 (and with it pyarrow<21, pandas<3, OpenCV<4.12): its own stage,
# never mixed into the main image.
FROM base AS mediapipe
RUN pip install -c docker/constraints-mediapipe.txt ".[s3,mediapipe]"
COPY data_manifest ./data_manifest
COPY extract ./extract
COPY train ./train
COPY auwild ./auwild
RUN pip install --no-deps -c docker/constraints-mediapipe.txt . \
    && sh docker/one_opencv.sh python \
    && python -c "import mediapipe, numpy, pyarrow.parquet, torch, transformers; \
assert hasattr(mediapipe, 'solutions'), 'this mediapipe has no FaceMesh'; \
print('mediapipe', mediapipe.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)"
VOLUME ["/cache/huggingface", "/cache/torch"]
USER 1000:1000
ENTRYPOINT []
CMD ["auwild-extract", "--help"]


# The default target. mamba-ssm's selective-scan kernel: setup.py fetches the prebuilt wheel
# published for this torch, CUDA and Python when there is one, and otherwise compiles for
# TORCH_CUDA_ARCH_LIST (A100, H100/H200, B200).
FROM base AS main
ENV TORCH_CUDA_ARCH_LIST="8.0;9.0;10.0+PTX" \
    MAX_JOBS=4
RUN pip install -c docker/constraints.txt setuptools wheel ninja packaging einops \
    && pip install --no-build-isolation -c docker/constraints.txt ".[s3,cuda]"
COPY data_manifest ./data_manifest
COPY extract ./extract
COPY train ./train
COPY auwild ./auwild
RUN pip install --no-deps --no-build-isolation -c docker/constraints.txt . \
    && sh docker/one_opencv.sh python \
    && python -c "import torch, transformers, transformers.utils.import_utils as iu, mamba_ssm, cv2; \
assert iu.is_torch_available(), f'transformers {transformers.__version__} disables torch {torch.__version__}'; \
from mamba_ssm.ops.selective_scan_interface import selective_scan_fn; \
print('torch', torch.__version__, 'mamba_ssm', mamba_ssm.__version__, 'cv2', cv2.__version__)"
VOLUME ["/cache/huggingface", "/cache/torch"]
USER 1000:1000
ENTRYPOINT []
CMD ["auwild-extract", "--help"]
