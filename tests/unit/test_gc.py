import datetime

import pytest

from mlflow_stack import StackError
from mlflow_stack.gc import ArtifactDeleter, Counts, format_bytes, parse_duration
from mlflow_stack.gc_schedule import next_run, parse_time

UTC = datetime.timezone.utc


@pytest.mark.parametrize("text, seconds", [
    ("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("0s", 0), (" 7d ", 7 * 86400),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "3x", "1.5d", "-1d", "1d2h", "30 d", "30D"])
def test_bad_durations_name_the_accepted_forms(text):
    with pytest.raises(StackError) as e:
        parse_duration(text)
    assert "30d, 12h, 90m or 0s" in str(e.value)
    assert "\n" not in str(e.value) and str(e.value).endswith("0s.")


def test_format_bytes():
    assert [format_bytes(n) for n in (0, 1023, 1024, 5 * 2**20, 3 * 2**40)] == [
        "0 B", "1023 B", "1.0 KiB", "5.0 MiB", "3072.0 GiB"]


@pytest.mark.parametrize("uri, prefix", [
    ("mlflow-artifacts:/1/abc/artifacts", "artifacts/1/abc/artifacts"),
    ("mlflow-artifacts://mlflow:5000/1/abc/artifacts/", "artifacts/1/abc/artifacts"),
    ("mlflow-artifacts:/7", "artifacts/7"),
    ("s3://mlflow/artifacts/1/abc/artifacts", "artifacts/1/abc/artifacts"),
    ("http://host:5000/api/2.0/mlflow-artifacts/artifacts/2/x/artifacts", "artifacts/2/x/artifacts"),
    ("mlflow-artifacts:/1/../../etc", "etc"),  # delete() then refuses it: outside artifacts/
    ("s3://other-bucket/artifacts/1", None),
    ("file:///tmp/mlruns/1", None),
    ("http://host/some/file", None),
    (None, None),
])
def test_artifact_uris_map_onto_the_bucket_as_the_server_does(uri, prefix):
    assert ArtifactDeleter(None, "mlflow", True, Counts()).key_prefix(uri) == prefix


@pytest.mark.parametrize("prefix", ["artifacts", "", "etc/passwd", "other/1/abc"])
def test_never_deletes_the_whole_destination_or_outside_it(prefix):
    with pytest.raises(ValueError):
        ArtifactDeleter(None, "mlflow", False, Counts()).delete(prefix)


def test_schedule_times():
    assert parse_time("03:30") == datetime.time(3, 30)
    assert parse_time("7:05:09") == datetime.time(7, 5, 9)
    for bad in ("24:00", "3:60", "0330", "3pm", ""):
        with pytest.raises(StackError, match="HH:MM"):
            parse_time(bad)


def test_next_run_is_today_or_tomorrow():
    at = datetime.time(3, 30)
    before = datetime.datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert next_run(before, at) == datetime.datetime(2026, 3, 1, 3, 30, tzinfo=UTC)
    exactly = datetime.datetime(2026, 3, 1, 3, 30, tzinfo=UTC)
    assert next_run(exactly, at) == datetime.datetime(2026, 3, 2, 3, 30, tzinfo=UTC)
    late = datetime.datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert next_run(late, at) == datetime.datetime(2027, 1, 1, 3, 30, tzinfo=UTC)
