"""What a job costs an hour: the user's price, or SkyPilot's catalog price for what the job got.

``price_for`` decides, given the resources a backend reported for a job; the catalog lookup
(``chunkpilot.control.backends.sky_sdk.catalog_price``) is passed in, so this module imports no SkyPilot
and tests give it a seeded catalog. A price is looked up once per attempt, when the watcher
first learns the attempt's resources, and kept in its attempt record: status and report
never touch the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# (cloud, use_spot, instance_type=, accelerators=, region=, zone=) -> (USD per hour, instance type); LookupError
CatalogLookup = Callable[..., tuple[float, str]]


@dataclass(frozen=True)
class Price:
    per_hour: float | None  # what the job costs, as run (spot or not)
    on_demand_per_hour: float | None  # what it would cost on demand
    source: str  # where the prices come from, or why there is none


def user_price(per_hour: float | None, on_demand: float | None) -> Price | None:
    """The user's own prices (``--price-per-hour``, ``--on-demand-price-per-hour``), if given."""
    if per_hour is None:
        return None
    return Price(per_hour, on_demand, "--price-per-hour")


def price_for(resources: dict[str, Any], use_spot: bool | None, user: Price | None,
              catalog: CatalogLookup | None) -> Price:
    """The price of a job that runs on ``resources`` (a backend's report: cloud, region, zone,
    accelerators, instance_type, spot). The user's price wins; a missing on-demand price is
    still looked up in the catalog when the job runs on a cloud."""
    spot = resources.get("spot", use_spot)
    cloud = resources.get("cloud")
    priceable = bool(cloud) and cloud != "local" and bool(resources.get("instance_type") or resources.get("accelerators"))
    if user is not None:
        on_demand, source = user.on_demand_per_hour, user.source
        if on_demand is None and spot is False:  # it ran on demand: that is its on-demand price
            on_demand = user.per_hour
        if on_demand is None and spot and priceable and catalog is not None:
            try:
                on_demand, _ = _lookup(catalog, resources, False)
                source += "; on-demand from SkyPilot's catalog"
            except LookupError:
                pass
        return Price(user.per_hour, on_demand, source)
    if cloud == "local":
        return Price(None, None, "this machine: pass --price-per-hour to price it")
    if not priceable:
        return Price(None, None, "resources not known yet")
    if catalog is None:
        return Price(None, None, "no price catalog (pass --price-per-hour)")
    try:
        per_hour, instance_type = _lookup(catalog, resources, bool(spot))
    except LookupError as exc:
        return Price(None, None, f"{exc} (pass --price-per-hour)")
    on_demand = per_hour
    if spot:
        try:
            on_demand, _ = _lookup(catalog, {**resources, "instance_type": instance_type}, False)
        except LookupError:
            on_demand = None
    where = " ".join(str(x) for x in (cloud, resources.get("region") or "cheapest region", instance_type) if x)
    return Price(per_hour, on_demand, f"SkyPilot catalog: {where}{' spot' if spot else ''}")


def _lookup(catalog: CatalogLookup, resources: dict[str, Any], spot: bool) -> tuple[float, str]:
    """The catalog's price in the job's zone; where the catalog does not know the zone by that
    name (AWS catalogs list zone ids, jobs report zone names), the cheapest in its region."""
    args = dict(instance_type=resources.get("instance_type"), accelerators=resources.get("accelerators"),
                region=resources.get("region"), zone=resources.get("zone"))
    try:
        return catalog(str(resources["cloud"]), spot, **args)
    except LookupError:
        if args["zone"] is None:
            raise
        return catalog(str(resources["cloud"]), spot, **{**args, "zone": None})
