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

import numpy as np

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


class CiderD:
    """CIDEr-D (Vedantam et al., CVPR 2015) as pycocoevalcap's ``CiderScorer`` computes it, with the document
    frequencies of a fixed corpus rather than of the scored set: the reward of self-critical training (Rennie et al.
    2017), whose reference code (ruotianluo/self-critical.pytorch) takes them from the training references once.

    Per n = 1..4: TF-IDF vectors (term count x (log corpus size - log max(1, document frequency))), the candidate's
    clipped at each reference's (``min(c, r) * r``), cosine-normalised, times ``exp(-delta^2 / 72)`` where delta is
    the difference in length, averaged over n and over the references, times 10. As in that code, a caption's
    "length" is its bigram count (``if n == 1`` on the zero-based n-gram order), which equals the word count minus
    one and so leaves delta unchanged for any caption of at least one word.

    Args:
        corpus: each document's references (token strings, words split by spaces: tokenise them first).
    """

    def __init__(self, corpus: list[list[str]], n: int = 4, sigma: float = 6.0) -> None:
        from collections import Counter

        if not corpus:
            raise ValueError("CIDEr-D needs a corpus of references for its document frequencies")
        self.n, self.sigma = n, sigma
        self.frequency: Counter = Counter()
        for refs in corpus:
            self.frequency.update({g for ref in refs for g in self._ngrams(ref)})
        self.log_size = float(np.log(len(corpus)))

    def _ngrams(self, text: str) -> dict[tuple[str, ...], int]:
        from collections import Counter

        words = text.split()
        return Counter(tuple(words[i : i + k]) for k in range(1, self.n + 1) for i in range(len(words) - k + 1))

    def _vector(self, text: str) -> tuple[list[dict], np.ndarray, int]:
        vec: list[dict] = [{} for _ in range(self.n)]
        norm = np.zeros(self.n)
        length = 0
        for gram, count in self._ngrams(text).items():
            k = len(gram) - 1
            vec[k][gram] = weight = count * (self.log_size - np.log(max(1.0, self.frequency[gram])))
            norm[k] += weight * weight
            length += count if k == 1 else 0
        return vec, np.sqrt(norm), length

    def score(self, candidate: str, references: list[str]) -> float:
        """One candidate against its references (token strings)."""
        return self.scores([candidate], references)[0]

    def scores(self, candidates: list[str], references: list[str]) -> list[float]:
        """Candidates of one video (samples of a captioner) against its references, whose vectors are built once."""
        refs = [self._vector(ref) for ref in references]
        out = []
        for candidate in candidates:
            vec, norm, length = self._vector(candidate)
            total = np.zeros(self.n)
            for ref_vec, ref_norm, ref_length in refs:
                for k in range(self.n):
                    val = sum(min(w, ref_vec[k].get(g, 0.0)) * ref_vec[k].get(g, 0.0) for g, w in vec[k].items())
                    if norm[k] != 0 and ref_norm[k] != 0:
                        val /= norm[k] * ref_norm[k]
                    total[k] += val * np.exp(-((length - ref_length) ** 2) / (2 * self.sigma**2))
            out.append(float(10.0 * total.mean() / len(references)))
        return out
