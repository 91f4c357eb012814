"""core.paths.confined: config- or server-supplied paths stay strictly inside their root."""
import pytest

from core.config import ConfigError
from core.paths import confined


def test_confined_accepts_a_path_inside_the_root(tmp_path):
    assert confined(tmp_path, "a/b.txt", "k") == tmp_path / "a" / "b.txt"


@pytest.mark.parametrize("bad", ["", ".", "  ", "../x", "a/../../x", "a/..", "/etc/passwd", "a\\..\\x"])
def test_confined_refuses_escapes_and_the_root_itself(tmp_path, bad):
    with pytest.raises(ConfigError, match="train.name"):
        confined(tmp_path, bad, "train.name")


def test_confined_refuses_a_symlink_out_of_the_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="leaves"):
        confined(tmp_path / "root", "link/x", "data.layout")
