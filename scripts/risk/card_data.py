"""Simulated card payments in the shape of the field's standard benchmark: customers and
terminals on a 100 x 100 map, each customer paying at the terminals within reach, and three
fraud scenarios (Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud
Detection", 2022, chapter 3):

1. any payment above 220 is fraud;
2. every day two terminals are compromised: every payment at them in the next 28 days is fraud
   (the "compromised payee" no feature finds without confirmed-fraud feedback);
3. every day three customers are compromised: for 14 days a third of their payments are fraud at
   five times the amount.

With the defaults (5,000 customers, 10,000 terminals, 183 days from 2018-04-01) it writes about
1.75M rows. Deterministic for a seed.

    python scripts/risk/card_data.py --out cards.csv [--customers 5000] [--terminals 10000] [--days 183] [--seed 0]

Columns: TRANSACTION_ID, TX_DATETIME (ISO, UTC), CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT (2 decimals),
TX_FRAUD (0/1), TX_FRAUD_SCENARIO (0 for good payments, else 1, 2 or 3).
Requirements: numpy (scripts/risk/requirements.txt).
"""

import argparse

import numpy as np

DAY_S = 86_400
START = np.datetime64("2018-04-01T00:00:00", "s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--terminals", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=183)
    parser.add_argument("--radius", type=float, default=5.0, help="how far a customer pays")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    customer_xy = rng.uniform(0, 100, size=(args.customers, 2))
    mean_amount = rng.uniform(5, 100, size=args.customers)
    std_amount = mean_amount / 2
    per_day = rng.uniform(0, 4, size=args.customers)
    terminal_xy = rng.uniform(0, 100, size=(args.terminals, 2))
    # The terminals within reach of each customer.
    reach = []
    for xy in customer_xy:
        distance = np.sqrt(((terminal_xy - xy) ** 2).sum(axis=1))
        reach.append(np.flatnonzero(distance < args.radius))

    # Payments: each day, a Poisson number per customer around midday.
    counts = rng.poisson(per_day[:, None], size=(args.customers, args.days))
    customer = np.repeat(np.repeat(np.arange(args.customers), args.days), counts.ravel())
    day = np.repeat(np.tile(np.arange(args.days), args.customers), counts.ravel())
    second = np.rint(rng.normal(DAY_S / 2, 20_000, size=len(customer))).astype(np.int64)
    amount = rng.normal(mean_amount[customer], std_amount[customer])
    low = amount < 0
    amount[low] = rng.uniform(0, mean_amount[customer[low]] * 2)
    has_reach = np.array([len(r) > 0 for r in reach])
    keep = (second > 0) & (second < DAY_S) & has_reach[customer]
    customer, day, second, amount = customer[keep], day[keep], second[keep], np.round(amount[keep], 2)
    # Rows are grouped by customer here: pick each one's terminals among those in reach.
    terminal = np.empty(len(customer), dtype=np.int64)
    draw = rng.random(len(customer))
    bounds = np.searchsorted(customer, np.arange(args.customers + 1))
    for c in range(args.customers):
        rows = slice(bounds[c], bounds[c + 1])
        if bounds[c + 1] > bounds[c]:
            terminal[rows] = reach[c][(draw[rows] * len(reach[c])).astype(np.int64)]
    order = np.lexsort((second, day))
    customer, day, second, amount, terminal = customer[order], day[order], second[order], amount[order], terminal[order]
    time_s = day * DAY_S + second

    scenario = np.zeros(len(customer), dtype=np.int64)
    scenario[amount > 220] = 1
    # Each terminal's and each customer's rows, in time order.
    by_terminal = np.argsort(terminal, kind="stable")
    terminal_bounds = np.searchsorted(terminal[by_terminal], np.arange(args.terminals + 1))
    by_customer = np.argsort(customer, kind="stable")
    customer_bounds = np.searchsorted(customer[by_customer], np.arange(args.customers + 1))
    for d in range(args.days):
        for t in rng.choice(args.terminals, size=2, replace=False):
            rows = by_terminal[terminal_bounds[t] : terminal_bounds[t + 1]]
            rows = rows[(day[rows] >= d) & (day[rows] < d + 28) & (scenario[rows] == 0)]
            scenario[rows] = 2
        for c in rng.choice(args.customers, size=3, replace=False):
            rows = by_customer[customer_bounds[c] : customer_bounds[c + 1]]
            rows = rows[(day[rows] >= d) & (day[rows] < d + 14) & (scenario[rows] == 0)]
            chosen = rng.choice(rows, size=len(rows) // 3, replace=False) if len(rows) >= 3 else rows[:0]
            amount[chosen] = np.round(amount[chosen] * 5, 2)
            scenario[chosen] = 3

    stamp = np.char.replace((START + time_s.astype("timedelta64[s]")).astype(str), "T", " ")
    with open(args.out, "w") as out:
        out.write("TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_FRAUD,TX_FRAUD_SCENARIO\n")
        for i, (when, c, t, a, s) in enumerate(zip(stamp, customer, terminal, amount, scenario)):
            out.write(f"{i},{when},{c},{t},{a:.2f},{int(s > 0)},{s}\n")
    fraud = int((scenario > 0).sum())
    print(f"wrote {len(customer)} payments ({fraud} fraud) over {args.days} days to {args.out}")


if __name__ == "__main__":
    main()
