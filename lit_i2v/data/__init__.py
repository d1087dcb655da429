"""Video data: decoding, frame sampling, uint8 transforms, annotation formats, datasets, DataModules, synthetic data.

Imports no model code: sizes are given as values, and normalisation happens on the model's device.
"""

from lit_i2v.data.datamodule import VideoDataModule
from lit_i2v.data.formats.annotations import Annotations, Labels, VideoRecord, read_annotations, read_class_names
from lit_i2v.data.formats.captions import Captions, read_captions
from lit_i2v.data.formats.qa import Questions, read_qa
from lit_i2v.data.grounding import GroundingDataModule, read_moments
from lit_i2v.data.loading.dataset import UnpaddedDistributedSampler, VideoClipDataset
from lit_i2v.data.synthetic import Synthetic, SyntheticMoments
from lit_i2v.data.video.decode import DecodeError, open_video
from lit_i2v.data.video.sampling import DenseSampler, FrameSampler, UniformSampler
from lit_i2v.data.video.transforms import EvalTransform, TrainTransform

__all__ = [
    "Annotations",
    "Captions",
    "DecodeError",
    "DenseSampler",
    "EvalTransform",
    "GroundingDataModule",
    "Labels",
    "Questions",
    "FrameSampler",
    "Synthetic",
    "SyntheticMoments",
    "TrainTransform",
    "UniformSampler",
    "UnpaddedDistributedSampler",
    "VideoClipDataset",
    "VideoDataModule",
    "VideoRecord",
    "open_video",
    "read_annotations",
    "read_captions",
    "read_moments",
    "read_qa",
    "read_class_names",
]
