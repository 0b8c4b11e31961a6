"""Where the base URL and the key come from: flags, then the environment, then a profile.

Profiles are written by `stocksync login` to `$STOCKSYNC_CONFIG`, or
`$XDG_CONFIG_HOME/stocksync/profiles.json` (default `~/.config/...`), readable by its
owner only (it holds API keys).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_PROFILE = "default"


def config_path() -> Path:
    explicit = os.environ.get("STOCKSYNC_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "stocksync" / "profiles.json"


def read_profiles(path: Path | None = None) -> dict[str, dict[str, Any]]:
    path = path or config_path()
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the profile file {path}: {exc}") from exc
    profiles = document.get("profiles") if isinstance(document, dict) else None
    if not isinstance(profiles, dict):
        raise ValueError(f"the profile file {path} has no 'profiles' object")
    return profiles


def save_profile(name: str, values: dict[str, str], path: Path | None = None) -> Path:
    path = path or config_path()
    profiles = read_profiles(path)
    profiles[name] = values
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({"profiles": profiles}, out, indent=2)
    os.replace(temporary, path)
    return path


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str | None
    admin_token: str | None


def resolve(url: str | None, api_key: str | None, admin_token: str | None, profile: str | None) -> Target:
    """Flags win over the environment (read by the flags themselves), which wins over the profile."""
    chosen = profile or DEFAULT_PROFILE
    profiles = read_profiles()
    if profile is not None and profile not in profiles:
        raise ValueError(f"no profile {profile!r} in {config_path()}; create it with `stocksync login`")
    saved = profiles.get(chosen, {})
    return Target(
        url=url or saved.get("url") or DEFAULT_URL,
        api_key=api_key or saved.get("api_key"),
        admin_token=admin_token or saved.get("admin_token"),
    )
