"""The pure parts of scripts/images.py: apt mirror, build context, pip settings, input hash."""

from __future__ import annotations

import configparser
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    # scripts/ is not a package; load the module the way `python scripts/images.py` imports it.
    spec = importlib.util.spec_from_file_location(
        "image_inputs", ROOT / "scripts" / "image_inputs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


inputs = _load()

DEB822 = """\
Types: deb
URIs: http://mirror.test/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.test/debian
Suites: bookworm
Components: main

Types: deb
# a comment
URIs: http://mirror.test/debian/
Suites: bookworm bookworm-updates
Components: main
"""


@pytest.mark.parametrize(
    ("sources", "expected"),
    [
        ([DEB822], "http://mirror.test/debian"),
        (
            ["deb [arch=amd64 signed-by=/k.gpg] http://one.test/debian bookworm main\n"],
            "http://one.test/debian",
        ),
        (
            ["# deb http://off.test/debian bookworm main\ndeb http://on.test/d bookworm main"],
            "http://on.test/d",
        ),
        (["deb http://a.test/debian bookworm-updates main\n", DEB822], "http://mirror.test/debian"),
        (["Types: deb\nURIs: http://x.test/d\nSuites: bookworm\nEnabled: no\n"], None),
        (["deb-src http://src.test/debian bookworm main\n"], None),
    ],
)
def test_debian_mirror_is_the_deb_source_of_the_suite(
    sources: list[str], expected: str | None
) -> None:
    assert inputs.debian_mirror(sources, "bookworm") == expected


def test_inputs_hash_ignores_order_and_sees_every_byte_and_name() -> None:
    entries = [("a.py", b"x = 1\n"), ("b/c.py", b"")]
    assert inputs.inputs_hash(entries) == inputs.inputs_hash(list(reversed(entries)))
    assert inputs.inputs_hash(entries) != inputs.inputs_hash([("a.py", b"x = 2\n"), entries[1]])
    assert inputs.inputs_hash(entries) != inputs.inputs_hash([("A.py", b"x = 1\n"), entries[1]])
    # A name and content are not confused by concatenation.
    assert inputs.inputs_hash([("ab", b"c")]) != inputs.inputs_hash([("a", b"bc")])


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("pyproject.toml", False),
        ("README.md", False),
        ("operator/modeldeploy/spec.py", False),
        ("serving_image/Dockerfile", False),
        ("serving_image/modeldeploy_serving/__pycache__/app.cpython-311.pyc", True),
        ("operator/modeldeploy/x.pyc", True),
        (".venv/bin/python", True),
        ("tests/unit/test_spec.py", True),
        ("operator", False),
        ("docs/api.md", True),
    ],
)
def test_the_project_dockerignore_admits_only_what_the_dockerfile_copies(
    path: str, ignored: bool
) -> None:
    rules = inputs.ignore_rules((ROOT / "serving_image" / "Dockerfile.dockerignore").read_text())
    assert inputs.is_ignored(path, rules) is ignored


def test_ignore_rules_last_match_wins_and_double_star_spans_directories() -> None:
    rules = inputs.ignore_rules("# c\n\n/build/\n**/*.log\n!keep/**/important.log\na?c\n")
    assert inputs.is_ignored("build/x/y", rules)
    assert inputs.is_ignored("x/y/z.log", rules)
    assert inputs.is_ignored("z.log", rules)
    assert not inputs.is_ignored("keep/important.log", rules)
    assert not inputs.is_ignored("keep/a/b/important.log", rules)
    assert inputs.is_ignored("abc", rules) and not inputs.is_ignored("abbc", rules)
    assert not inputs.is_ignored("src/main.py", rules)


HOST_PIP = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels file:///srv/more https://wheels.test/simple'
global.cert='/etc/ssl/files.pem'
global.index-url='https://index.test/simple'
global.no-cache-dir='false'
install.trusted-host='index.test'
site.index-url='https://ignored.test/simple'
"""


def test_parse_pip_config_lets_environment_win_over_files() -> None:
    settings = inputs.parse_pip_config(HOST_PIP)
    assert settings["cert"] == "/etc/ssl/certs/ca-certificates.crt"
    assert settings["index-url"] == "https://index.test/simple"
    assert settings["trusted-host"] == "index.test"
    assert settings["default-timeout"] == "180"
    assert inputs.local_find_links(settings) == ["/opt/wheels", "/srv/more"]


def test_rendered_pip_conf_points_at_the_mounted_ca_and_carries_only_index_settings() -> None:
    settings = inputs.parse_pip_config(HOST_PIP)
    rendered = inputs.render_pip_conf(settings, "/root/ca.pem", {"/srv/more": "/root/links-1"})
    parser = configparser.ConfigParser()
    parser.read_string(rendered)
    assert dict(parser["global"]) == {
        "cert": "/root/ca.pem",
        "default-timeout": "180",
        # /opt/wheels is not in the build (empty or missing on the host): dropped.
        "find-links": "/root/links-1 https://wheels.test/simple",
        "index-url": "https://index.test/simple",
        "trusted-host": "index.test",
    }


def test_rendered_pip_conf_without_a_ca_names_no_cert() -> None:
    rendered = inputs.render_pip_conf({"index-url": "https://i.test/simple"}, None, {})
    assert "cert" not in rendered
    assert "index-url = https://i.test/simple" in rendered
