"""Typed job specs: one frozen dataclass per background job kind.

A spec is the job's arguments, once. Each field declares its own command-line option
(``opt``/``flag``), so the CLI parser (``add_arguments``), the worker's argument list
(``to_argv``) and the parse back (``from_args``) all come from the field list: adding an
option is one edit. Pages start jobs with ``Spec(...).launch(store)``, never argument lists;
``tests/jobs/test_job_specs.py`` pins ``spec == Spec.from_args(parse(spec.to_argv()))``.

A spec also holds its job's body: ``spec.run(store, report, cancel)`` does the work the worker
(the CLI command) does by calling the stage functions; search, download and review (Compute) return a ``Ran``
(the stage's report, the state the job row ends in, one summary line). The CLI command is an
adapter around it (parse, ``JobRun``, run, print), and a notebook gets the same behaviour from
the same call.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

from lotr_labeler.collect.search import SearchOptions, SearchReport, plan_queries, run_search
from lotr_labeler.jobs import table
from lotr_labeler.jobs.table import Job
from lotr_labeler.model import backbones, learner
from lotr_labeler.model.learner import TrainParams
from lotr_labeler.model.runs import Run
from lotr_labeler.progress import Cancel, Progress, Report
from lotr_labeler.store import Store
from lotr_labeler.workspace import absolute

if TYPE_CHECKING:
    from lotr_labeler.collect.download import DownloadReport
    from lotr_labeler.review.candidates import ScoreReport
    from lotr_labeler.review.compute import Computed
    from lotr_labeler.review.live import LiveScorer

log = logging.getLogger(__name__)
R = TypeVar("R")


@dataclass(frozen=True)
class Ran(Generic[R]):
    """What a job body did: the stage's report, the state its job row ends in, its one line."""

    report: R
    state: str  # done | cancelled | failed (an error the page shows, with the fix)
    summary: str


def end_state(*, cancelled: bool, failed: bool = False) -> str:
    """The state a job row ends in: cancelled, else failed, else done."""
    return "cancelled" if cancelled else "failed" if failed else "done"


def cli_path(value: str) -> str:
    """A path argument made absolute where it enters (fastai would join a relative one onto learn.path)."""
    return str(absolute(value))


def opt(flag: str, default: Any = None, *, type: Any = str, help: str | None = None, **kw: Any) -> Any:
    """A field carried by option ``flag`` (``type=cli_path`` for a path, ``nargs="*"`` with a
    bare name for positionals; ``choices`` and ``help`` go to argparse)."""
    return field(default=default, metadata={"flag": flag, "type": type, "help": help, **kw})


def flag(flag_name: str, *, default: bool = False, help: str | None = None) -> Any:
    """A boolean field set by a bare flag: ``--x`` sets True on a False default, ``--no-x``
    sets False on a True default."""
    return field(default=default, metadata={"flag": flag_name, "bool": True, "help": help})


