"""Tar shards of a split, written once by ``python -m lit_i2v shard`` and streamed by every rank and worker.

Decoding the original videos gives a few clips/s per CPU core, while one GPU consumes hundreds: a cluster run reads
shards of **pre-decoded, resized JPEG frames** instead (``mode="frames"``; decoding 8 JPEGs costs a few ms), or of
the video files themselves (``mode="video"``, after ``preprocess`` for cheap seeking) where disk is short.

Layout of a shard folder::

    index.json              format, mode, class names, and per split: its shards, sample counts, failed videos
    train-000000.tar        per sample: <key>.json, then <key>.0000.jpg, <key>.0001.jpg, ... (or <key>.mp4)
    train-000000.idx.json   per sample: its metadata and the byte range of each member's data in the tar

The tars are plain POSIX tars in WebDataset's naming (members grouped by key), so ``tar``, ``webdataset`` and
object stores read them as they are. The byte ranges let a reader seek to exactly the frames a clip needs and let
ranks and workers split a split at sample granularity without reading anything twice. Tar rather than litdata:
no dependency, a format every tool lists and repairs, and append-only writing that a job can resume shard by shard.

Frames mode stores ``frames`` frames per video (0: all), uniformly over the video, at ``short_side`` px; the sampler
still sees the source's frame count, and each wanted frame maps to the nearest stored one, so uniform (SSv2) and
dense (Kinetics) samplers run unchanged (exactly, when all frames are stored).

Epoch plan (the same on every rank; :meth:`ShardedClips.plan`): shards are shuffled with (seed, epoch) in training,
their samples concatenated into one sequence of N, and rank r of W takes a contiguous range: ceil(N/W) samples in
training, wrapping around to the start like ``DistributedSampler``'s padding (so ranks step equally; nothing is
duplicated when W divides N), and N/W without padding in evaluation (every sample exactly once over the ranks).
A rank's range is cut into batch-sized chunks shared out contiguously among its DataLoader workers, so every worker
yields whole batches and the epoch has a known length. In training a shuffle buffer per worker mixes the stream.
"""

from lit_i2v.data.shards.index import FORMAT, VERSION, ShardError, read_index
from lit_i2v.data.shards.read import ShardedClips
from lit_i2v.data.shards.write import ShardSpec, stored_frames, write_shards

__all__ = [
    "FORMAT",
    "VERSION",
    "ShardError",
    "ShardSpec",
    "ShardedClips",
    "read_index",
    "stored_frames",
    "write_shards",
]
