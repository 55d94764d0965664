"""Country names and codes to ISO 3166-1 alpha-2 (``HONG KONG`` and ``Hong Kong`` become ``HK``)."""

from __future__ import annotations

from functools import lru_cache

import pyarrow as pa
import pycountry

# Names providers use that pycountry spells otherwise.
ALIASES = {
    "hong kong sar": "HK", "hongkong": "HK", "macau": "MO", "macao sar": "MO", "taiwan": "TW",
    "south korea": "KR", "korea": "KR", "russia": "RU", "vietnam": "VN", "uk": "GB", "great britain": "GB",
    "united states of america": "US", "usa": "US", "mainland china": "CN", "china mainland": "CN",
}


@lru_cache(maxsize=1)
def name_table() -> dict[str, str]:
    """Lower-case names and codes (alpha-2, alpha-3, common and official names) -> alpha-2."""
    table: dict[str, str] = {}
    for c in pycountry.countries:
        for attr in ("alpha_2", "alpha_3", "name", "common_name", "official_name"):
            value = getattr(c, attr, None)
            if value:
                table[value.lower()] = c.alpha_2
    table.update(ALIASES)
    return table


def install(con, temp: bool = True) -> None:
    """Create the ``country_names(name, alpha2)`` table that ``transform`` joins country columns against
    (TEMP, or in the current database for every cursor of a connection to see)."""
    names = pa.table({"name": list(name_table()), "alpha2": list(name_table().values())})
    con.register("country_names_arrow", names)
    con.execute(f"CREATE OR REPLACE {'TEMP ' if temp else ''}TABLE country_names AS SELECT * FROM country_names_arrow")
    con.unregister("country_names_arrow")
