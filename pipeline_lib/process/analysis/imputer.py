"""The prediction models' imputation step, a scikit-learn transformer.

Its own module, imported when a model is fitted: scikit-learn (with the parts of SciPy it loads)
takes about 0.7 s to import, which the process notebook's first cell paid before any result.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class MedianImputer(TransformerMixin, BaseEstimator):
    """Missing values replaced by the training column's median (scikit-learn's SimpleImputer
    sorts masked arrays, about 1 s per fit of a million rows; nanmedian partitions)."""

    def fit(self, X: np.ndarray, y: object = None) -> MedianImputer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a column with no value: median 0
            self.medians_ = np.nan_to_num(np.nanmedian(X, axis=0), nan=0.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        missing = np.isnan(X)
        return np.where(missing, self.medians_, X) if missing.any() else X
