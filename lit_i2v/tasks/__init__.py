"""One LightningModule per task, on a shared base (backbone + strategy, optimizer groups, schedule)."""

from lit_i2v.tasks.args import Optimization, Runtime
from lit_i2v.tasks.base import VideoTask
from lit_i2v.tasks.captioning import SelfCritical, VideoCaptioning
from lit_i2v.tasks.checkpoint_io import AtomicCheckpointIO
from lit_i2v.tasks.distillation import Distillation
from lit_i2v.tasks.grounding import TemporalGrounding
from lit_i2v.tasks.qa import VideoQuestionAnswering
from lit_i2v.tasks.recognition import ActionRecognition
from lit_i2v.tasks.retrieval import TextVideoRetrieval
from lit_i2v.tasks.video_chat import GenerativeCaptioning, GenerativeVideoQA

__all__ = [
    "ActionRecognition",
    "AtomicCheckpointIO",
    "Distillation",
    "GenerativeCaptioning",
    "GenerativeVideoQA",
    "Optimization",
    "Runtime",
    "SelfCritical",
    "TemporalGrounding",
    "TextVideoRetrieval",
    "VideoCaptioning",
    "VideoQuestionAnswering",
    "VideoTask",
]