class JobSpec:
    """The shared machinery; subclasses are frozen dataclasses of ``opt``/``flag`` fields."""

    kind: ClassVar[str]  # the jobs table's kind (one running job per kind)
    command: ClassVar[str]  # the CLI command the worker runs
    fixed_argv: ClassVar[tuple[str, ...]] = ()  # arguments every launch adds after the command

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("type") is cli_path and value is not None:
                object.__setattr__(self, f.name, cli_path(value))  # the worker's cwd may differ
            elif f.metadata.get("nargs") and not isinstance(value, tuple):
                object.__setattr__(self, f.name, tuple(value or ()))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add this job's options (and the hidden ``--job ID`` a launched worker gets) to ``parser``."""
        for f in fields(cls):  # type: ignore[arg-type]
            m = f.metadata
            default = None if f.default is MISSING else f.default
            if m.get("bool"):
                action = "store_false" if default else "store_true"
                parser.add_argument(m["flag"], dest=f.name, action=action, help=m["help"])
            elif not m["flag"].startswith("-"):
                parser.add_argument(f.name, nargs=m["nargs"], type=m["type"], help=m["help"], metavar=m.get("metavar"))
            else:
                extra = {k: m[k] for k in ("choices", "metavar") if k in m}
                parser.add_argument(m["flag"], dest=f.name, type=m["type"], default=default, help=m["help"], **extra)
        parser.add_argument("--job", type=int, help=argparse.SUPPRESS)

    @classmethod
    def from_args(cls, ns: argparse.Namespace) -> Self:
        """The spec of parsed arguments (options of other concerns, like ``--json``, are ignored)."""
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls)})  # type: ignore[arg-type]

    def to_argv(self) -> list[str]:
        """``lotr-labeler`` arguments that reproduce this spec (without --data/--project/--job)."""
        argv = [self.command, *self.fixed_argv]
        for f in fields(self):  # type: ignore[arg-type]
            m, value = f.metadata, getattr(self, f.name)
            if m.get("bool"):
                argv += [m["flag"]] if value != f.default else []
            elif not m["flag"].startswith("-"):
                argv += [str(v) for v in value]
            elif value is not None:
                argv.append(f"{m['flag']}={value}")  # --x=VALUE: a value starting with "-" stays a value
        return argv

    def record(self) -> dict[str, Any]:
        """The arguments stored on the job row."""
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    def check(self, store: Store) -> None:
        """Refuse before a process starts (override where the worker would fail at once)."""

    def launch(self, store: Store) -> Job:
        """Start this job in the background and return its row.

        Parameters
        ----------
        store : Store
            The project the worker opens.

        Returns
        -------
        Job
            The running row; the worker takes it over with ``--job ID``.

        Raises
        ------
        Conflict
            When a job of this kind is already running.
        """
        self.check(store)
        return table.launch(store, self.kind, self.to_argv()[:], self.record())


def _none_if_any(value: str | None) -> str | None:
    return None if value in (None, "", "any") else value


@dataclass(frozen=True)
class SearchJob(JobSpec):
    """``lotr-labeler search``: search images per class and add them as candidates."""

    kind: ClassVar[str] = "search"
    command: ClassVar[str] = "search"

    label: str | None = opt("--class", help="only this class")
    query: str | None = opt("--query", help="a free-text query instead of the class templates (needs --class)")
    max: int | None = opt("--max", type=int, help="results per query (default: setting search_max_results)")
    type: str = opt("--type", "photo", help="photo|clipart|gif|transparent|line|any")
    size: str | None = opt("--size", help="Small|Medium|Large|Wallpaper")
    layout: str | None = opt("--layout", help="Square|Tall|Wide")
    license: str | None = opt("--license", help="any|Public|Share|ShareCommercially|Modify|ModifyCommercially")
    safesearch: str = opt("--safesearch", "moderate", help="on|moderate|off")
    region: str = opt("--region", "us-en", help="DuckDuckGo region, e.g. us-en, uk-en, wt-wt")
    timelimit: str | None = opt("--timelimit", help="d|w|m|y")
    delay: float | None = opt("--delay", type=float, help="seconds between queries (default: setting search_delay)")
    score: bool = flag(
        "--no-score", default=True, help="do not score the new candidates afterwards (when a model or embeddings exist)"
    )

    def options(self) -> SearchOptions:
        """The search engine filters ("any" and empty mean no filter); InvalidInput when one is bad."""
        return SearchOptions(
            region=self.region,
            safesearch=self.safesearch,
            type_image=_none_if_any(self.type),
            size=_none_if_any(self.size),
            layout=_none_if_any(self.layout),
            license_image=_none_if_any(self.license),
            timelimit=_none_if_any(self.timelimit),
        )

    def check(self, store: Store) -> None:
        self.options()

    def queries(self, store: Store) -> list[tuple[str, str]]:
        """The (class, query) pairs to search: this spec's query, else the classes' templates."""
        return plan_queries(store, self.label, self.query)

    def max_results(self, store: Store) -> int:
        return self.max or store.settings().search_max_results

    def run(self, store: Store, report: Report | None = None, cancel: Cancel | None = None) -> Ran[SearchReport]:
        """Search each planned query and add the hits as candidates (``collect.search.run_search``);
        unset knobs come from the project's settings. Fails (as a state) when the engine was
        unreachable or every query failed."""
        delay = store.settings().search_delay if self.delay is None else self.delay
        done = run_search(
            store,
            self.queries(store),
            max_results=self.max_results(store),
            options=self.options(),
            delay_s=delay,
            progress=report,
            cancel=cancel,
        )
        cancelled = cancel is not None and cancel.is_set()
        return Ran(done, end_state(cancelled=cancelled, failed=done.failed), done.summary())

    def score_after(self, store: Store, done: SearchReport) -> Job | None:
        """Start scoring the new candidates in the background (``ScoreCandidatesJob``) when asked,
        something was added and there is something to score with; None otherwise, also when a
        scoring job runs already (it, or the next one, picks them up)."""
        from lotr_labeler.errors import Conflict
        from lotr_labeler.review import candidates

        if not (self.score and done.added) or candidates.scoring_backbone(store) is None:
            return None
        try:
            return ScoreCandidatesJob().launch(store)
        except Conflict:
            return None


