"""Phone HMMs of the aligner: five emitting states, diagonal Gaussian mixtures, in logs.

Every phone has one left-to-right model with five emitting states (HTK / Merlin states
``[2]``..``[6]``); state ``s`` stays with probability ``exp(log_stay[p, s])`` and moves on
otherwise. ``sil`` (Merlin's edge silence) and ``pau`` (a pause inside) share one silence
model (or its context models, `context_names`), which a decoding may skip (a pause Festival
predicted but the speaker did not make) and whose last state may loop back to its first
(long silences). Models save to ``.npz`` without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import FeatprepError
from ...io import atomic_path
from .features import DIM

N_STATES = 5
SILENCE = "sil"
#: label phones that are silence (Merlin's edge ``sil``, Festival's ``pau``)
SILENCES = ("sil", "pau")
FORMAT = "featprep-aligner-1"
#: neighbour classes of the context-dependent models, by how a neighbour colours a
#: phone's edge (Festival's radio phone set; a phone not listed is a class of its own)
_NEIGHBOUR_CLASSES = {
    "front": "iy ih eh ae ey",
    "back": "aa ah ao ax er uh uw ow aw ay oy",
    "stop": "p b t d k g",
    "fricative": "f v th dh s z sh zh hh ch jh",
    "nasal": "m n ng",
    "liquid": "l r",
    "glide": "w y",
    "silence": SILENCE,
}
_CLASS_OF = {p: c for c, phones in _NEIGHBOUR_CLASSES.items() for p in phones.split()}
_LOG_2PI = float(np.log(2 * np.pi))


class AlignerModelError(FeatprepError):
    """An aligner model file cannot be read."""


@dataclass
class AlignerModel:
    """Phone HMMs: ``phones[p]`` has states ``p * 5 .. p * 5 + 4``.

    A model named ``phone@left+right`` (`context_names`) is ``phone`` between neighbours of
    those classes; a phone whose context has no model of its own uses its monophone.

    ``means`` / ``variances``: ``(phones, 5, mixtures, 39)``; ``log_weights``:
    ``(phones, 5, mixtures)`` (unused components are -inf); ``log_stay``: ``(phones, 5)``,
    the log self-loop probability. ``skip_prob``: the chance that a silence is not there;
    ``loop_prob``: the chance that the silence model's last state goes back to its first;
    ``short_pause``: words may be followed by an optional pause (`build_graph`), one
    state tied to silence state ``pause_state`` (the one that holds most silence frames:
    with the loop, long silences stay in the first state rather than the middle one).
    """

    phones: tuple[str, ...]
    means: np.ndarray
    variances: np.ndarray
    log_weights: np.ndarray
    log_stay: np.ndarray
    skip_prob: float = 0.3
    loop_prob: float = 0.3
    short_pause: bool = False
    pause_state: int = N_STATES // 2

    @property
    def mixtures(self) -> int:
        return self.means.shape[2]

    def phone_index(self, phones: list[str]) -> np.ndarray:
        """Model index of each label phone (``pau`` -> the silence model): its context's
        model where there is one, else its monophone. KeyError names phones without a model."""
        index = {p: i for i, p in enumerate(self.phones)}
        names = [SILENCE if p in SILENCES else p for p in phones]
        unknown = sorted({p for p in names if p not in index})
        if unknown:
            raise KeyError(", ".join(unknown))
        contexts = context_names(names)
        return np.array([index.get(c, index[p]) for c, p in zip(contexts, names, strict=True)], np.int64)

    def parents(self) -> np.ndarray:
        """Index of each model's monophone (itself for a monophone)."""
        index = {p: i for i, p in enumerate(self.phones)}
        return np.array([index[p.split("@")[0]] for p in self.phones], np.int64)

    def log_likelihoods(self, features: np.ndarray, states: np.ndarray) -> np.ndarray:
        """``(frames, len(states))`` log p(frame | state) for flat state indices ``states``
        (each distinct state computed once)."""
        d = self.means.shape[-1]
        unique, inverse = np.unique(states, return_inverse=True)
        comp = component_log_likelihoods(
            features,
            self.means.reshape(-1, self.mixtures, d)[unique].reshape(-1, d),
            self.variances.reshape(-1, self.mixtures, d)[unique].reshape(-1, d),
            self.log_weights.reshape(-1, self.mixtures)[unique].reshape(-1),
        ).reshape(len(features), len(unique), self.mixtures)
        return mixture_sum(comp)[:, inverse]

    def frame_components(self, features: np.ndarray, states: np.ndarray) -> np.ndarray:
        """``(frames, mixtures)`` weighted log densities of each frame under the components
        of its own state, ``states[t]`` (a flat state index per frame)."""
        m, d = self.mixtures, self.means.shape[-1]
        means = self.means.reshape(-1, m, d)[states]
        variances = self.variances.reshape(-1, m, d)[states]
        x = np.asarray(features, np.float64)[:, None, :]
        quad = (np.square(x - means) / variances).sum(axis=2)
        norm = np.log(variances).sum(axis=2) + d * _LOG_2PI
        return self.log_weights.reshape(-1, m)[states] - 0.5 * (norm + quad)

    def save(self, path: str | Path) -> None:
        """Write the model as ``.npz`` (arrays and numbers only, no pickle)."""
        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                format=np.array(FORMAT),
                phones=np.array(self.phones),
                means=self.means,
                variances=self.variances,
                log_weights=self.log_weights,
                log_stay=self.log_stay,
                skip_prob=np.float64(self.skip_prob),
                loop_prob=np.float64(self.loop_prob),
                short_pause=np.bool_(self.short_pause),
                pause_state=np.int64(self.pause_state),
            )

    @classmethod
    def load(cls, path: str | Path) -> AlignerModel:
        """Read a model written by `save` (``allow_pickle`` stays off)."""
        path = Path(path)
        try:
            z = np.load(path, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise AlignerModelError(f"{path}: not an aligner model (a single array, not .npz)")
            with z:
                if str(z["format"]) != FORMAT:
                    raise AlignerModelError(f"{path}: not a {FORMAT} model (format {str(z['format'])!r})")
                model = cls(
                    phones=tuple(str(p) for p in z["phones"]),
                    means=z["means"],
                    variances=z["variances"],
                    log_weights=z["log_weights"],
                    log_stay=z["log_stay"],
                    skip_prob=float(z["skip_prob"]),
                    loop_prob=float(z["loop_prob"]),
                    short_pause=bool(z["short_pause"]),
                    pause_state=int(z["pause_state"]),
                )
        except FileNotFoundError:
            raise AlignerModelError(f"aligner model {path} does not exist") from None
        except (OSError, ValueError, KeyError) as e:
            raise AlignerModelError(f"{path}: not an aligner model ({e})") from None
        P, M = len(model.phones), model.means.shape[2] if model.means.ndim == 4 else 0
        expected = {
            "means": (P, N_STATES, M, DIM),
            "variances": (P, N_STATES, M, DIM),
            "log_weights": (P, N_STATES, M),
            "log_stay": (P, N_STATES),
        }
        for name, shape in expected.items():
            if getattr(model, name).shape != shape:
                raise AlignerModelError(
                    f"{path}: {name} has shape {getattr(model, name).shape}, expected {shape} for {P} phones"
                )
        if (
            SILENCE not in model.phones
            or not 0 <= model.pause_state < N_STATES
            or not (model.variances > 0).all()
        ):
            raise AlignerModelError(f"{path}: no silence model, a bad pause state or a variance <= 0")
        return model


def context_names(phones: list[str]) -> list[str]:
    """The context-dependent model name of each phone of a sequence (silences as
    ``sil``): ``phone@left+right`` by its neighbours' classes, utterance edges counting
    as silence. A silence has contexts too (``sil@back+stop``; it still skips and loops):
    speech fading into a pause after a vowel is not the pause before a stop."""
    names = [SILENCE if p in SILENCES else p for p in phones]
    edged = [SILENCE, *names, SILENCE]
    return [
        f"{p}@{_CLASS_OF.get(left, left)}+{_CLASS_OF.get(right, right)}"
        for left, p, right in zip(edged, edged[1:], edged[2:], strict=False)
    ]


def component_log_likelihoods(
    features: np.ndarray, means: np.ndarray, variances: np.ndarray, log_weights: np.ndarray
) -> np.ndarray:
    """``(frames, components)`` weighted log densities of diagonal Gaussians (rows of
    ``means`` / ``variances``), all frames and all components at once.

    With precisions ``1/var`` the exponent is ``x^2 . prec - 2 x . (mu prec) + mu^2 . prec``:
    two matrix products instead of a ``(frames, components, 39)`` difference array.
    """
    d = means.shape[-1]
    prec = 1.0 / variances
    x = np.asarray(features, np.float64)
    quad = np.square(x) @ prec.T - 2.0 * (x @ (means * prec).T) + np.sum(np.square(means) * prec, axis=1)
    const = log_weights - 0.5 * (np.sum(np.log(variances), axis=1) + d * _LOG_2PI)
    return const - 0.5 * quad


def mixture_sum(comp: np.ndarray) -> np.ndarray:
    """log(sum(exp)) over the last axis of ``comp``, a few mixture components: one
    ``logaddexp`` per component (4x faster than `logsumexp` on this axis)."""
    total = comp[..., 0]
    for m in range(1, comp.shape[-1]):
        total = np.logaddexp(total, comp[..., m])
    return total


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(a))) along ``axis``, stable, -inf where every term is -inf."""
    top = a.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top + np.log(np.exp(a - top).sum(axis=axis, keepdims=True)), axis=axis)
