"""The Train page's form, remembered per project, and the settings of the current trained run
(``last_params``: what a retrain or a fresh form starts from)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace

from lotr_labeler.errors import InvalidInput, check_choice
from lotr_labeler.model import backbones, runs
from lotr_labeler.model.learner import PRESETS, TrainParams
from lotr_labeler.store import Store

log = logging.getLogger(__name__)


def last_params(store: Store) -> TrainParams:
    """The settings of the current trained run (so a retrain compares like with like), else Quick."""
    run = runs.current_run(store)
    if run is not None and run.source == "trained":
        known = {f for f in TrainParams.__dataclass_fields__}
        try:
            return TrainParams(**{k: v for k, v in run.params.items() if k in known})
        except InvalidInput:  # e.g. its weights file is gone
            log.info("run %s settings no longer valid; retraining with the Quick preset", run.id)
    return PRESETS["quick"]


FORM_KEY = "train_form"  # meta key: the form as JSON


@dataclass(frozen=True)
class TrainForm:
    """The Train page's choices, kept per project so a reload, another page or a restart brings them back
    (above all an offline user's unticked Pretrained, without which every Start fails again).

    Unlike ``TrainParams`` it may name a weights file that does not exist (yet): the page keeps what was
    typed, and Start reports it.
    """

    preset: str = "quick"
    arch: str = PRESETS["quick"].arch
    epochs: int = PRESETS["quick"].epochs
    size: int = PRESETS["quick"].size
    batch_size: int = PRESETS["quick"].batch_size
    lr: float = 0.0  # 0: the default rate, or lr_find's with find_lr
    find_lr: bool = False
    seed: int = PRESETS["quick"].seed
    augment: bool = True
    pretrained: bool = True
    weights: str = ""

    @classmethod
    def of(cls, params: TrainParams, preset: str | None = None) -> TrainForm:
        """The form holding ``params``; its preset is the one they equal, else ``preset`` or Quick."""
        named = next((name for name, p in PRESETS.items() if p == params), preset or "quick")
        return cls(
            preset=named,
            arch=params.arch,
            epochs=params.epochs,
            size=params.size,
            batch_size=params.batch_size,
            lr=params.lr or 0.0,
            find_lr=params.find_lr,
            seed=params.seed,
            augment=params.augment,
            pretrained=params.pretrained,
            weights=params.weights or "",
        )

    def with_preset(self, name: str) -> TrainForm:
        """The preset's size, epochs, architecture… keeping the weight choice (it is about the machine)."""
        base = PRESETS[check_choice(name, PRESETS, "Preset")]
        return replace(TrainForm.of(base, name), preset=name, pretrained=self.pretrained, weights=self.weights)

    def params(self) -> TrainParams:
        """The run these choices ask for.

        Raises
        ------
        InvalidInput
            A value is out of range or the weights file does not exist.
        """
        return TrainParams(
            arch=self.arch,
            epochs=self.epochs,
            size=self.size,
            batch_size=self.batch_size,
            lr=self.lr or None,
            find_lr=self.find_lr,
            seed=self.seed,
            pretrained=self.pretrained,
            # A file typed for a ResNet stays in the form (greyed out) when the bundled network is chosen.
            weights=(self.weights.strip() or None) if self.arch != backbones.BUNDLED else None,
            augment=self.augment,
        )


def save_form(store: Store, form: TrainForm) -> None:
    """Remember ``form`` for the project (a page-state meta key: the data version stays)."""
    store.meta_set(FORM_KEY, json.dumps(asdict(form)))


def load_form(store: Store) -> TrainForm:
    """The project's remembered form; never saved (or no longer valid): the current run's settings, else Quick."""
    fallback = TrainForm.of(last_params(store))
    raw = store.meta_get(FORM_KEY)
    if raw is None:
        return fallback
    try:
        data = json.loads(raw)
        values = {f.name: data[f.name] for f in fields(TrainForm) if f.name in data}
        for f in fields(TrainForm):  # a hand-edited or older row: each value must have its field's type
            kind = type(getattr(fallback, f.name))
            if (
                f.name in values
                and not isinstance(values[f.name], kind)
                and not (kind is float and type(values[f.name]) is int)
            ):
                del values[f.name]
        form = replace(fallback, **{**values, "lr": float(values.get("lr", fallback.lr))})  # 0 -> 0.0 for the widget
        check_choice(form.preset, PRESETS, "Preset")
        replace(form, weights="").params()  # ranges; a missing weights file is kept to be reported on Start
    except (ValueError, TypeError, InvalidInput) as exc:
        log.info("remembered train form not usable (%s); using %s", exc, fallback)
        return fallback
    return form