@dataclass(frozen=True)
class DownloadJob(JobSpec):
    """``lotr-labeler download``: fetch the accepted candidates."""

    kind: ClassVar[str] = "download"
    command: ClassVar[str] = "download"

    ids: tuple[int, ...] = opt("ids", (), type=int, nargs="*", help="only these candidates (accepted or failed)")
    workers: int | None = opt("--workers", type=int, help="parallel downloads (default: setting download_workers)")
    allow_private_hosts: bool = flag("--allow-private-hosts", help="allow loopback/private addresses")
    retry_failed: bool = flag("--retry-failed", help="also retry failed candidates")
    score: bool = flag(
        "--no-score", default=True, help="do not embed and score the new images as they land (Review's queue)"
    )

    def run(self, store: Store, report: Report | None = None, cancel: Cancel | None = None) -> Ran[DownloadReport]:
        """Download the candidates (``collect.download.download_candidates``) while, with ``score``
        and a backbone to hand, a ``LiveScorer`` embeds the new images and rescores the Review
        queue every few seconds (its status joins each progress message and the summary). Fails
        (as a state) when most URLs failed."""
        from lotr_labeler.collect.download import download_candidates  # httpx: only when a download runs

        scorer = _live_scorer(store) if self.score else None

        def tell(p: Progress) -> None:
            if report is not None:
                report(replace(p, message=f"{p.message}; {scorer.status}") if scorer else p)

        try:
            done = download_candidates(
                store,
                list(self.ids) or None,
                retry_failed=self.retry_failed,
                workers=self.workers,
                allow_private=True if self.allow_private_hosts else None,
                progress=tell,
                cancel=cancel,
            )
        finally:
            if scorer is not None:
                scorer.stop()  # scores the last arrivals too
        # Review's part only when the scorer did something or failed: "scored 0 (embedded 0 new)" after a
        # download that landed nothing read as work done.
        told = scorer is not None and (scorer.embedded or scorer.scored or scorer.error)
        summary = done.summary() + (f" Review: {scorer.status}." if scorer and told else "")
        return Ran(done, end_state(cancelled=done.cancelled, failed=done.mostly_failed), summary)


def _live_scorer(store: Store) -> LiveScorer | None:
    """A started scorer with the backbone of the last fit (before any fit, the default one); None when
    no backbone can be had (the download goes on; Review scores later with Compute)."""
    from lotr_labeler.errors import LabelerError
    from lotr_labeler.review.last_fit import fit_backbone
    from lotr_labeler.review.live import LiveScorer

    try:
        backbone = fit_backbone(store)
    except LabelerError as exc:
        log.warning("download without live scoring: %s", exc)
        return None
    return LiveScorer(store.root, backbone).start()


