"""The pure parts of scripts/images.py: which apt mirror, which build context, which pip settings,
and the hash that names a cached image. No I/O here, so each is a unit test away."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

# pip settings worth carrying into a build; everything else (cache, version check) the Dockerfile
# decides itself. `cert` is rewritten to where the build sees the host's CA bundle.
PIP_KEYS: Final = frozenset(
    {
        "index-url",
        "extra-index-url",
        "find-links",
        "trusted-host",
        "timeout",
        "default-timeout",
        "retries",
        "proxy",
        "no-index",
    }
)


def debian_mirror(sources: Iterable[str], suite: str) -> str | None:
    """The first `deb` URI apt uses for `suite` (not -security/-updates), from the texts of
    sources.list files in one-line or deb822 form."""
    for text in sources:
        for stanza in re.split(r"\n\s*\n", text):
            fields = _deb822_fields(stanza)
            if "uris" in fields:
                if (
                    fields.get("enabled", "yes").lower() != "no"
                    and "deb" in fields.get("types", "").split()
                    and suite in fields.get("suites", "").split()
                ):
                    return fields["uris"].split()[0].rstrip("/")
                continue
            for line in stanza.splitlines():
                words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                    return words[1].rstrip("/")
    return None


def _deb822_fields(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in stanza.splitlines():
        match = re.match(r"([A-Za-z-]+):\s*(.*)", line)
        if match and not line.startswith("#"):
            fields[match[1].lower()] = match[2].strip()
    return fields


def inputs_hash(entries: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over (name, content) pairs, independent of their order."""
    digest = hashlib.sha256()
    for name, data in sorted(entries):
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


@dataclass(frozen=True)
class IgnoreRule:
    exclude: bool
    pattern: re.Pattern[str]
    text: str


def ignore_rules(dockerignore: str) -> list[IgnoreRule]:
    """Docker's .dockerignore: one glob per line, `!` re-includes, the last match wins."""
    rules = []
    for raw in dockerignore.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        text = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        rules.append(IgnoreRule(not negate, re.compile(_glob_regex(text)), text))
    return rules


def _glob_regex(glob: str) -> str:
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return out


def is_ignored(path: str, rules: Sequence[IgnoreRule]) -> bool:
    """Whether the builder leaves `path` (relative, with /) out of the context. As in Docker, a
    pattern matches a path when it matches the path or one of its parent directories."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for rule in rules:
        if any(rule.pattern.fullmatch(prefix) for prefix in prefixes):
            ignored = rule.exclude
    return ignored


def parse_pip_config(listing: str) -> dict[str, str]:
    """`pip config list` output (`global.cert='/x'`, `:env:.find-links='/w'`) as {key: value};
    environment variables win over files, as in pip."""
    from_files: dict[str, str] = {}
    from_env: dict[str, str] = {}
    for line in listing.splitlines():
        match = re.fullmatch(r"([^.=]*)\.([\w-]+)='(.*)'", line.strip())
        if match and match[1] in {":env:", "global", "install"}:
            (from_env if match[1] == ":env:" else from_files)[match[2]] = match[3]
    return {**from_files, **from_env}


def local_find_links(settings: Mapping[str, str]) -> list[str]:
    """find-links entries that are directories on this host (they must be mounted to be seen)."""
    paths = (_local_path(link) for link in settings.get("find-links", "").split())
    return [path for path in paths if path is not None]


def _local_path(link: str) -> str | None:
    path = link.removeprefix("file://")
    return None if "://" in path else path


def render_pip_conf(
    settings: Mapping[str, str], ca_path: str | None, local_links: Mapping[str, str]
) -> str:
    """The pip.conf for the build: the host's index settings, its CA bundle at `ca_path`, and its
    local find-links directories at their paths in the build (`local_links`; others dropped)."""
    lines = [
        "# Made by scripts/images.py for one build; mounted, never part of the image.",
        "[global]",
    ]
    for key in sorted(settings):
        if key == "find-links":
            paths = [(link, _local_path(link)) for link in settings[key].split()]
            kept = [
                link if path is None else local_links[path]
                for link, path in paths
                if path is None or path in local_links
            ]
            if kept:
                lines.append(f"find-links = {' '.join(kept)}")
        elif key in PIP_KEYS:
            lines.append(f"{key} = {' '.join(settings[key].split())}")
    if ca_path:
        lines.append(f"cert = {ca_path}")
    return "\n".join(lines) + "\n"
