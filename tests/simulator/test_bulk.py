"""`mdecost simulator generate`: a bulk estate written straight into the lake."""

from datetime import UTC, datetime

import polars as pl

from flows.lake import dataset_files, scan_dataset
from flows.simulator.bulk import generate_lake
from transforms.billing import LIST_PRICE_USD_PER_HOUR

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_bulk_estate_is_partitioned_like_collect_and_bills_its_own_hours(tmp_path):
    # 600 machines: round(600 / 250) = 2 subscriptions; 2 months before Nov 1 = Sep and Oct.
    summary = generate_lake(tmp_path, machines=600, months=2, seed=3, now=NOW)
    assert summary.subscriptions == 2
    assert summary.window_start == datetime(2026, 9, 1, tzinfo=UTC)
    # Per subscription: inventory + pricings, then power events + costs for each of 2 months.
    assert summary.files == 2 * (2 + 2 * 2)
    power_files = dataset_files(tmp_path, "power_events")
    assert sorted({p.parent.parent.name for p in power_files}) == ["month=2026-09", "month=2026-10"]

    events = scan_dataset(tmp_path, "power_events").collect()
    statuses = events.group_by("correlation_id", "operation").agg(pl.col("status").sort())
    expected = {"write": ["Started", "Succeeded"]}
    for operation, seen in statuses.group_by("operation").agg(pl.col("status").unique()).rows():
        assert [list(s) for s in seen] == [
            expected.get(operation, ["Accepted", "Started", "Succeeded"])
        ]

    costs = scan_dataset(tmp_path, "costs").collect()
    defender = costs.filter(pl.col("meter_category") == "Microsoft Defender for Cloud")
    assert defender.height > 0
    rates = defender.select(
        rate=pl.col("billed_cost") / pl.col("consumed_quantity"),
        plan=pl.col("sku_meter").str.extract(r"(P\d)"),
    ).unique()
    for rate, plan in rates.rows():
        assert abs(rate - LIST_PRICE_USD_PER_HOUR[plan]) < 1e-12
    assert costs["consumed_quantity"].max() <= 24.0
    assert costs["charge_period_start"].min() == datetime(2026, 9, 1, tzinfo=UTC)
    inventory = scan_dataset(tmp_path, "inventory").collect()
    assert inventory["snapshot_at"].unique().to_list() == [NOW]
    # Arc machines too (issue 14): on premises, AWS and GCP, Connected, billed for Defender only.
    arc = inventory.filter(pl.col("machine_kind") == "arc")
    assert set(arc["provider"]) == {"on_premises", "aws", "gcp"}
    assert set(arc["power_state"]) == {"connected"}
    arc_ids = arc["resource_id"].implode()
    assert set(costs.filter(pl.col("resource_id").is_in(arc_ids))["meter_category"]) == {
        "Microsoft Defender for Cloud"
    }