@dataclass(frozen=True)
class EmbedJob(JobSpec):
    """``lotr-labeler review --compute``: embed the images and score their labels (Review's Compute)."""

    kind: ClassVar[str] = "review"
    command: ClassVar[str] = "review"
    fixed_argv: ClassVar[tuple[str, ...]] = ("--compute",)

    backbone: str = opt(
        "--backbone",
        "best",
        choices=("best", "run", "bundled", "imagenet"),
        help="embeddings from the current model's body (run), the bundled EfficientNet-Lite0 (bundled) or "
        "resnet18 (imagenet); best (default): the most accurate on your labels, chosen by cross-validation",
    )
    pretrained: bool = flag("--no-pretrained", default=True, help="random weights (bundled or imagenet; weaker)")
    weights: str | None = opt(
        "--weights", type=cli_path, help="a local torchvision resnet18 state-dict file instead of the download"
    )
    size: int | None = opt(
        "--size", type=int, help="embedding input size in px (default: the run's size or embed_size)"
    )

    def run(self, store: Store, report: Report | None = None, cancel: Cancel | None = None) -> Ran[Computed]:
        """Pick the backbone, embed what it has not embedded, refit the head (``review.compute.compute``)."""
        from lotr_labeler.review.compute import compute

        done = compute(
            store,
            self.backbone,
            pretrained=self.pretrained,
            weights=self.weights,
            size=self.size,
            progress=report,
            cancel=cancel,
        )
        return Ran(done, end_state(cancelled=done.cancelled), done.summary())

    @classmethod
    def of(cls, backbone: Any) -> EmbedJob:
        """The job that computes with a resolved ``embed.Backbone``."""
        if backbone.kind == "run":
            return cls(backbone="run", size=backbone.size)
        if backbone.kind == backbones.BUNDLED:
            return cls(backbone="bundled", size=backbone.size, pretrained=backbone.pretrained)
        return cls(
            backbone="imagenet",
            size=backbone.size,
            weights=backbone.weights,
            pretrained=bool(backbone.pretrained or backbone.weights),
        )


