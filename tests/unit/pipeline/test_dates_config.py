from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline import dates
from pipeline.config import parse_config_text
from pipeline.errors import ConfigError


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9998, 1, 1),
                    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5))])))
def test_dates_roundtrip_to_z(moment: dt.datetime) -> None:
    iso = dates.normalise(moment)
    assert iso.endswith("Z")
    assert dates.normalise(iso) == iso
    assert dates.to_utc(iso) == moment.replace(microsecond=0)


def test_dates_reject_garbage() -> None:
    with pytest.raises(dates.DateParseError, match="ISO 8601"):
        dates.normalise("next tuesday")


def test_config_defaults_and_errors() -> None:
    cfg = parse_config_text('[site]\ntitle = "X"\nbase_url = "https://x.org/"\n')
    assert cfg.title == "X"
    assert cfg.base_url == "https://x.org"
    assert cfg.branch == "main"
    with pytest.raises(ConfigError, match=r"unknown key site\.titel"):
        parse_config_text('[site]\ntitel = "X"\n')
    with pytest.raises(ConfigError, match="page_size"):
        parse_config_text("[site]\npage_size = 0\n")
    with pytest.raises(ConfigError, match=r"flowcms\.toml"):
        parse_config_text("[site\n")


@given(st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2200, 1, 1)))
def test_display_of_a_normalised_instant_is_its_days(moment: dt.datetime) -> None:
    """The ``date`` filter caches per day; an instant shows what its own parse shows."""
    iso = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert dates.display(iso) == dates._display(iso)
