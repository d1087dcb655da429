"""A synthetic, Something-Something-like motion dataset written in SSv2's own formats.

Each video shows one coloured shape (sometimes beside a static distractor) that moves left↔right, up↔down, grows
(approaching) or shrinks (receding), or fades in or out. The class is the direction of change over time, so a single
frame cannot tell it: a frame-averaging model sits near chance, while a model that relates frames can solve it, as
on SSv2. Videos are real H.264 mp4 files (PyAV/libx264); annotations are SSv2 JSON (``train.json``,
``validation.json``, ``test.json``) with ``labels.json``, so the real SSv2 loaders and decoders are what runs.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# (template, what changes, direction): the change is linear in time between a random start and end.
CLASSES: list[tuple[str, str, int]] = [
    ("Moving [something] from left to right", "x", +1),
    ("Moving [something] from right to left", "x", -1),
    ("Moving [something] up", "y", -1),
    ("Moving [something] down", "y", +1),
    ("Approaching [something] with your camera", "size", +1),
    ("Moving away from [something] with your camera", "size", -1),
    ("Making [something] appear", "alpha", +1),
    ("Making [something] disappear", "alpha", -1),
]
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 215, 40),
    "magenta": (210, 50, 200),
    "cyan": (40, 210, 220),
    "white": (235, 235, 235),
    "orange": (240, 140, 30),
}
SHAPES = ("circle", "square", "triangle", "diamond")


def templates() -> list[str]:
    return [t for t, _, _ in CLASSES]


# The words that name each class's motion in a caption of either style ("moving red circle from left to right", "a red
# circle: moving something from left to right"), in CLASSES order: how a generated caption's motion is read.
MOTION_PATTERNS = [r"\bfrom left to right\b", r"\bfrom right to left\b", r"\bup\b", r"\bdown\b", r"\bapproaching\b",
                   r"\bmoving away\b", r"\bappear\b", r"\bdisappear\b"]  # fmt: skip


def caption_motion(text: str) -> int | None:
    """The class whose motion a caption names (index into ``CLASSES``), or None if it names none or several."""
    import re

    found = [i for i, pattern in enumerate(MOTION_PATTERNS) if re.search(pattern, text.lower())]
    return found[0] if len(found) == 1 else None


def label_key(template: str) -> str:
    """SSv2's labels JSON keys are the templates without brackets."""
    return template.replace("[", "").replace("]", "")


@dataclass
class SynthSpec:
    """Args: size (frame side, px), frames per video, fps, and the share of videos with a static distractor."""

    size: int = 64
    frames: int = 24
    fps: int = 12
    distractor: float = 0.5


