"""XGBoost, LightGBM and scikit-learn's HistGradientBoosting on the same time split obol uses.

Usage: baselines.py CREDITCARD_CSV [SPLIT]   (prints one JSON object per model)

Rows are sorted by Time (stable), the first SPLIT (0.7) train and the rest are held out, exactly
as `obol risk train --split 0.7` does; features are V1..V28 and Amount. Metrics: average precision
(AUPRC), ROC AUC, and the mean time to score one row alone.
"""
import csv
import json
import warnings
import sys
import time

import numpy as np
from lightgbm import LGBMClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, roc_auc_score
from xgboost import XGBClassifier


def load(path):
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [[float(value) for value in row] for row in reader]
    data = np.array(rows)
    order = np.argsort(data[:, header.index("Time")], kind="stable")
    data = data[order]
    features = [i for i, name in enumerate(header) if name not in ("Time", "Class")]
    return data[:, features], data[:, header.index("Class")].astype(int)


def main():
    warnings.filterwarnings("ignore")
    path = sys.argv[1]
    split = float(sys.argv[2]) if len(sys.argv) > 2 else 0.7
    x, y = load(path)
    cut = int(len(y) * split)
    x_train, y_train, x_test, y_test = x[:cut], y[:cut], x[cut:], y[cut:]
    # The settings `obol risk train` uses by default: 300 trees, learning rate 0.05, depth 6.
    models = {
        "xgboost": XGBClassifier(n_estimators=300, learning_rate=0.05, max_depth=6, random_state=7, n_jobs=2),
        "lightgbm": LGBMClassifier(n_estimators=300, learning_rate=0.05, max_depth=6, random_state=7, n_jobs=2, verbose=-1),
        "sklearn_hist_gb": HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, max_depth=6, random_state=7, early_stopping=False
        ),
    }
    for name, model in models.items():
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_test)[:, 1]
        sample = x_test[:2000]
        started = time.perf_counter()
        for row in sample:
            model.predict_proba(row.reshape(1, -1))
        single_us = (time.perf_counter() - started) / len(sample) * 1e6
        print(json.dumps({
            "model": name,
            "rows": int(len(y_test)),
            "positives": int(y_test.sum()),
            "auprc": float(average_precision_score(y_test, scores)),
            "roc_auc": float(roc_auc_score(y_test, scores)),
            "single_score_us": round(single_us, 1),
        }))


if __name__ == "__main__":
    main()
