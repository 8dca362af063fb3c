#!/bin/sh
# Keep exactly one OpenCV in an environment: the headless build, at the version pip resolved.
# face-alignment pulls in opencv-python and mediapipe opencv-contrib-python; each writes its own
# cv2/ package over the others, so removing them leaves cv2 half deleted until headless is
# reinstalled. Usage: one_opencv.sh [PYTHON]   (default: python)
set -eu
PY="${1:-python}"
headless=$("$PY" -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')
removed=0
for gui in opencv-python opencv-contrib-python; do
    if "$PY" -m pip show -q "$gui" >/dev/null 2>&1; then
        "$PY" -m pip uninstall -q -y "$gui"
        removed=1
    fi
done
if [ "$removed" = 1 ]; then
    "$PY" -m pip install -q --force-reinstall --no-deps "opencv-python-headless==$headless"
fi
"$PY" -c 'import cv2; print("one OpenCV:", cv2.__version__, "headless")'
