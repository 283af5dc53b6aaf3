"""Clips in, frames out, one at a time: video files through PyAV, or a folder of frames.

Frames are streamed (one decoded frame in memory, whatever the clip's length), so memory stays
flat from a 100-frame to a 100,000-frame clip. A problem with a clip (unreadable, no video
stream, damaged part-way, no frames, frames of different sizes, a start past its end) is an
:class:`~personaseg.errors.InputError` naming the clip.

    >>> clip = open_clip("walk.mp4")                     # or a folder of frames, sorted by name
    >>> clip.fps, clip.size
    >>> for frame in clip.frames(start=2.0, end=5.0, every=2):
    ...     frame.index, frame.time, frame.image          # position in the clip, seconds, PIL RGB
    >>> with OverlayWriter("walk.overlay.mp4", fps=clip.fps) as out:
    ...     out.write(image)                              # written beside, renamed into place on success

Video files need the ``video`` extra (``pip install 'personaseg[video]'``: PyAV, a wheel that
brings its own FFmpeg).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import InputError, MissingExtraError
from .images import IMAGE_SUFFIXES, load_image

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".gif", ".avi", ".m4v")  # what `track` looks for in a folder
FOLDER_FPS = 25.0  # frame rate of a folder of frames unless given


@dataclass
class Frame:
    """One decoded frame of a clip."""

    index: int  # position in the clip, 0 = its first frame
    time: float  # seconds from the clip's first frame
    image: Image.Image  # RGB


def _av():
    try:
        import av
    except ImportError:
        raise MissingExtraError("reading and writing video files", "video") from None
    return av


def natural_key(name: str) -> list:
    """Sort key: digit runs as numbers, so frame_9 comes before frame_10 (zero-padded names sort as usual)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class Clip:
    """A clip's frames, decoded on demand. ``frames()`` may be iterated more than once."""

    path: Path
    fps: float  # frames per second (a folder: as given, default FOLDER_FPS)

    @property
    def stem(self) -> str:
        """The name outputs are written under (file stem, or folder name)."""
        return self.path.stem if self.path.is_file() else self.path.name

    def _decode(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def frames(self, start: float | None = None, end: float | None = None, every: int = 1) -> Iterator[Frame]:
        """The frames with ``start <= time < end`` (seconds), then every ``every``-th of them.

        Raises :class:`InputError` when nothing is left: no frames at all, or ``start`` past the end.
        """
        if every < 1:
            raise InputError(f"--every {every} must be >= 1", hint="1 keeps every frame, 2 every other one")
        if start is not None and end is not None and end <= start:
            raise InputError(f"--end {end:g} s is not after --start {start:g} s", hint="give an end after the start")
        seen = kept = 0
        last = 0.0
        for frame in self._decode():
            seen, last = seen + 1, frame.time
            if start is not None and frame.time < start - 1e-6:
                continue
            if end is not None and frame.time >= end - 1e-6:
                break
            if kept % every == 0:
                yield frame
            kept += 1
        if seen == 0:
            raise InputError(f"{self.path} has no frames", hint="check the file (or folder) is a whole clip")
        if kept == 0:
            raise InputError(f"--start {start:g} s is past the end of {self.path} (its last frame is at {last:.2f} s)",
                             hint="give a smaller --start")


class FrameFolder(Clip):
    """A folder of image files, one per frame, in name order (digit runs compared as numbers)."""

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        self.fps = float(fps or FOLDER_FPS)
        self.files = sorted((p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                             and not p.name.startswith(".")), key=lambda p: natural_key(p.name))
        if not self.files:
            raise InputError(f"{self.path} has no frames (no image files in it)",
                             hint="give a video file or a folder of .png/.jpg frames")

    def __len__(self) -> int:
        return len(self.files)

    def _decode(self) -> Iterator[Frame]:
        size = None
        for i, file in enumerate(self.files):
            image = load_image(file)
            if size is None:
                size = image.size
            elif image.size != size:
                raise InputError(f"{file}: frame is {image.width}x{image.height} but {self.files[0].name} is "
                                 f"{size[0]}x{size[1]}", hint="every frame of a folder must have the same size")
            yield Frame(i, i / self.fps, image)


class VideoFile(Clip):
    """A video file decoded by PyAV (mp4, webm, mov, mkv, gif, ...), frame by frame."""

    def __init__(self, path: str | Path):
        av = _av()
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path} not found", hint="check the path")
        try:
            with av.open(str(self.path)) as container:
                streams = container.streams.video
                if not streams:
                    raise InputError(f"{self.path} has no video stream", hint="give a video file, or a folder of frames")
                stream = streams[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps = float(rate) if rate else FOLDER_FPS
                self.expected = int(stream.frames or 0)  # 0: the container does not say
                self.duration = container.duration / 1e6 if container.duration else None  # seconds, or None
                self.size = (stream.codec_context.width, stream.codec_context.height)
        except av.error.FFmpegError as err:
            raise InputError(f"{self.path} is not a readable video ({_why(err)})",
                             hint="check the file is a whole video (mp4, webm, mov, mkv, gif)") from None

    def _decode(self) -> Iterator[Frame]:
        av = _av()
        i, t0 = 0, None
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for vf in container.decode(stream):
                    t = float(vf.time) if vf.time is not None else i / self.fps
                    t0 = t if t0 is None else t0
                    yield Frame(i, t - t0, vf.to_image().convert("RGB"))
                    i += 1
        except av.error.FFmpegError as err:
            raise InputError(f"{self.path} is damaged at frame {i} ({_why(err)})",
                             hint="re-encode or re-download the video") from None
        # a cut-off file often just ends early: compare with the frame count or duration its header gives
        end = t - t0 if t0 is not None else 0.0
        cut = self.expected and i < self.expected - 1
        if not self.expected and self.duration and i:
            cut = end + 2.0 / self.fps < 0.95 * self.duration
        if cut:
            raise InputError(f"{self.path} is truncated: it ends at frame {i} ({end:.2f} s) of its header's "
                             + (f"{self.expected} frames" if self.expected else f"{self.duration:.2f} s"),
                             hint="re-encode or re-download the video")


def _why(err: Exception) -> str:
    return getattr(err, "strerror", None) or str(err).split(":")[0]


def open_clip(path: str | Path, fps: float | None = None) -> Clip:
    """A folder of frames or a video file; ``fps`` sets a folder's frame rate (files know their own)."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, fps)
    if not path.exists():
        raise InputError(f"{path} not found", hint="give a video file or a folder of frames")
    return VideoFile(path)


def collect_clips(inputs: list[str | Path]) -> list[Path]:
    """The clips named on the command line: files as given; a folder holding video files gives
    them (name order), any other folder is one clip of frames."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            videos = sorted((f for f in p.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES),
                            key=lambda f: natural_key(f.name))
            out += videos or [p]
        else:
            out.append(p)
    return out


