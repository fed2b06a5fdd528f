"""XGBoost on the field's standard windowed features, the baseline obol's model is held to.

Reads a labelled CSV of payments (as `obol sim traffic` writes it), computes per payer the
count and mean amount of its payments over the last 1, 7 and 30 days (the payment itself
included), and per payee its payment count and its confirmed-fraud count and rate over the
same windows, counting only labels known by the payment's time (each fraud's `label_known_s`),
then trains XGBoost on the rows before --train-until and reports the average precision (AUPRC,
the same stepwise definition as `obol risk eval`) on the rest, overall and per fraud kind.

    python scripts/risk/xgb_baseline.py --data sim.csv --train-until 2027-02-12 [--json]

Other data names its columns; without a label-time column each label is known --label-delay-days
after its payment, as in `obol risk train`:

    python scripts/risk/xgb_baseline.py --data cards.csv --train-until 2018-08-01 --time TX_DATETIME \
        --amount TX_AMOUNT --payer CUSTOMER_ID --payee TERMINAL_ID --label TX_FRAUD --kind TX_FRAUD_SCENARIO

Requirements: scripts/risk/requirements.txt (pandas, numpy, xgboost-cpu from PyPI).
"""

import argparse
import json
import time

import numpy as np
import pandas as pd
import xgboost as xgb

DAY_S = 86_400
WINDOWS_DAYS = (1, 7, 30)


def average_precision(scores, labels):
    """Area under the precision-recall curve, stepwise: mean precision at each fraud's rank."""
    order = np.argsort(-scores, kind="stable")
    ranked = labels[order].astype(np.float64)
    positives = ranked.sum()
    if positives == 0:
        return 0.0
    hits = np.cumsum(ranked)
    ranks = np.arange(1, len(ranked) + 1)
    return float((hits / ranks * ranked).sum() / positives)


def window_counts(times, group, width_s, values=None):
    """For each row, the count (and sum of `values`) of its group's rows in (t - width, t]."""
    count = np.zeros(len(times))
    total = np.zeros(len(times))
    frame = pd.DataFrame({"t": times, "g": group, "i": np.arange(len(times))})
    for _, rows in frame.groupby("g", sort=False):
        t = rows["t"].to_numpy()
        index = rows["i"].to_numpy()
        order = np.argsort(t, kind="stable")
        t_sorted = t[order]
        right = np.searchsorted(t_sorted, t, side="right")
        left = np.searchsorted(t_sorted, t - width_s, side="right")
        count[index] = right - left
        if values is not None:
            cumulative = np.concatenate([[0.0], np.cumsum(values[index][order])])
            total[index] = cumulative[right] - cumulative[left]
    return count, total


def fraud_counts(times, group, known, fraud, width_s):
    """For each row, its group's frauds whose label became known in (t - width, t]."""
    out = np.zeros(len(times))
    frame = pd.DataFrame({"t": times, "g": group, "k": known, "f": fraud, "i": np.arange(len(times))})
    for _, rows in frame.groupby("g", sort=False):
        known_sorted = np.sort(rows.loc[rows["f"] == 1, "k"].to_numpy())
        if len(known_sorted) == 0:
            continue
        t = rows["t"].to_numpy()
        right = np.searchsorted(known_sorted, t, side="right")
        left = np.searchsorted(known_sorted, t - width_s, side="right")
        out[rows["i"].to_numpy()] = right - left
    return out


