from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from producers.sample import SampleClip, write_clip
from producers.sources import default_stream_id, make_source
from producers.sources.base import Frame, Source, SourceError
from producers.sources.camera import CameraSource
from producers.sources.file import FileSource
from producers.sources.images import ImagesSource
from producers.sources.sample import SampleSource
from producers.sources.url import UrlSource, redact


def read_all(src: Source, limit: int = 1000) -> list[Frame]:
    out = []
    for _ in range(limit):
        f = src.read()
        if f is None:
            break
        out.append(f)
    return out


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "lobby.avi"
    write_clip(path, SampleClip(320, 240, 30), fps=15)
    return path


@pytest.mark.parametrize(("spec", "cls"), [
    ("sample:", SampleSource), ("sample:320x240x10", SampleSource),
    ("rtsp://cam/stream1", UrlSource), ("http://127.0.0.1:8080/video.mjpg", UrlSource),
    ("https://x/live/index.m3u8", UrlSource), ("0", CameraSource),
    ("/dev/video3", CameraSource), ("frames/*.jpg", ImagesSource), ("videos/a.mp4", FileSource),
])
def test_make_source_picks_by_spec(spec: str, cls: type) -> None:
    assert type(make_source(spec)) is cls


@pytest.mark.parametrize(("spec", "stream"), [
    ("sample:", "sample"), ("videos/lobby cam.mp4", "lobby-cam"), ("/dev/video2", "cam2"),
    ("rtsp://user:pw@door.local:554/live/main", "door-local-main"), ("shots/*.png", "shots"),
])
def test_default_stream_id(spec: str, stream: str) -> None:
    assert default_stream_id(spec) == stream


def test_redact_hides_credentials() -> None:
    assert redact("rtsp://admin:pw@10.0.0.5:554/s") == "rtsp://***@10.0.0.5:554/s"
    assert redact("http://cam/x") == "http://cam/x"


def test_sample_source_ends_after_its_frames() -> None:
    src = make_source("sample:128x96x7")
    src.open()
    frames = read_all(src)
    assert len(frames) == 7 and frames[0].shape == (96, 128, 3)
    assert src.native_fps == 15.0 and not src.live


def test_sample_sources_of_one_geometry_render_each_frame_once_and_share_it_read_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from producers.sources import sample

    reference = SampleClip(96, 64, 40).frame(0)
    rendered: list[int] = []
    real = SampleClip.frame

    def counted(self: SampleClip, i: int) -> Frame:
        rendered.append(i)
        return real(self, i)

    monkeypatch.setattr(SampleClip, "frame", counted)
    sample.shared_frames.cache_clear()  # what earlier tests' sources left
    a, b = SampleSource("sample:96x64x40"), SampleSource("sample:96x64x40")
    other = SampleSource("sample:128x64x40")
    for s in (a, b, other):
        s.open()
    fa, fb, fo = a.read(), b.read(), other.read()
    assert fa is not None and fb is not None and fo is not None
    assert fa is fb and fo.shape == (64, 128, 3)
    assert rendered == [0, 0]  # once for 96x64, once for 128x64
    assert (fa == reference).all()
    with pytest.raises(ValueError, match="read-only"):
        fa[0, 0, 0] = 1
    # A source far behind the others re-renders what fell out of the shared window, same pixels.
    for _ in range(sample.KEPT_FRAMES + 5):
        a.read()
    late = SampleSource("sample:96x64x40")
    late.open()
    again = late.read()
    assert again is not None and again is not fa and (again == fa).all()
    assert rendered.count(0) == 3


def test_file_source_reads_all_frames_at_native_fps(clip_path: Path) -> None:
    src = make_source(str(clip_path))
    src.open()
    try:
        frames = read_all(src)
    finally:
        src.close()
    assert len(frames) == 30 and frames[0].shape == (240, 320, 3)
    assert src.native_fps == 15.0


def test_file_source_start_and_duration(clip_path: Path) -> None:
    src = FileSource(str(clip_path), start=1.0, duration=0.6)  # frames 15..23
    src.open()
    try:
        frames = read_all(src)
    finally:
        src.close()
    assert len(frames) == 9
    ref = SampleClip(320, 240, 30).frame(15).astype(int)
    assert abs(frames[0].astype(int) - ref).mean() < 8


def test_not_a_video_is_a_permanent_error_naming_the_fix(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 100)
    with pytest.raises(SourceError) as e:
        make_source(str(bad)).open()
    assert e.value.permanent
    assert "notes.mp4 is not a video" in str(e.value) and "convert it" in str(e.value)


def test_missing_file_and_missing_camera_are_permanent_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist: check the --source path") as e:
        make_source(str(tmp_path / "nope.mp4")).open()
    assert e.value.permanent
    with pytest.raises(SourceError, match=r"/dev/video97 does not exist.*ls /dev/video") as e:
        make_source("/dev/video97").open()
    assert e.value.permanent


def test_url_that_never_answers_is_a_retryable_error() -> None:
    from tests.helpers import free_port

    src = UrlSource(f"http://127.0.0.1:{free_port()}/cam.mjpg", 1.0, 1.0)
    with pytest.raises(SourceError, match="did not answer") as e:
        src.open()
    assert not e.value.permanent and src.live


def test_images_folder_and_glob_in_name_order(tmp_path: Path) -> None:
    clip = SampleClip(96, 64, 5)
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), clip.frame(i))
    (tmp_path / "readme.txt").write_text("not an image")
    for spec in (str(tmp_path), str(tmp_path / "f*.png")):
        src = make_source(spec)
        src.open()
        frames = read_all(src)
        assert len(frames) == 5
        assert all((f == clip.frame(i)).all() for i, f in enumerate(frames))
    with pytest.raises(SourceError, match="no images match") as e:
        make_source(str(tmp_path / "*.jpg")).open()
    assert e.value.permanent


def test_hls_playlist_over_http_reads_every_frame(tmp_path: Path) -> None:
    # An HLS VOD (MPEG-2 video in MPEG-TS segments, written by OpenCV's FFmpeg) served on
    # 127.0.0.1: the same code path as a live .m3u8, minus the playlist refresh.
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    clip = SampleClip(320, 240, 45)
    writer = cv2.VideoWriter(str(tmp_path / "live.m3u8"), cv2.CAP_FFMPEG,
                             cv2.VideoWriter.fourcc(*"MPEG"), 15, (320, 240))
    assert writer.isOpened()
    for i in range(clip.frames):
        writer.write(clip.frame(i))
    writer.release()
    assert sorted(p.suffix for p in tmp_path.iterdir()).count(".ts") >= 2
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        src = make_source(f"http://127.0.0.1:{server.server_address[1]}/live.m3u8")
        assert isinstance(src, UrlSource) and src.live
        src.open()
        try:
            frames = read_all(src)
        finally:
            src.close()
    finally:
        server.shutdown()
        server.server_close()
    assert len(frames) == 45 and src.native_fps == 15.0
    diffs = [abs(f.astype(int) - clip.frame(i).astype(int)).mean() for i, f in enumerate(frames)]
    assert max(diffs) < 8, diffs