def shape_mask(shape: str, cx: float, cy: float, r: float, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Boolean ``(S, S)`` mask of a shape centred at (cx, cy) with radius r, in units of the image side."""
    yy, xx = grid
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r * 1.1
    return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)  # triangle, apex up


def render(label: int, rng: random.Random, spec: SynthSpec) -> tuple[np.ndarray, str]:
    """Frames ``(T, S, S, 3)`` uint8 of one video of class ``label``, and the name of its object."""
    _, attr, sign = CLASSES[label]
    s = spec.size
    grid = np.mgrid[0:s, 0:s].astype(np.float32) / s
    colour_name, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    colour = np.array(COLOURS[colour_name], np.float32)
    background = np.array([rng.randint(10, 90) for _ in range(3)], np.float32)
    state = {"x": rng.uniform(0.3, 0.7), "y": rng.uniform(0.3, 0.7), "size": rng.uniform(0.1, 0.16), "alpha": 1.0}
    low, high = {"x": (0.2, 0.8), "y": (0.2, 0.8), "size": (0.05, 0.26), "alpha": (0.0, 1.0)}[attr]
    span = rng.uniform(0.6, 1.0) * (high - low)
    begin = rng.uniform(low, high - span)
    start, end = begin, begin + span  # the increasing direction; decreasing classes play it backwards below
    t0, t1 = rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)
    distractor = None
    if rng.random() < spec.distractor:
        distractor = (rng.choice(SHAPES), rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.06, 0.1))
        d_colour = np.array(COLOURS[rng.choice([c for c in COLOURS if c != colour_name])], np.float32)
    frames = np.empty((spec.frames, s, s, 3), np.uint8)
    for i in range(spec.frames):
        t = i / max(spec.frames - 1, 1)
        progress = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
        state[attr] = start + (end - start) * progress
        image = np.broadcast_to(background, (s, s, 3)).copy()
        if distractor is not None:
            image[shape_mask(distractor[0], *distractor[1:], grid)] = d_colour
        m = shape_mask(shape, state["x"], state["y"], state["size"], grid)
        image[m] = image[m] * (1 - state["alpha"]) + colour * state["alpha"]
        frames[i] = image.clip(0, 255).astype(np.uint8)
    if sign < 0:
        frames = frames[::-1].copy()  # twins are exact time reversals: only frame order tells them apart
    return frames, f"{colour_name} {shape}"


def write_video(path: str | Path, frames: np.ndarray, fps: int = 12, codec: str = "libx264") -> None:
    """Encode uint8 frames ``(T, H, W, 3)`` to a real video file (H.264 in mp4 by default) with PyAV."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "g": "12"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


SYNTHETIC_ROOT = "data/synthetic-motion"  # where a data module with ``synthetic`` and no ``root`` writes the set
SYNTHETIC_GROUNDING_ROOT = "data/synthetic-grounding"  # the same for a grounding data module


@dataclass
class Synthetic:
    """A data module's ``synthetic`` argument: write the synthetic motion set under its ``root`` on first use
    (``prepare_data``, rank 0; nothing once it is there) and read it with the module's own loaders.

    Args:
        num_train: training videos.
        num_val: validation videos.
        num_test: test videos.
        video_size: frame side of the videos, px (also the default crop size).
        video_frames: frames per video.
        seed: generation seed.
    """

    num_train: int = 480
    num_val: int = 160
    num_test: int = 160
    video_size: int = 64
    video_frames: int = 24
    seed: int = 0

    def write(self, root: str | Path) -> Path:
        counts = (self.num_train, self.num_val, self.num_test)
        return synthesize(root, *counts, spec=SynthSpec(size=self.video_size, frames=self.video_frames), seed=self.seed)


@dataclass
class SyntheticMoments:
    """A grounding DataModule's ``synthetic`` argument: write the synthetic grounding set (``write_grounding``: two
    objects a video, each moving in its own window; Charades-STA format) under its ``root`` on first use.

    Args:
        num_train: training videos (two queries each).
        num_val: validation videos.
        num_test: test videos.
        seed: generation seed.
    """

    num_train: int = 240
    num_val: int = 80
    num_test: int = 80
    seed: int = 0

    def write(self, root: str | Path) -> Path:
        return write_grounding(root, (self.num_train, self.num_val, self.num_test), seed=self.seed)


def synthesize(
    root: str | Path,
    num_train: int = 480,
    num_val: int = 160,
    num_test: int = 160,
    spec: SynthSpec | None = None,
    seed: int = 0,
) -> Path:
    """Write the dataset under ``root`` (``videos/<id>.mp4``, SSv2 JSON files) and return ``root``.

    Classes are balanced in every split. Writing is idempotent: a finished dataset (``labels.json`` present, written
    last) is left as it is.
    """
    root = Path(root)
    spec = spec or SynthSpec()
    if (root / "labels.json").is_file():
        return root
    rng = random.Random(seed)
    next_id = 1
    for split, count in (("train", num_train), ("validation", num_val), ("test", num_test)):
        items = []
        for k in range(count):
            label = k % len(CLASSES)
            frames, thing = render(label, rng, spec)
            write_video(root / "videos" / f"{next_id}.mp4", frames, spec.fps)
            template = CLASSES[label][0]
            items.append(
                {
                    "id": str(next_id),
                    "label": template.replace("[something]", thing).replace("[Something]", thing).lower(),
                    "template": template,
                    "placeholders": [thing],
                }
            )
            next_id += 1
        rng.shuffle(items)
        (root / f"{split}.json").write_text(json.dumps(items, indent=1))
        log.info("wrote %d %s videos under %s", count, split, root)
    labels = {label_key(t): str(i) for i, t in enumerate(templates())}
    (root / "labels.json").write_text(json.dumps(labels, indent=1))
    return root


def write_captions(root: str | Path) -> Path:
    """Captions for the synthetic motion set, for retrieval: ``captions_<split>.json`` beside the SSv2 files.

    Each video gets two captions derived from what it shows: its SSv2 label ("moving red circle from left to
    right") and a rephrasing ("a red circle: moving something from left to right"). The object's colour and shape
    can be read from one frame, the motion only from several. Idempotent.
    """
    root = Path(root)
    for split in ("train", "validation", "test"):
        out = root / f"captions_{split}.json"
        if out.is_file():
            continue
        items = json.loads((root / f"{split}.json").read_text())
        captions = [
            {
                "video_id": item["id"],
                "path": f"{item['id']}.mp4",
                "captions": [item["label"], f"a {item['placeholders'][0]}: {label_key(item['template']).lower()}"],
            }
            for item in items
        ]
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(captions, indent=1))
        tmp.replace(out)
    return root


