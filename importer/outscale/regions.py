from __future__ import annotations

# Public OUTSCALE Regions (docs.outscale.com, "Regions, Endpoints and Subregions Reference").
OUTSCALE_REGIONS: tuple[str, ...] = (
    "eu-west-2",
    "us-east-2",
    "us-west-1",
    "cloudgouv-eu-west-1",
    "ap-northeast-1",
)


OOS_HOSTS: frozenset[str] = frozenset(f"oos.{region}.outscale.com" for region in OUTSCALE_REGIONS)
