"""lotr_labeler: class names in, a trained image classifier out.

The public API, for scripts, notebooks and the pages (everything else is internal)::

    import lotr_labeler as ll

    store = ll.create_project(ll.data_root(), "birds", template="empty")
    ll.import_folder(store, Path("photos"))  # one sub-folder per class
    run = ll.train_run(store, ll.TrainParams(epochs=1, size=128))
    predictor = ll.load_predictor(ll.resolve_model(store).path)
    print(predictor.predict_one(ll.read_image_file(Path("x.jpg"), ll.Limits.default())).top)

Importing the package stays cheap: only the error tree is loaded eagerly. Every other name is
imported from its module on first access (PEP 562 ``__getattr__``), so torch, fastai, sklearn,
ddgs and httpx load only when a caller needs them (pinned by tests/base/test_exported_members.py).
"""

# Private aliases only: the module's public namespace is exactly ``__all__`` (pinned by a test).
import importlib as _importlib
import typing as _typing
import warnings as _warnings

from lotr_labeler.errors import (
    BlockedHost,
    Conflict,
    FetchError,
    ImageRejected,
    InvalidInput,
    LabelerError,
    NoResults,
    NotFound,
    NothingToUndo,
    SearchError,
    SearchRateLimited,
    SearchTimeout,
    StoreError,
    TrainingError,
    UnsafeArchive,
    WeightsUnavailable,
    check_choice,
)

# fastai decorates functions with torch.jit.script at import; this torch (2.14) warns once per process that it is
# deprecated, on every CLI command that loads a model. Nothing the user can act on: that one message goes.
_warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

if _typing.TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and IDEs
    from lotr_labeler.api import create_app, serve
    from lotr_labeler.collect.download import DownloadReport, download_candidates
    from lotr_labeler.collect.export import export_dataset
    from lotr_labeler.collect.importers import ImportReport, import_folder, import_urls, import_zip
    from lotr_labeler.collect.search import ImageSource, SearchOptions, SearchReport, plan_queries, run_search
    from lotr_labeler.jobs.specs import DownloadJob, EmbedJob, ScoreCandidatesJob, SearchJob, TrainJob
    from lotr_labeler.model.embed import Backbone, resolve_backbone
    from lotr_labeler.model.learner import TrainParams
    from lotr_labeler.model.predict import (
        Limits,
        ModelRef,
        PredictionResult,
        Predictor,
        load_predictor,
        read_image_file,
        resolve_model,
    )
    from lotr_labeler.model.record import import_model
    from lotr_labeler.model.runs import Run, current_run, list_runs
    from lotr_labeler.model.train import train_run
    from lotr_labeler.progress import Progress
    from lotr_labeler.project import DEFAULT_PROJECT, data_root
    from lotr_labeler.review.candidates import score_candidates
    from lotr_labeler.review.compute import retrain_head
    from lotr_labeler.review.fitting import refresh
    from lotr_labeler.review.queue import ReviewItem, ranking
    from lotr_labeler.settings import Settings
    from lotr_labeler.store import CandidateIn, CandidateRow, ClassRow, ImageRow, Store
    from lotr_labeler.workspace import create_project, list_projects, open_project

__version__ = "0.1.0"

# Lazy name -> the module that defines it (imported on first access).
_LAZY: dict[str, str] = {
    **dict.fromkeys(("create_app", "serve"), "lotr_labeler.api"),
    **dict.fromkeys(("DownloadReport", "download_candidates"), "lotr_labeler.collect.download"),
    "export_dataset": "lotr_labeler.collect.export",
    **dict.fromkeys(("ImportReport", "import_folder", "import_urls", "import_zip"), "lotr_labeler.collect.importers"),
    **dict.fromkeys(
        ("ImageSource", "SearchOptions", "SearchReport", "plan_queries", "run_search"), "lotr_labeler.collect.search"
    ),
    **dict.fromkeys(
        ("DownloadJob", "EmbedJob", "ScoreCandidatesJob", "SearchJob", "TrainJob"), "lotr_labeler.jobs.specs"
    ),
    **dict.fromkeys(("Backbone", "resolve_backbone"), "lotr_labeler.model.embed"),
    **dict.fromkeys(
        ("Limits", "ModelRef", "PredictionResult", "Predictor", "load_predictor", "read_image_file", "resolve_model"),
        "lotr_labeler.model.predict",
    ),
    **dict.fromkeys(("Run", "current_run", "list_runs"), "lotr_labeler.model.runs"),
    "TrainParams": "lotr_labeler.model.learner",
    "import_model": "lotr_labeler.model.record",
    "train_run": "lotr_labeler.model.train",
    **dict.fromkeys(("DEFAULT_PROJECT", "data_root"), "lotr_labeler.project"),
    **dict.fromkeys(("ReviewItem", "ranking"), "lotr_labeler.review.queue"),
    "refresh": "lotr_labeler.review.fitting",
    "Progress": "lotr_labeler.progress",
    "score_candidates": "lotr_labeler.review.candidates",
    "retrain_head": "lotr_labeler.review.compute",
    "Settings": "lotr_labeler.settings",
    **dict.fromkeys(("CandidateIn", "CandidateRow", "ClassRow", "ImageRow", "Store"), "lotr_labeler.store"),
    **dict.fromkeys(("create_project", "list_projects", "open_project"), "lotr_labeler.workspace"),
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "DEFAULT_PROJECT",
    "Backbone",
    "BlockedHost",
    "CandidateIn",
    "CandidateRow",
    "ClassRow",
    "Conflict",
    "DownloadJob",
    "DownloadReport",
    "EmbedJob",
    "FetchError",
    "ImageRejected",
    "ImageRow",
    "ImageSource",
    "ImportReport",
    "InvalidInput",
    "LabelerError",
    "Limits",
    "ModelRef",
    "NoResults",
    "NotFound",
    "NothingToUndo",
    "PredictionResult",
    "Predictor",
    "Progress",
    "ReviewItem",
    "Run",
    "ScoreCandidatesJob",
    "SearchError",
    "SearchJob",
    "SearchOptions",
    "SearchRateLimited",
    "SearchReport",
    "SearchTimeout",
    "Settings",
    "Store",
    "StoreError",
    "TrainJob",
    "TrainParams",
    "TrainingError",
    "UnsafeArchive",
    "WeightsUnavailable",
    "__version__",
    "check_choice",
    "create_app",
    "create_project",
    "current_run",
    "data_root",
    "download_candidates",
    "export_dataset",
    "import_folder",
    "import_model",
    "import_urls",
    "import_zip",
    "list_projects",
    "list_runs",
    "load_predictor",
    "open_project",
    "plan_queries",
    "ranking",
    "read_image_file",
    "refresh",
    "resolve_backbone",
    "resolve_model",
    "retrain_head",
    "run_search",
    "score_candidates",
    "serve",
    "train_run",
]