class OverlayWriter:
    """Write RGB frames to an H.264 mp4 (MPEG-4 Part 2 where no H.264 encoder is built in).

    Frames are padded to even sizes (yuv420p needs them). The file is written beside ``path`` and
    renamed into place by :meth:`close`; :meth:`abort` (or an error inside ``with``) leaves ``path``
    as it was.
    """

    def __init__(self, path: str | Path, fps: float):
        self.av = _av()
        self.path = Path(path)
        self.fps = fps
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp.mp4")
        self._container = None
        self._stream = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        av = self.av
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.tmp), mode="w", format="mp4")
        except (OSError, av.error.FFmpegError):
            raise InputError(f"output folder {self.path.parent} is not writable", hint="choose another with --out") from None
        codec = next(c for c in ("libx264", "h264", "mpeg4") if c in av.codecs_available)
        stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height = width + width % 2, height + height % 2
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18"}
        self._stream = stream

    def write(self, image: Image.Image) -> None:
        """Append one frame (every frame the size of the first)."""
        if self._container is None:
            self._open(image.width, image.height)
        a = np.asarray(image.convert("RGB"))
        w, h = self._stream.width, self._stream.height
        if a.shape[:2] != (h, w):
            a = np.pad(a, ((0, h - a.shape[0]), (0, w - a.shape[1]), (0, 0)), mode="edge")
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush, close and rename into place (nothing is written for a clip with no frames)."""
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Drop what was written."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the file is deleted anyway
                pass
            self._container = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "OverlayWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | Path, images: list[Image.Image] | Iterator[Image.Image], fps: float) -> Path:
    """Write ``images`` as an mp4 (tests and the toy benchmark's example clips)."""
    with OverlayWriter(path, fps) as out:
        for image in images:
            out.write(image)
    return Path(path)


__all__ = ["Clip", "Frame", "FrameFolder", "OverlayWriter", "VideoFile", "collect_clips", "natural_key", "open_clip",
           "write_video"]
