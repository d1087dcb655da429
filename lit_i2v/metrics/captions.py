"""Caption metrics as the captioning papers compute them: the COCO caption evaluation code, ``pycocoevalcap``.

Chen et al., *Microsoft COCO Captions: Data Collection and Evaluation Server*, 2015; official code
github.com/tylin/coco-caption, packaged as ``pycocoevalcap`` (the ``[caption]`` extra). Captions are tokenised by its
PTB tokenizer (Stanford CoreNLP, Java), then scored by BLEU-1..4 (Papineni et al. 2002, corpus level), METEOR 1.5
(Java), ROUGE-L and CIDEr-D (its ``Cider`` class: TF-IDF n-grams with the clipping and length penalty of CIDEr-D,
IDF from the references of the evaluated set), each exactly as that code does for the same predictions.

SPICE is left out: its first use downloads Stanford models (a network), and video-captioning papers report the four
above. CIDEr-D takes its IDF from the evaluated set's references, so one video scores 0 and a few are noisy. The PTB
tokenizer writes temporary files beside pycocoevalcap's own (a read-only install cannot run it). Without Java,
``caption_metrics`` falls back to a plain tokenizer (lower case, punctuation removed) and BLEU, ROUGE-L and CIDEr-D
only, and says so in its result (``tokenizer: simple, not comparable with papers``): the PTB tokenizer splits
differently (``isn't`` → ``is n't``), which moves BLEU and CIDEr.
"""

from __future__ import annotations

import logging
import re
import shutil
import string

log = logging.getLogger(__name__)

_PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def java_available() -> bool:
    return shutil.which("java") is not None


def simple_tokenize(text: str) -> str:
    """Lower case, punctuation removed, single spaces: the fallback when the PTB tokenizer (Java) is absent."""
    return " ".join(_PUNCTUATION.sub(" ", text.lower()).split())


def caption_metrics(references: dict[str, list[str]], predictions: dict[str, str], java: bool | None = None) -> dict:
    """``{video_id: [reference captions]}`` and ``{video_id: caption}`` → ``{"bleu1".."bleu4", "meteor", "rouge_l",
    "cider", "tokenizer", "videos"}`` (scores as fractions, as pycocoevalcap gives them: CIDEr 0.613 is the papers'
    61.3). Every predicted video must have references; ``java=None`` uses Java when ``java`` is on the PATH."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as err:
        raise ImportError("caption metrics need pycocoevalcap: pip install 'lit_i2v[caption]'") from err
    missing = sorted(set(predictions) - set(references))[:4]
    if missing:
        raise ValueError(f"predictions for videos without references: {missing}")
    if not predictions:
        raise ValueError("no predictions to score")
    java = java_available() if java is None else java
    gts = {k: references[k] for k in predictions}
    if java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tokenizer = PTBTokenizer()
        gts_tok = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in gts.items()})
        res_tok = tokenizer.tokenize({k: [{"caption": v}] for k, v in predictions.items()})
    else:
        gts_tok = {k: [simple_tokenize(c) for c in v] for k, v in gts.items()}
        res_tok = {k: [simple_tokenize(v)] for k, v in predictions.items()}
    bleu, _ = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    out = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    out["rouge_l"] = float(Rouge().compute_score(gts_tok, res_tok)[0])
    out["cider"] = float(Cider().compute_score(gts_tok, res_tok)[0])
    if java:
        out["meteor"] = _meteor(gts_tok, res_tok)
        out["tokenizer"] = "ptb"
    else:
        out["tokenizer"] = "simple, not comparable with papers (no Java: no PTB tokenizer, no METEOR)"
        log.warning("caption metrics without Java: %s", out["tokenizer"])
    out["videos"] = len(predictions)
    return out


def _meteor(gts: dict, res: dict) -> float:
    """pycocoevalcap's METEOR (a Java process), stopped whatever happens: its ``compute_score`` keeps a lock when the
    process fails, and its ``__del__`` would then wait on that lock forever."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    try:
        if meteor.meteor_p.poll() is not None:
            raise RuntimeError(f"METEOR's Java process exited at start (code {meteor.meteor_p.returncode}): memory?")
        return float(meteor.compute_score(gts, res)[0])
    finally:
        if meteor.lock.locked():
            meteor.lock.release()
        with meteor.lock:
            meteor.meteor_p.kill()
            meteor.meteor_p.wait()
