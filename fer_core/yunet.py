"""YuNet's network, run by ONNX Runtime, and the decoding of its outputs into faces.

``cv2.FaceDetectorYN`` runs the same ONNX file through OpenCV's DNN module and decodes it in C++. On the
CPUs FER Studio is measured on, this is 2.3x faster, decoding included (one thread, a 640x480 photo:
7.0 ms against 15.9 ms; a half-size video frame: 1.9 against 4.3; ``scripts/bench_yunet.py``), and
detection is most of the cost of a photo or a video frame. The decoding below is OpenCV's (``objdetect/src/face_detect.cpp``): the same
anchor-free heads at strides 8, 16 and 32, the same score (the geometric mean of the class and
objectness scores), the same non-maximum suppression (``cv2.dnn.NMSBoxes`` on whole-pixel boxes); ``tests/test_detect.py``
checks that both give the same faces to a ten-thousandth of a pixel.

    network = YuNetNetwork(weights_path)
    rows = network.detect(bgr_image, score_threshold=0.6, nms_threshold=0.3)   # (N, 15) float32

Each row is laid out as ``cv2.FaceDetectorYN.detect`` returns it: x, y, width, height, then the five
landmarks (right eye, left eye, nose tip, right and left mouth corner) as x, y pairs, then the score.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from fer_core.errors import ModelLoadError

STRIDES = (8, 16, 32)  # the heads' strides; the input is padded to a multiple of the largest
ROW_SIZE = 15
TOP_K = 5000  # at most this many faces survive suppression (cv2.FaceDetectorYN's default)


class YuNetNetwork:
    """The network of one YuNet ONNX file in an ONNX Runtime session on one thread (the callers are the
    parallelism: batch workers, Live's streams). A session may be run from several threads at once."""

    def __init__(self, weights: Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise ModelLoadError("the YuNet face detector needs onnxruntime: pip install -r requirements.txt") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings about unused initialisers are noise here
        try:
            self._session = onnxruntime.InferenceSession(str(weights), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception classes for unreadable files
            raise ModelLoadError(f"ONNX Runtime could not load the face detector {weights.name}: {error}") from None
        self._input = self._session.get_inputs()[0].name
        self._outputs = [output.name for output in self._session.get_outputs()]

    def detect(
        self, bgr_image: npt.NDArray[np.uint8], *, score_threshold: float, nms_threshold: float
    ) -> npt.NDArray[np.float32]:
        """Every face in a BGR image as (N, 15) rows, in the image's pixels, best score first."""
        height, width = bgr_image.shape[:2]
        padded_height, padded_width = (-(-side // STRIDES[-1]) * STRIDES[-1] for side in (height, width))
        blob = np.zeros((1, 3, padded_height, padded_width), np.float32)  # zero padding right and below
        blob[0, :, :height, :width] = bgr_image.transpose(2, 0, 1)
        heads = dict(zip(self._outputs, self._session.run(None, {self._input: blob}), strict=True))
        rows = np.concatenate([_decode(heads, stride, padded_width // stride, score_threshold) for stride in STRIDES])
        if not len(rows):
            return rows
        boxes = rows[:, :4].astype(np.int32).tolist()  # OpenCV suppresses on whole-pixel boxes (truncated)
        keep = cv2.dnn.NMSBoxes(boxes, rows[:, 14].tolist(), score_threshold, nms_threshold, top_k=TOP_K)
        return cast("npt.NDArray[np.float32]", rows[np.asarray(keep, dtype=np.int64).reshape(-1)])


def _decode(
    heads: dict[str, npt.NDArray[np.float32]], stride: int, columns: int, score_threshold: float
) -> npt.NDArray[np.float32]:
    """The rows of one stride's head whose score reaches ``score_threshold``: each grid cell predicts a
    box centre and landmarks as offsets in cells from its corner, and the box size as a log in cells."""
    class_score = np.clip(heads[f"cls_{stride}"][0, :, 0], 0.0, 1.0)
    object_score = np.clip(heads[f"obj_{stride}"][0, :, 0], 0.0, 1.0)
    score = np.sqrt(class_score * object_score)
    cells = np.flatnonzero(score >= score_threshold)
    row, column = np.divmod(cells, columns)
    box = heads[f"bbox_{stride}"][0][cells]
    points = heads[f"kps_{stride}"][0][cells].reshape(-1, 5, 2)
    width, height = np.exp(box[:, 2]) * stride, np.exp(box[:, 3]) * stride
    centre_x, centre_y = (column + box[:, 0]) * stride, (row + box[:, 1]) * stride
    points_x, points_y = (points[:, :, 0] + column[:, None]) * stride, (points[:, :, 1] + row[:, None]) * stride
    out = np.empty((len(cells), ROW_SIZE), np.float32)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = centre_x - width / 2, centre_y - height / 2, width, height
    out[:, 4:14] = np.stack([points_x, points_y], axis=2).reshape(-1, 10)
    out[:, 14] = score[cells]
    return out
