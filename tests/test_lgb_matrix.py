"""The LightGBM model matrix: column order, numbers and categories as the models expect."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.lgb_grid import lgb_matrix


def test_matrix_coerces_numbers_and_maps_categories_by_their_strings() -> None:
    X = pd.DataFrame({
        "text": ["1", "x", None, "2.5"],
        "flag": [True, False, True, None],
        "ints": pd.array([1, None, 3, 4], dtype="Int64"),
        "pool": ["u", None, np.nan, "v"],
        "pair": pd.array(["u", None, "w", "v"], dtype="string"),
        "code": [1, 2, 1, 3],
    }, index=[10, 11, 12, 13])
    cats = {"pool": ["u", "nan", "None"], "pair": ["u", "<NA>", "v"], "code": ["1", "3"]}
    M = lgb_matrix(X, ["code", "text", "flag", "ints", "pool", "pair", "absent", "text"], cats)

    assert list(M.columns) == ["code", "text", "flag", "ints", "pool", "pair", "absent"]
    assert list(M.index) == [10, 11, 12, 13]
    np.testing.assert_array_equal(M["text"], [1.0, np.nan, np.nan, 2.5])
    np.testing.assert_array_equal(M["flag"], [1.0, 0.0, 1.0, np.nan])
    np.testing.assert_array_equal(M["ints"], [1.0, np.nan, 3.0, 4.0])
    assert M["absent"].isna().all() and M["absent"].dtype == float
    # values are matched to categories by their string; unknown and missing values are
    # missing, even beside categories named "nan" or "None"
    assert M["pool"].tolist()[0] == "u" and M["pool"].isna().tolist() == [False, True, True, True]
    assert list(M["pool"].cat.categories) == ["u", "nan", "None"]
    assert M["pair"].tolist()[::3] == ["u", "v"] and M["pair"].isna().tolist()[1:3] == [True, True]
    assert M["code"].tolist()[:1] == ["1"] and M["code"].cat.codes.tolist() == [0, -1, 0, 1]


def test_matrix_of_no_rows_keeps_its_columns() -> None:
    X = pd.DataFrame({"a": pd.Series([], dtype=float), "p": pd.Series([], dtype=str)})
    M = lgb_matrix(X, ["p", "a"], {"p": ["x"]})
    assert list(M.columns) == ["p", "a"] and len(M) == 0
    assert isinstance(M["p"].dtype, pd.CategoricalDtype)


def test_array_is_what_lightgbm_reads_from_the_matrix() -> None:
    import lightgbm as lgb

    from models.lgb_grid import lgb_array

    rng = np.random.default_rng(0)
    n = 400
    X = pd.DataFrame({"pool_id": rng.choice(["a", "b", "c"], n), "x": rng.normal(size=n),
                      "f32": rng.normal(size=n).astype(np.float32), "flag": rng.random(n) > 0.5})
    X.loc[::7, "x"] = np.nan
    y = X["x"].fillna(0) + (X["pool_id"] == "b") * 2.0 + rng.normal(scale=0.1, size=n)
    cats = {"pool_id": ["a", "b", "c"]}
    cols = ["pool_id", "x", "f32", "flag"]
    M = lgb_matrix(X, cols, cats)
    booster = lgb.train({"verbose": -1, "num_leaves": 7, "min_child_samples": 5},
                        lgb.Dataset(M, y.to_numpy(), categorical_feature=["pool_id"]), 20)

    new = X.assign(pool_id=np.where(np.arange(n) % 5 == 0, "unknown", X["pool_id"]))
    read, *_ = lgb.basic._data_from_pandas(lgb_matrix(new, cols, cats), "auto", "auto",
                                           booster.pandas_categorical)
    np.testing.assert_array_equal(lgb_array(new, cols, cats), read)
    np.testing.assert_array_equal(booster.predict(lgb_array(new, cols, cats)),
                                  booster.predict(lgb_matrix(new, cols, cats)))
