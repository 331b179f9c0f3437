"""The README's configuration table is the user's reference: it must name every setting."""

from __future__ import annotations

from pathlib import Path

from common.config import BusSettings, ProducerSettings, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_table_lists_every_setting() -> None:
    text = README.read_text()
    top_level = [name for name in Settings.model_fields if name not in {"streams", "bus", "producers", "detector"}]
    nested = [f"bus.{name}" for name in BusSettings.model_fields]
    producers = [f"producers.{name}" + (".*" if name in {"coinbase", "kraken"} else "")
                 for name in ProducerSettings.model_fields]
    missing = [name for name in [*top_level, *nested, *producers, "streams.*", "detector.*"]
               if f"| `{name}` |" not in text]
    assert missing == []
