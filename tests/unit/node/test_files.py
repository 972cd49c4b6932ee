"""kagent.node.files.prune_siblings: removes the superseded dirs next to the kept one, never
follows a symlink, never raises."""

from __future__ import annotations

from pathlib import Path

from kagent.node.files import prune_siblings


def test_removes_other_dirs_and_keeps_the_current_one(tmp_path: Path) -> None:
    base = tmp_path / "containerd-hosts"
    keep, old1, old2 = base / "aaaaaaaaaaaa", base / "bbbbbbbbbbbb", base / "cccccccccccc"
    for d in (keep, old1, old2):
        (d / "docker.io").mkdir(parents=True)
        (d / "docker.io" / "hosts.toml").write_text("server = 'x'\n")
    removed, errors = prune_siblings(keep)
    assert sorted(removed) == [old1, old2] and errors == []
    assert sorted(base.iterdir()) == [keep] and (keep / "docker.io" / "hosts.toml").exists()


def test_never_follows_a_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "precious").mkdir(parents=True)
    base = tmp_path / "containerd-hosts"
    keep = base / "aaaaaaaaaaaa"
    keep.mkdir(parents=True)
    (base / "link").symlink_to(outside)  # a link next to it: left alone
    old = base / "bbbbbbbbbbbb"
    old.mkdir()
    (old / "inner-link").symlink_to(outside)  # a link inside a removed dir: unlinked, not followed
    (base / "a-file").write_text("x")
    removed, errors = prune_siblings(keep)
    assert removed == [old] and errors == []
    assert (outside / "precious").is_dir()
    assert sorted(p.name for p in base.iterdir()) == ["a-file", "aaaaaaaaaaaa", "link"]


def test_a_missing_parent_is_an_error_not_an_exception(tmp_path: Path) -> None:
    removed, errors = prune_siblings(tmp_path / "nope" / "aaaa")
    assert removed == [] and len(errors) == 1 and "nope" in errors[0]