MOTION_ANSWERS = [
    "left to right", "right to left", "up", "down", "approaching", "moving away", "appearing", "disappearing",
]  # fmt: skip  # one short answer per class of CLASSES, in order


def write_qa(root: str | Path, seed: int = 0) -> Path:
    """Questions for the synthetic motion set, for video QA, beside the SSv2 files (idempotent):

    - ``qa_<split>.json`` (open-ended): per video "what is the red circle doing?" (type ``motion``, answered by one
      of 8 motions: frames alone cannot tell a motion from its reverse) and "what colour is the circle?" (type
      ``colour``: one frame suffices); ``answers.json`` is the vocabulary (8 motions, 8 colours).
    - ``mc_<split>.json`` (multiple choice): "what happens?" with 5 candidate captions of the video's object, the
      true motion and 4 others, the time-reversed twin always among them.
    """
    root = Path(root)
    rng = random.Random(seed)
    class_of = {t: i for i, (t, _, _) in enumerate(CLASSES)}
    for split in ("train", "validation", "test"):
        if (root / f"mc_{split}.json").is_file():
            continue
        items = json.loads((root / f"{split}.json").read_text())
        open_qa, mc = [], []
        for item in items:
            thing = item["placeholders"][0]  # "red circle"
            colour, shape = thing.split(" ", 1)
            label = class_of[item["template"]]
            open_qa.append({"video_id": item["id"], "question": f"what is the {thing} doing?",
                            "answer": MOTION_ANSWERS[label], "type": "motion"})  # fmt: skip
            open_qa.append({"video_id": item["id"], "question": f"what colour is the {shape}?",
                            "answer": colour, "type": "colour"})  # fmt: skip
            twin = label + 1 if label % 2 == 0 else label - 1
            others = rng.sample([k for k in range(len(CLASSES)) if k not in (label, twin)], 3)
            options = [label, twin, *others]
            rng.shuffle(options)
            mc.append({"video_id": item["id"], "question": "what happens?",
                       "candidates": [f"the {thing} is {MOTION_ANSWERS[k]}" for k in options],
                       "answer": options.index(label), "type": "motion"})  # fmt: skip
        for name, rows in ((f"qa_{split}.json", open_qa), (f"mc_{split}.json", mc)):
            tmp = root / f"{name}.tmp"
            tmp.write_text(json.dumps(rows, indent=1))
            tmp.replace(root / name)
    answers = MOTION_ANSWERS + list(COLOURS)
    (root / "answers.json").write_text(json.dumps(answers, indent=1))
    return root


@dataclass
class EventSpec:
    """Synthetic grounding videos. Args: size (px), frames, fps, events per video, and each event's length range as a
    share of the video."""

    size: int = 64
    frames: int = 64
    fps: int = 8
    events: int = 2
    length: tuple[float, float] = (0.2, 0.4)


