# auwild on a CUDA GPU node: batch feature extraction and head training.
#
# Build:  docker build -t auwild .
# Run:    docker run --gpus all --rm -v /data:/data -v $HOME/models:/models auwild \
#           auwild-extract run --manifest /data/manifest.parquet --store /data/features.zarr \
#             --visual dinov2=/models/dinov2-base --audio wavlm=/models/wavlm-base-plus,logmel \
#             --landmarks fan --device cuda
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    DEBIAN_FRONTEND=noninteractive

RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/auwild
COPY pyproject.toml README.md ./
COPY data_manifest ./data_manifest
COPY extract ./extract
COPY train ./train

# The base image's CUDA torch satisfies pyproject's range; the `cuda` extra builds mamba-ssm's kernel.
RUN pip install -e ".[s3,mediapipe]" \
    && pip install --no-build-isolation -e ".[cuda]" \
    && pip uninstall -y opencv-python opencv-contrib-python \
    && pip install --force-reinstall --no-deps "opencv-python-headless>=4.8,<5"

ENTRYPOINT []
CMD ["auwild-extract", "--help"]
