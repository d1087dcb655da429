"""Frame-token aggregators: every exported one keeps its token count; hand-checked values; transformers' pooling."""

from __future__ import annotations

import pytest
import torch

import lit_i2v.heads.frame_tokens as package
from lit_i2v.heads.frame_tokens import (
    FrameTokens,
    ImageGrid,
    NextVideoPool,
    OneVisionPool,
    PLLaVAPool,
    SlowFastPool,
    TokenAggregator,
    VideoChatGPTPool,
)

EXPORTED = {n: getattr(package, n) for n in package.__all__ if getattr(package, n) is not TokenAggregator}
SMALL = {"PLLaVAPool": lambda: PLLaVAPool(shape=(4, 2, 2)), "SlowFastPool": lambda: SlowFastPool(slow_frames=2)}


@pytest.mark.parametrize("name", sorted(EXPORTED))
@pytest.mark.parametrize(("frames", "grid"), [(6, 4), (8, 6)])
def test_every_aggregator_gives_the_tokens_it_declares(name, frames, grid):
    aggregator = SMALL.get(name, EXPORTED[name])()
    video = torch.randn(2, frames, 3, 32, 32)
    arranged = aggregator.arrange(video)
    tokens = torch.randn(2, arranged.shape[1], grid * grid, 8)
    out = aggregator(tokens)
    newline = int(aggregator.appends_newline)  # the task appends the model's newline after these
    assert out.shape == (2, aggregator.num_tokens(frames, grid) - newline, 8)


def test_video_chatgpt_means_over_patches_then_over_frames():
    tokens = torch.arange(6.0).view(1, 2, 3, 1)  # frame 0: 0 1 2, frame 1: 3 4 5
    out = VideoChatGPTPool()(tokens)[0, :, 0]
    assert out.tolist() == [1.0, 4.0, 1.5, 2.5, 3.5]  # per-frame means, then per-position means
    padded = VideoChatGPTPool(pad_to=4)(tokens)[0, :, 0]
    assert padded.tolist() == [1.0, 4.0, 0.0, 0.0, 1.5, 2.5, 3.5]


def test_slowfast_follows_the_papers_layout():
    pool = SlowFastPool()
    assert pool.slow_indices(50) == list(range(0, 50, 5))
    assert pool.num_tokens(50, 24) == 3680  # 10 x 288 + 50 x 16, the paper's count
    tokens = torch.randn(1, 50, 576, 4)
    out = pool(tokens)
    slow = tokens[0, 5].view(288, 2, 4).amax(1)  # frame 5's horizontal pairs, max-pooled
    assert torch.equal(out[0, 288:576], slow)
    fast = tokens[0, 49].view(4, 6, 4, 6, 4).mean((1, 3)).reshape(16, 4)  # the last frame, 24x24 → 4x4
    assert torch.allclose(out[0, -16:], fast, atol=1e-6)
    with pytest.raises(ValueError, match="slow_frames=10 but the clip has 8 frames"):
        pool(torch.randn(1, 8, 16, 4))


def test_pllava_pools_space_and_keeps_time():
    tokens = torch.randn(1, 16, 576, 4)
    out = PLLaVAPool()(tokens)
    assert out.shape == (1, 16 * 144, 4)
    first = tokens[0, 0].view(12, 2, 12, 2, 4).mean((1, 3)).reshape(144, 4)
    assert torch.allclose(out[0, :144], first, atol=1e-6)


def test_image_grid_tiles_frames_into_one_image():
    video = torch.zeros(1, 6, 3, 6, 6)
    for i in range(6):
        video[:, i] = i
    image = ImageGrid(rows=2, cols=3).arrange(video)
    assert image.shape == (1, 1, 3, 6, 6)
    assert image[0, 0, 0, 0, 0] == 0 and image[0, 0, 0, -1, -1] == 5  # frame 0 top left, frame 5 bottom right
    with pytest.raises(ValueError, match="needs 6 frames, the clip has 4"):
        ImageGrid().arrange(torch.zeros(1, 4, 3, 6, 6))


def test_frame_tokens_keep_every_token_in_order():
    tokens = torch.randn(2, 3, 4, 5)
    assert torch.equal(FrameTokens()(tokens)[:, 4:8], tokens[:, 1])


def test_next_video_pooling_and_projection_equal_transformers(tmp_path):
    """On a llava_next_video folder transformers writes: its video features (2x2 average pooling, then the
    projector) equal lit_i2v's tower, ``NextVideoPool`` and the checkpoint's projector."""
    pytest.importorskip("transformers")
    from lit_i2v.backbones.llava import LLaVA

    from .test_llava import write_llava

    folder = write_llava(tmp_path / "tiny-next-video", model_type="llava_next_video")
    import transformers

    theirs = transformers.AutoModelForImageTextToText.from_pretrained(folder).eval()
    ours = LLaVA(str(folder)).eval()
    torch.manual_seed(0)
    video = torch.randn(2, 3, 3, 32, 32)  # (B, T, 3, H, W)
    with torch.no_grad():
        expected = theirs.model.get_video_features(pixel_values_videos=video).pooler_output  # (B, T*4, E)
        tokens = ours.visual.forward_features(video.flatten(0, 1))[:, 1:].unflatten(0, (2, 3))  # (B, T, 16, D)
        mine = ours.project(NextVideoPool()(tokens))
    assert mine.shape == expected.shape == (2, 3 * 4, 48)
    assert torch.allclose(mine, expected, atol=1e-5)


def test_onevision_video_tokens_and_logits_equal_transformers(tmp_path):
    """A llava_onevision folder (SigLIP tower without its head, Qwen2 LLM) that transformers writes: lit_i2v's SigLIP
    tower, the projector, ``OneVisionPool`` and the newline the task appends equal ``get_video_features``; the LLM's
    logits on a prompt holding them equal the model's own on its video placeholders."""
    pytest.importorskip("transformers")
    import transformers

    from lit_i2v.backbones.llava import LLaVA
    from lit_i2v.strategies import MultimodalLLM
    from lit_i2v.tasks import GenerativeVideoQA

    from .test_llava import write_llava

    folder = write_llava(tmp_path / "tiny-onevision", model_type="llava_onevision")
    theirs = transformers.AutoModelForImageTextToText.from_pretrained(folder).eval()
    ours = LLaVA(str(folder)).eval()
    assert ours.visual.num_prefix_tokens == 0 and len(ours.visual.blocks) == 3  # feature layer -1: every block
    assert sum(p.numel() for p in ours.parameters()) + ours.dropped_params == sum(
        p.numel() for p in theirs.parameters()
    )
    task = GenerativeVideoQA(ours, MultimodalLLM(), frame_tokens=OneVisionPool(), template="{video} {question}").eval()
    torch.manual_seed(0)
    video = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        expected = theirs.model.get_video_features(pixel_values_videos=video).pooler_output  # (B, T*4 + 1, E)
        mine = task.visual_tokens(video)
        assert mine.shape == expected.shape == (2, 3 * 4 + 1, 48)
        assert torch.allclose(mine, expected, atol=1e-5)
        tok = ours.tokenizer
        words = ["<s>", "what", "is", "the", "circle", "doing", "?"]
        ids = torch.tensor([tok.convert_tokens_to_ids(words[:1] + ["<video>"] * 13 + words[1:])] * 2)
        logits = theirs(input_ids=ids, pixel_values_videos=video).logits
        placeholders = torch.where(ids == tok.convert_tokens_to_ids("<video>"), ours.image_token_id, ids)
        assert torch.allclose(ours(ours.splice(placeholders, mine)), logits, atol=1e-4)