def render_events(rng: random.Random, spec: EventSpec) -> tuple[np.ndarray, list[tuple[int, float, float, str]]]:
    """A longer video in which ``spec.events`` objects (distinct colours) each make one motion of ``CLASSES`` in its
    own time window, still before and after it; windows do not overlap. Returns the frames ``(T, S, S, 3)`` and per
    event ``(class, start_s, end_s, sentence)`` with the sentence naming the object, e.g. "moving red circle from
    left to right": which object moves when is told only by reading the sentence and relating frames."""
    s, n = spec.size, spec.frames
    grid = np.mgrid[0:s, 0:s].astype(np.float32) / s
    background = np.array([rng.randint(10, 90) for _ in range(3)], np.float32)
    lengths = [rng.uniform(*spec.length) for _ in range(spec.events)]
    gaps = np.array([rng.random() for _ in range(spec.events + 1)])
    gaps = gaps / gaps.sum() * max(1.0 - sum(lengths), 0.0)  # free time spread randomly around the windows
    objects, t = [], gaps[0]
    colours = rng.sample(list(COLOURS), spec.events)
    quadrants = rng.sample([(0.3, 0.3), (0.7, 0.3), (0.3, 0.7), (0.7, 0.7)], spec.events)
    for k in range(spec.events):
        label = rng.randrange(len(CLASSES))
        _, attr, sign = CLASSES[label]
        state = {"x": quadrants[k][0], "y": quadrants[k][1], "size": rng.uniform(0.08, 0.12), "alpha": 1.0}
        low, high = {"x": (0.15, 0.85), "y": (0.15, 0.85), "size": (0.05, 0.2), "alpha": (0.0, 1.0)}[attr]
        span = rng.uniform(0.6, 1.0) * (high - low)
        begin = rng.uniform(low, high - span)
        start, end = (begin, begin + span) if sign > 0 else (begin + span, begin)
        shape = rng.choice(SHAPES)
        objects.append((label, attr, start, end, t, t + lengths[k], state, colours[k], shape))
        t += lengths[k] + gaps[k + 1]
    frames = np.empty((n, s, s, 3), np.uint8)
    for i in range(n):
        now = i / max(n - 1, 1)
        image = np.broadcast_to(background, (s, s, 3)).copy()
        for _, attr, start, end, t0, t1, state, colour, shape in objects:
            progress = min(max((now - t0) / (t1 - t0), 0.0), 1.0)
            state[attr] = start + (end - start) * progress
            m = shape_mask(shape, state["x"], state["y"], state["size"], grid)
            image[m] = image[m] * (1 - state["alpha"]) + np.array(COLOURS[colour], np.float32) * state["alpha"]
        frames[i] = image.clip(0, 255).astype(np.uint8)
    duration = (n - 1) / spec.fps
    events = []
    for label, _, _, _, t0, t1, _, colour, shape in objects:
        sentence = CLASSES[label][0].replace("[something]", f"{colour} {shape}").lower()
        events.append((label, round(float(t0) * duration, 2), round(float(t1) * duration, 2), sentence))
    return frames, events


def write_grounding(
    root: str | Path, counts: tuple[int, int, int] = (240, 80, 80), spec: EventSpec | None = None, seed: int = 0
) -> Path:
    """The synthetic grounding set under ``root`` in Charades-STA's format: ``videos/<id>.mp4`` and
    ``charades_sta_{train,val,test}.txt`` with lines ``<id> <start> <end>##<sentence>`` (seconds), one per event.
    Idempotent (the test file is written last)."""
    root = Path(root)
    spec = spec or EventSpec()
    if (root / "charades_sta_test.txt").is_file():
        return root
    rng = random.Random(seed)
    next_id = 0
    for split, count in zip(("train", "val", "test"), counts, strict=True):
        lines = []
        for _ in range(count):
            vid = f"G{next_id:05d}"
            next_id += 1
            frames, events = render_events(rng, spec)
            write_video(root / "videos" / f"{vid}.mp4", frames, spec.fps)
            lines += [f"{vid} {start:.2f} {end:.2f}##{sentence}" for _, start, end, sentence in events]
        tmp = root / f".charades_sta_{split}.txt.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(root / f"charades_sta_{split}.txt")
        log.info("wrote %d %s grounding videos under %s", count, split, root)
    return root