def seconds(column):
    """A time column as whole seconds since the Unix epoch: numbers as they are, dates parsed as UTC."""
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(dtype=np.float64).astype(np.int64)
    return (pd.to_datetime(column, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)


def features(data):
    times = data["time_s"].to_numpy(dtype=np.int64)
    amount = data["amount"].to_numpy(dtype=np.float64)
    payer = data["payer"].to_numpy()
    payee = data["payee"].to_numpy()
    fraud = data["label"].to_numpy(dtype=np.int64)
    known = data["label_known_s"].fillna(4e18).to_numpy(dtype=np.float64).astype(np.int64)
    columns = {
        "amount": amount,
        "hour_of_day": (times % DAY_S) // 3600,
        "weekend": ((times // DAY_S + 3) % 7 >= 5).astype(np.float64),
    }
    for days in WINDOWS_DAYS:
        width = days * DAY_S
        count, total = window_counts(times, payer, width, amount)
        columns[f"payer_count_{days}d"] = count
        columns[f"payer_mean_{days}d"] = np.where(count > 0, total / np.maximum(count, 1), 0.0)
        count, _ = window_counts(times, payee, width)
        frauds = fraud_counts(times, payee, known, fraud, width)
        columns[f"payee_count_{days}d"] = count
        columns[f"payee_fraud_{days}d"] = frauds
        columns[f"payee_fraud_rate_{days}d"] = np.minimum(frauds / np.maximum(count, 1), 1.0)
    return pd.DataFrame(columns)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--train-until", required=True, help="YYYY-MM-DD (UTC): earlier rows train")
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--time", default="time_s", help="time column (seconds or dates)")
    parser.add_argument("--amount", default="amount_minor")
    parser.add_argument("--payer", default="payer")
    parser.add_argument("--payee", default="payee")
    parser.add_argument("--label", default="label")
    parser.add_argument("--label-known", default="label_known_s", help="when each label became known, if present")
    parser.add_argument("--label-delay-days", type=float, default=7.0, help="without --label-known")
    parser.add_argument("--kind", default="fraud_kind", help="the fraud kind column, if present")
    args = parser.parse_args()

    raw = pd.read_csv(args.data)
    data = pd.DataFrame(
        {
            "time_s": seconds(raw[args.time]),
            "amount": raw[args.amount].to_numpy(dtype=np.float64),
            "payer": raw[args.payer].to_numpy(),
            "payee": raw[args.payee].to_numpy(),
            "label": raw[args.label].to_numpy(dtype=np.int64),
        }
    )
    if args.label_known in raw.columns:
        data["label_known_s"] = seconds(raw[args.label_known].fillna(4e18))
    else:
        data["label_known_s"] = data["time_s"] + int(args.label_delay_days * DAY_S)
    data["label_known_s"] = data["label_known_s"].where(data["label"] == 1)
    kinds = raw[args.kind].astype(str) if args.kind in raw.columns else pd.Series([""] * len(raw))
    data["fraud_kind"] = kinds.where(data["label"] == 1, "").to_numpy()
    del raw
    data = data.sort_values("time_s", kind="stable").reset_index(drop=True)
    started = time.time()
    table = features(data)
    features_s = time.time() - started
    cut = int(pd.Timestamp(args.train_until, tz="UTC").timestamp())
    train = data["time_s"].to_numpy() < cut
    labels = data["label"].to_numpy(dtype=np.int64)
    params = {
        "objective": "binary:logistic",
        "max_depth": args.depth,
        "eta": args.learning_rate,
        "tree_method": "hist",
        "nthread": 2,
        "seed": 7,
    }
    started = time.time()
    booster = xgb.train(params, xgb.DMatrix(table[train], label=labels[train]), num_boost_round=args.trees)
    train_s = time.time() - started
    scores = booster.predict(xgb.DMatrix(table[~train]))
    held = labels[~train]
    kinds = data.loc[~train, "fraud_kind"].fillna("").astype(str).to_numpy()
    by_kind = {}
    for kind in sorted(set(kinds) - {""}):
        keep = (held == 0) | (kinds == kind)
        by_kind[kind] = {"frauds": int((kinds == kind).sum()), "auprc": average_precision(scores[keep], held[keep])}
    result = {
        "rows": int((~train).sum()),
        "positives": int(held.sum()),
        "auprc": average_precision(scores, held),
        "by_kind": by_kind,
        "trained_rows": int(train.sum()),
        "features": list(table.columns),
        "features_s": round(features_s, 1),
        "train_s": round(train_s, 1),
        "xgboost": xgb.__version__,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"XGBoost {xgb.__version__} on {len(table.columns)} windowed features, trained on {result['trained_rows']} rows")
    print(f"held-out rows: {result['rows']} ({result['positives']} fraud)")
    print(f"AUPRC: {result['auprc']:.4f}")
    for kind, value in by_kind.items():
        print(f"  {kind:<24} {value['auprc']:.4f}   ({value['frauds']} fraud rows)")
    print(f"features {features_s:.1f} s, training {train_s:.1f} s")


if __name__ == "__main__":
    main()
