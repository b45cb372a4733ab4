"""The command line: every command explains itself; errors are one line on stderr and exit 1 (usage errors 2)."""

import subprocess
import sys

import pytest

from imagerank.cli import COMMANDS, build_parser, main


def test_every_command_has_help(capsys):
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: imagerank " + command in capsys.readouterr().out


def test_parser_lists_every_command():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(choices) == set(COMMANDS)


def test_unknown_format_is_a_clear_error(tmp_path):
    bad = tmp_path / "catalog.xlsx"
    bad.write_text("not a catalog")
    done = subprocess.run([sys.executable, "-m", "imagerank.cli", "ingest", str(bad), "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "unknown catalog format '.xlsx'" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_lookup_without_a_store_says_what_to_do(tmp_path, capsys):
    assert main(["lookup", "--workdir", str(tmp_path), "some-id"]) == 1
    assert "run `imagerank recalculate`" in capsys.readouterr().err
    assert main(["lookup", "--workdir", str(tmp_path)]) == 1
    assert "no image ids given" in capsys.readouterr().err
