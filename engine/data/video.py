"""Frames of a video file, decoded with PyAV (FFmpeg's libraries in a wheel), for `predict` on a video, the studio's
live preview of a video and the capture page's video that stands in for a camera.

Why PyAV and not the studio's Qt Multimedia: the command line never imports Qt, and PySide6-Essentials (the studio's
own dependency) has no multimedia module at all; PyAV decodes every format FFmpeg does, with exact timestamps. It is
an optional dependency (the `video` extra): without it a video is refused in one line that says what to install.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import BadInputError

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv",
                              ".ogv", ".3gp"})
INSTALL_HINT = "reading video files needs PyAV: pip install av (in Thaw's folder: pip install -e '.[video]')"


class VideoError(BadInputError):
    """A video file that cannot be read (or PyAV is missing)."""


@dataclass(frozen=True)
class VideoFrame:
    index: int  # the frame's position among the decoded frames, from 0
    time: float  # seconds from the start of the stream (its presentation time)
    rgb: np.ndarray  # (H, W, 3) uint8


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float  # the stream's average rate (0 when the container does not say)
    duration: float  # seconds (0 when unknown)
    frames: int  # as the container says (0 when unknown)


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _av():
    try:
        import av
    except ImportError as exc:
        raise VideoError(INSTALL_HINT) from exc
    return av


def _open(path: str | os.PathLike):
    av = _av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{path} cannot be read as a video ({_first_line(exc)})") from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video stream")
    return container


def video_info(path: str | os.PathLike) -> VideoInfo:
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps = float(stream.average_rate) if stream.average_rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        else:
            duration = float(container.duration) / 1e6 if container.duration else 0.0
        return VideoInfo(str(path), stream.codec_context.width, stream.codec_context.height, fps, duration,
                         int(stream.frames or 0))
    finally:
        container.close()


def iter_frames(path: str | os.PathLike, every: float = 0.0) -> Iterator[VideoFrame]:
    """Decode the video's frames in order; `every` > 0 keeps the first frame at or after 0, every, 2·every …
    seconds (a frame per interval, never two for one instant). A damaged stream ends with a VideoError naming the
    time it reached, after the frames decoded before it."""
    if every < 0:
        raise VideoError(f"--every must be 0 or more seconds, got {every}")
    av = _av()
    container = _open(path)
    next_time = 0.0
    index = -1
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame-parallel decoding: FFmpeg's threads, outside the GIL
        last_time = 0.0
        try:
            for frame in container.decode(stream):
                index += 1
                time = float(frame.time) if frame.time is not None else last_time
                last_time = time
                if every and time + 1e-6 < next_time:
                    continue
                if every:
                    while next_time <= time + 1e-6:
                        next_time += every
                yield VideoFrame(index, time, frame.to_ndarray(format="rgb24"))
        except av.FFmpegError as exc:
            raise VideoError(f"{path}: the video is damaged after {last_time:.2f} s ({_first_line(exc)})") from exc
    finally:
        container.close()


def write_video(path: str | os.PathLike, frames: list[np.ndarray], fps: int = 10) -> Path:
    """A small MPEG-4 file of (H, W, 3) uint8 frames (even sides): the tests' and the benchmark's camera."""
    av = _av()
    path = Path(path)
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 2_000_000
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
