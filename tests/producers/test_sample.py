from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from producers.sample import ASTRONAUT_SIZE, FACE_CENTRE, SampleClip, _astronaut_bgr, main


def test_frames_are_deterministic_bgr_and_distinct() -> None:
    a, b = SampleClip(), SampleClip()
    f0 = a.frame(0)
    assert f0.shape == (480, 640, 3) and f0.dtype == np.uint8
    assert np.array_equal(f0, b.frame(0))
    assert not np.array_equal(f0, a.frame(1))
    assert np.array_equal(a.frame(5), a.frame(5 + 120))  # wraps: a looping clip repeats


def test_every_tenth_frame_has_no_face() -> None:
    clip = SampleClip(frames=60)
    no_face = [i for i in range(60) if clip.placement(i) is None]
    assert no_face == [9, 19, 29, 39, 49, 59]


@pytest.mark.parametrize("size", [(640, 480), (1280, 720)])
def test_placement_maps_astronaut_pixels_into_the_frame(size: tuple[int, int]) -> None:
    w, h = size
    clip = SampleClip(w, h, 120)
    astro = _astronaut_bgr().astype(int)
    checked = 0
    for i in (0, 13, 30, 47, 60, 88, 101):
        place = clip.placement(i)
        assert place is not None
        scale, dx, dy = place
        assert scale * ASTRONAUT_SIZE >= 0.6 * h  # large enough for a 128x128 face detector
        cx, cy = FACE_CENTRE[0] * scale + dx, FACE_CENTRE[1] * scale + dy
        assert 0.2 * w < cx < 0.8 * w and 0.2 * h < cy < 0.8 * h  # the face is in view
        frame = clip.frame(i).astype(int)
        for x, y in ((FACE_CENTRE[0], FACE_CENTRE[1]), (190, 100), (260, 160), (120, 300),
                     (400, 350), (60, 60)):
            fx, fy = round(x * scale + dx), round(y * scale + dy)
            if not (0 <= fx < w and 0 <= fy < h):
                continue
            patch = astro[y - 1 : y + 2, x - 1 : x + 2].mean(axis=(0, 1))
            assert np.abs(frame[fy, fx] - patch).mean() < 25, (i, x, y)
            checked += 1
    assert checked >= 14


def test_no_face_frame_is_background_only() -> None:
    clip = SampleClip()
    frame = clip.frame(9)
    face_colours = _astronaut_bgr()[60:180, 170:290].reshape(-1, 3).mean(axis=0)
    assert np.abs(frame.reshape(-1, 3).mean(axis=0) - face_colours).mean() > 5
    assert frame.std() > 10  # textured, not flat


def test_sample_main_writes_a_readable_mjpg_avi(tmp_path: Path) -> None:
    out = tmp_path / "clip.avi"
    assert main(["--out", str(out), "--frames", "12", "--width", "320", "--height", "240"]) == 0
    cap = cv2.VideoCapture(str(out))
    try:
        n = 0
        for _ in range(100):
            ok, frame = cap.read()
            if not ok:
                break
            assert frame.shape == (240, 320, 3)
            n += 1
        assert n == 12
        assert cap.get(cv2.CAP_PROP_FPS) == 15.0
    finally:
        cap.release()


def test_sample_main_rejects_bad_sizes(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "x.avi"), "--width", "10"]) == 2
