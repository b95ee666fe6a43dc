"""MediaPipe's anchor-SSD models as instances of the one family in anchor_ssd.py.

BlazeFace short range (128x128, 896 anchors) and full range (192x192, 2304 anchors) mirror
face_detection_{short,full}_range_common.pbtxt; the pose detector (224x224, 2254 anchors, found
through the face, 4 alignment keypoints) mirrors the PoseDetectionCpu and PoseDetectionToRoi
subgraphs that mediapipe 0.10.14 compiles in (docs/models.md quotes their options). The pose
detector is BlazePose's, itself built on BlazeFace: same heads, same decoding, other options.
"""

from __future__ import annotations

from processors.adapters.anchor_ssd import AlignmentRect, AnchorSsdAdapter, AnchorSsdSpec
from processors.adapters.boxes import F32
from processors.models import BlazeFaceConfig

# SsdAnchorsCalculator + TensorsToDetectionsCalculator options of each graph.
VARIANTS = {
    "short": AnchorSsdSpec((128, 128), (8, 16, 16, 16), 1.0, num_keypoints=6),
    "full": AnchorSsdSpec((192, 192), (4,), 0.0, num_keypoints=6),
    # Pose: 5 layers, strides 8/16/32/32/32, aspect ratio 1 plus the interpolated one. The box is
    # PoseDetectionToRoi's: centre keypoint 0 (mid-hip), size and rotation from keypoint 1, 90°,
    # then scaled 1.25 and squared on the long side.
    "pose": AnchorSsdSpec(
        (224, 224),
        (8, 16, 32, 32, 32),
        1.0,
        num_keypoints=4,
        box=AlignmentRect(start=0, end=1, target_angle=90.0, scale=1.25),
    ),
}


def blazeface_anchors(variant: str) -> F32:
    return VARIANTS[variant].anchors()


class BlazeFaceAdapter(AnchorSsdAdapter):
    """The `blazeface` family: the entry's `variant` picks MediaPipe's options."""

    family = "blazeface"

    def __init__(self, config: BlazeFaceConfig) -> None:
        super().__init__(config, VARIANTS[config.variant])