@dataclass(frozen=True)
class TrainJob(JobSpec):
    """``lotr-labeler train``: fine-tune a classifier; unset knobs come from the preset."""

    kind: ClassVar[str] = "train"
    command: ClassVar[str] = "train"

    preset: str = opt(
        "--preset",
        "quick",
        choices=("quick", "standard"),
        help="quick: CPU laptop (128 px, 2 epochs); standard: GPU (224 px, 4 epochs)",
    )
    arch: str | None = opt(
        "--arch",
        choices=(backbones.BUNDLED, *backbones.RESNETS),
        help=f"network (default {backbones.BUNDLED}: pretrained weights bundled, no download; "
        "the ResNets download theirs once)",
    )
    epochs: int | None = opt("--epochs", type=int)
    size: int | None = opt("--size", type=int, help="image size in pixels")
    bs: int | None = opt("--bs", type=int, help="batch size")
    lr: float | None = opt("--lr", type=float, help="learning rate (default 0.002)")
    find_lr: bool = flag("--find-lr", help="pick the learning rate with lr_find")
    seed: int | None = opt("--seed", type=int)
    pretrained: bool = flag("--no-pretrained", default=True, help="train from scratch (no ImageNet weights)")
    weights: str | None = opt(
        "--weights", type=cli_path, help="a local torchvision weights file for a ResNet --arch (offline)"
    )
    augment: bool = flag("--no-augment", default=True, help="no data augmentation")
    bundle: str | None = opt(
        "--bundle", type=cli_path, help="first import this exported dataset (zip or folder) into the project"
    )
    out: str | None = opt("--out", type=cli_path, help="also copy model.pkl here")
    distributed: bool = flag(
        "--distributed", help="train in several processes: start with `accelerate launch -m lotr_labeler train ...`"
    )

    @classmethod
    def of(cls, params: TrainParams) -> TrainJob:
        """The job that trains with every knob of ``params`` spelled out."""
        return cls(
            arch=params.arch,
            epochs=params.epochs,
            size=params.size,
            bs=params.batch_size,
            lr=params.lr,
            find_lr=params.find_lr,
            seed=params.seed,
            pretrained=params.pretrained,
            weights=params.weights,
            augment=params.augment,
        )

    def params(self) -> TrainParams:
        """The preset with the given knobs; InvalidInput when one is out of range."""
        return learner.preset(
            self.preset,
            arch=self.arch,
            epochs=self.epochs,
            size=self.size,
            batch_size=self.bs,
            lr=self.lr,
            seed=self.seed,
            find_lr=self.find_lr or None,
            pretrained=None if self.pretrained else False,
            weights=self.weights,
            augment=None if self.augment else False,
        )

    def record(self) -> dict[str, Any]:
        return asdict(self.params())

    def run(
        self, store: Store, report: Report | None = None, cancel: Cancel | None = None, *, job_id: int | None = None
    ) -> Run:
        """Train as asked (``model.train.train_run``: progress per batch, ``cancel`` within one), then
        copy the model to ``out`` when given.

        Returns
        -------
        Run
            Done, or cancelled.

        Raises
        ------
        TrainingError, WeightsUnavailable
            The dataset is not ready, the starting weights cannot be had, or training failed (the run
            is recorded as failed).
        """
        from lotr_labeler.model import train

        params = self.params()
        run = train.train_run(
            store, params, job_id=job_id, progress=report, cancel=cancel, distributed=self.distributed
        )
        if run.state == "done" and self.out:
            shutil.copyfile(run.model_path, self.out)
        return run

    def check(self, store: Store) -> None:
        from lotr_labeler.model.dataset import check_dataset

        self.params()
        check_dataset(store)  # refuse before a process starts


@dataclass(frozen=True)
class ScoreCandidatesJob(JobSpec):
    """``lotr-labeler candidates score``: the model's opinion of each pending/accepted candidate
    from its search thumbnail (``review.candidates``)."""

    kind: ClassVar[str] = "score-candidates"
    command: ClassVar[str] = "candidates"
    fixed_argv: ClassVar[tuple[str, ...]] = ("score",)

    ids: tuple[int, ...] = opt(
        "ids", (), type=int, nargs="*", help="only these candidates (default: all pending/accepted)"
    )
    workers: int | None = opt(
        "--workers", type=int, help="parallel thumbnail fetches (default: setting download_workers)"
    )
    allow_private_hosts: bool = flag("--allow-private-hosts", help="allow loopback/private addresses")

    def check(self, store: Store) -> None:
        from lotr_labeler.errors import Conflict
        from lotr_labeler.review import candidates

        if candidates.scoring_backbone(store) is None:
            raise Conflict(candidates.NOTHING_TO_LEARN.format(project=store.name))

    def run(self, store: Store, report: Report | None = None, cancel: Cancel | None = None) -> Ran[ScoreReport]:
        """Score the candidates' thumbnails (``review.candidates.score_candidates``)."""
        from lotr_labeler.review.candidates import score_candidates

        done = score_candidates(
            store,
            list(self.ids) or None,
            workers=self.workers,
            allow_private=True if self.allow_private_hosts else None,
            progress=report,
            cancel=cancel,
        )
        return Ran(done, end_state(cancelled=done.cancelled), done.summary())


SPECS: tuple[type[JobSpec], ...] = (SearchJob, DownloadJob, EmbedJob, TrainJob, ScoreCandidatesJob)
