import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_masked_attention.io import append_row, atomic_path, read_rows, write_text_atomic


def test_append_row_round_trip(tmp_path):
    path = tmp_path / "sub" / "rows.csv"
    assert read_rows(path).empty
    append_row(path, dict(method="a", seed=0, score=1.5))
    append_row(path, dict(method="b", seed=1, score=2.5))
    table = read_rows(path)
    assert table.to_dict("records") == [dict(method="a", seed=0, score=1.5), dict(method="b", seed=1, score=2.5)]
    assert sorted(p.name for p in path.parent.iterdir()) == ["rows.csv"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5))
def test_rewriting_a_csv_keeps_every_float_digit(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("rows") / "rows.csv"
    for value in values:
        append_row(path, dict(score=value))  # each append reads the file and writes it again
    assert read_rows(path)["score"].tolist() == values


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half-writ")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_written_files_get_the_permissions_of_a_plain_open(tmp_path):
    import os

    write_text_atomic(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    assert os.stat(tmp_path / "atomic.txt").st_mode == os.stat(tmp_path / "plain.txt").st_mode


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF")])
def test_save_figure_writes_the_suffix_format_and_closes_the_figure(tmp_path, suffix, magic):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sb3_masked_attention.io import save_figure

    kept, closed = plt.figure(), plt.figure()
    save_figure(kept, tmp_path / f"kept{suffix}", close=False)
    save_figure(closed, tmp_path / f"closed{suffix}")
    assert plt.fignum_exists(kept.number) and not plt.fignum_exists(closed.number)
    plt.close(kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"closed{suffix}", f"kept{suffix}"])  # no temporaries
    assert all(p.read_bytes().startswith(magic) for p in tmp_path.iterdir())
