"""A tiny ensemble trained once per session on a few thousand rows of the shipped sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from bluegreen.model import data
from bluegreen.model.ensemble import StackerConfig
from bluegreen.model.features import FeatureConfig
from bluegreen.model.inference import CompiledEnsemble, EnsembleSentimentModel
from bluegreen.model.members import MemberConfig
from bluegreen.model.training import ProfileConfig, fit_ensemble

TINY = ProfileConfig(
    features=FeatureConfig(
        char_range=(1, 4), char_max_features=20_000, char_min_count=2,
        word_n=2, word_max_features=8_000, word_min_count=2,
    ),
    members=(
        MemberConfig("char_tfidf_lr", "tfidf_lr", "char", C=4.0, max_iter=40, tol=1e-3),
        MemberConfig("word_tfidf_lr", "tfidf_lr", "word", C=4.0, max_iter=40, tol=1e-3),
        MemberConfig("nb_lr", "nbsvm", "both", C=4.0, max_iter=40, tol=1e-3),
        MemberConfig("rating_ridge", "rating_ridge", "both", C=1.0, max_iter=100,
                     presence=True),
    ),
    stacker=StackerConfig(C=1.0, folds=3),
    val_fraction=0.25,
)  # fmt: skip


@pytest.fixture(scope="session")
def tiny_train() -> data.Dataset:
    full = data.read_dataset(data.default_data_dir() / data.SAMPLE_TRAIN_FILE)
    return full.subset(data.stratified_sample(full.ratings, 4000, 7))


@pytest.fixture(scope="session")
def tiny_test() -> data.Dataset:
    return data.read_dataset(data.default_data_dir() / data.SAMPLE_TEST_FILE, limit=1500)


@pytest.fixture(scope="session")
def tiny_fit(tiny_train: data.Dataset):  # type: ignore[no-untyped-def]
    return fit_ensemble(tiny_train, TINY, seed=3)


@pytest.fixture(scope="session")
def saved_dir(tiny_fit, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    compiled: CompiledEnsemble = tiny_fit[0]
    return compiled.save(tmp_path_factory.mktemp("ens") / "ensemble")


@pytest.fixture(scope="session")
def model(saved_dir: Path) -> EnsembleSentimentModel:
    return EnsembleSentimentModel(CompiledEnsemble.load(saved_dir))
