"""Model families, one module each; ``FAMILIES`` maps the family name stored in artefacts to its class."""

from __future__ import annotations

from .base import DataShape, FitContext, Model
from .content import Content, SegmentPop
from .ease import EASE
from .item_knn import ItemKNN
from .mf import MatrixFactorization
from .popularity import Popularity
from .rp3beta import RP3beta
from .sasrec import SASRec
from .sequence import SequenceNeighbours
from .user_knn import UserKNN

FAMILIES: dict[str, type[Model]] = {
    cls.family: cls
    for cls in (Popularity, ItemKNN, RP3beta, EASE, UserKNN, MatrixFactorization, Content, SegmentPop,
                SequenceNeighbours, SASRec)
}

__all__ = ["FAMILIES", "DataShape", "FitContext", "Model", "Content", "EASE", "ItemKNN", "MatrixFactorization",
           "Popularity", "RP3beta", "SASRec", "SegmentPop", "SequenceNeighbours", "UserKNN"]
