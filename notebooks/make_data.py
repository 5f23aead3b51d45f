"""Generate the card-transactions data set that notebooks/retrain.ipynb trains on.

Seeded and imbalanced (about 2% fraud), in the same shape as the quickstart's data. `--shift`
moves the distribution on purpose (bigger amounts, more online and foreign transactions, a
higher fraud rate, later hours), so a later batch can be checked for drift against the first:

    python notebooks/make_data.py                              # data/transactions.parquet
    python notebooks/make_data.py --rows 20000 --seed 7 --shift 0.5 --out data/current.csv

Nothing is downloaded. The output is Parquet, or CSV when `--out` ends in `.csv`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN", "NG", "CN"])
HOME_SHARES = [0.4, 0.15, 0.15, 0.1, 0.08, 0.06, 0.03, 0.03]
CATEGORIES = np.array(["grocery", "fuel", "travel", "electronics", "dining", "gaming"])
CATEGORY_SHARES = [0.3, 0.2, 0.1, 0.1, 0.25, 0.05]
CHANNELS = np.array(["pos", "online", "atm"])


def make_transactions(
    rows: int, seed: int = 42, shift: float = 0.0, fraud_rate: float = 0.02, cards: int = 2_000
) -> pd.DataFrame:
    """`rows` card transactions over 30 days, time-ordered; `shift` >= 0 distorts them."""
    rng = np.random.default_rng(seed)
    shift = max(0.0, float(shift))
    fraud_rate = min(0.5, fraud_rate * (1 + shift))
    card = rng.integers(0, cards, rows)
    home = rng.choice(COUNTRIES, cards, p=HOME_SHARES)
    typical = rng.lognormal(3.5 + 0.5 * shift, 0.6, cards)
    fraud = rng.random(rows) < fraud_rate

    def signal(share: float) -> np.ndarray:
        # each fraud signal shows on only part of the frauds, so no single rule catches them
        return fraud & (rng.random(rows) < share)

    amount = typical[card] * rng.lognormal(0.0, 0.5, rows)
    big = signal(0.6)
    amount[big] *= rng.lognormal(1.2, 0.6, int(big.sum()))
    hour = rng.normal(14 + 3 * shift, 4, rows) % 24
    night = signal(0.5)
    hour[night] = rng.uniform(0, 6, int(night.sum()))
    day = rng.integers(0, 30, rows)
    timestamp = pd.Timestamp("2024-01-01") + pd.to_timedelta(day * 86_400 + hour * 3_600, unit="s")
    country = home[card].copy()
    travels = rng.random(rows) < min(0.9, 0.03 * (1 + 4 * shift))
    country[travels] = rng.choice(COUNTRIES, int(travels.sum()))
    abroad = signal(0.55)
    country[abroad] = rng.choice(COUNTRIES[4:], int(abroad.sum()))
    online = min(0.9, 0.3 * (1 + shift))
    channel = rng.choice(CHANNELS, rows, p=[(1 - online) * 6 / 7, online, (1 - online) / 7])
    channel[signal(0.6)] = "online"
    category = rng.choice(CATEGORIES, rows, p=CATEGORY_SHARES)
    odd = signal(0.5)
    category[odd] = rng.choice(CATEGORIES[[2, 3, 5]], int(odd.sum()))
    frame = pd.DataFrame(
        {
            "transaction_id": np.arange(rows, dtype=np.int64),
            "card_id": card.astype(np.int64),
            "timestamp": timestamp,
            "amount": amount.round(2),
            "country": country,
            "home_country": home[card],
            "channel": channel,
            "category": category,
            "is_fraud": fraud.astype(np.int8),
        }
    )
    return frame.sort_values("timestamp", ignore_index=True)


def write(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if out.suffix == ".csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(out)  # a reader never sees half a file


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="transactions (default 50000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--shift",
        type=float,
        default=0.0,
        help="distribution shift, 0 for none; 0.5 is a clear drift (default 0)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("data/transactions.parquet"),
        help="where to write; .csv for CSV, else Parquet (default data/transactions.parquet)",
    )
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    if args.shift < 0:
        parser.error("--shift must be 0 or more")
    frame = make_transactions(args.rows, args.seed, args.shift)
    write(frame, args.out)
    print(
        f"wrote {len(frame):,} transactions ({frame['is_fraud'].mean():.2%} fraud, "
        f"seed {args.seed}, shift {args.shift:g}) to {args.out}"
    )
    return args.out


if __name__ == "__main__":
    main()
