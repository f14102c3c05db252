"""Checks on files: the secret files' modes, the prompts and digit sounds of every
configured language, and the folders the service writes (database, recordings)."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from callproof.callflow.language_choice import any_menu
from callproof.config import Config, Sources
from callproof.prompts import CALL_PROMPTS as FLOW_PROMPTS
from callproof.prompts import MENU_PROMPTS, PromptCatalogue
from callproof.prompts.catalogue import PromptNotFoundError

from .access import R, W, Who, X, denied
from .report import Result, fail, ok, warn

#: The prompts a call needs in each language (the request IVR's are checked when it is reachable).
CALL_PROMPTS = FLOW_PROMPTS
#: Where Debian's Asterisk keeps its sounds (astdatadir/sounds).
SOUNDS = PurePosixPath("/usr/share/asterisk/sounds")
SOUND_EXTENSIONS = (".wav", ".gsm", ".ulaw", ".alaw", ".sln", ".g722", ".sln16")


def check_secret_files(config: Config, sources: Sources) -> Result:
    """No file holding a secret is readable (or writable) by every user."""
    files: list[tuple[str, Path]] = []
    if sources.config_file is not None:
        files.append(("configuration", sources.config_file))
    if sources.secrets_file is not None and sources.secrets_file.exists():
        files.append(("secrets", sources.secrets_file))
    if config.evidence.signing_key is not None:
        files.append(("signing key", config.evidence.signing_key))
    seen, bad = [], []
    for what, path in files:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError as exc:
            bad.append(f"{what} {path}: {exc.strerror}")
            continue
        seen.append(f"{path} {mode:04o}")
        holds_secret = what != "configuration" or _toml_holds_secret(path)
        if mode & stat.S_IWOTH or (holds_secret and mode & stat.S_IROTH):
            bad.append(f"{what} {path} is mode {mode:04o}")
    if bad:
        return fail("secret-files", "; ".join(bad) + " (every user may read it)",
                    "chmod 0600 (secrets, key) or 0640 root:<service group> (configuration) on each")
    if not seen:
        return ok("secret-files", "no secret files (secrets only from the environment)")
    return ok("secret-files", ", ".join(seen))


def _toml_holds_secret(path: Path) -> bool:
    import tomllib

    from callproof.config.checks import _secret_keys
    try:
        return any(True for _ in _secret_keys(tomllib.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError):
        return True


def inside(root: Path, path: PurePosixPath) -> Path:
    """``path`` as Asterisk sees it when it runs chrooted at ``root``: symbolic links are
    followed one component at a time, an absolute target starting again at ``root``
    (Debian's sounds/en -> /etc/alternatives/asterisk-prompt-en -> ...)."""
    parts = list(path.parts[1:])
    current = PurePosixPath("/")
    hops = 0
    while parts:
        current = current / parts.pop(0)
        host = root / current.relative_to("/")
        if host.is_symlink() and hops < 40:
            hops += 1
            target = PurePosixPath(os.readlink(host))
            parts = [*target.parts[1:], *parts] if target.is_absolute() else [*target.parts, *parts]
            current = PurePosixPath("/") if target.is_absolute() else current.parent
    return root / current.relative_to("/")


def _sound_file(root: Path, language: str, relative: str, digit: str) -> Path | None:
    """The file Asterisk would play for ``sound:<relative>/<digit>`` on a channel in ``language``."""
    for folder in (SOUNDS / language / relative, SOUNDS / language.split("_")[0] / relative, SOUNDS / relative):
        for ext in SOUND_EXTENSIONS:
            candidate = inside(root, folder / f"{digit}{ext}")
            if candidate.is_file():
                return candidate
    return None


def check_prompts(config: Config, user: Who, asterisk_root: Path = Path("/"),
                  optional: tuple[str, ...] = ()) -> list[Result]:
    """Each configured language: its prompts and the ten digits exist and the service user can read them.

    ``optional``: a jurisdiction's languages offered where installed (callproof/prompts/startup.py):
    one without its files is a warning (the service starts without it), unless named explicitly."""
    from callproof.prompts.language_names import explicitly_named

    optional = tuple(lang for lang in optional if lang not in explicitly_named(config))
    catalogue = PromptCatalogue(config.prompts.directory, default_language=config.general.default_language,
                                languages=config.general.languages, custom_dir=config.prompts.custom_directory)
    results = []
    names = (*CALL_PROMPTS, *MENU_PROMPTS) if any_menu(config) else CALL_PROMPTS
    for language in catalogue.languages:
        missing, unreadable, files = [], [], []
        for name in names:
            try:
                files.append(catalogue.prompt(name, language).path)
            except PromptNotFoundError:
                missing.append(f"{name}.wav")
        for digit in "0123456789":
            try:
                media = catalogue.digit_media(language, digit)
            except PromptNotFoundError:
                missing.append(f"digits/{digit}.wav")
                continue
            target = media.removeprefix("sound:")
            if target.startswith("/"):
                found: Path | None = next((Path(target + ext) for ext in SOUND_EXTENSIONS
                                           if Path(target + ext).is_file()), None)
            else:
                found = _sound_file(asterisk_root, language, target.rsplit("/", 1)[0], digit)
            if found is None:
                missing.append(f"{target} (Asterisk sound)" if not target.startswith("/") else target)
            else:
                files.append(found)
        for path in files:
            why = denied(path, user, R)
            if why:
                unreadable.append(why)
        if missing:
            core = catalogue.core_digits.get(language)
            fix = (f"apt install asterisk-core-sounds-{language.split('_')[0]} (Asterisk's {core})"
                   if core and all("Asterisk sound" in m for m in missing) else
                   f"callproof prompts generate (writes {config.prompts.directory}), or record "
                   f"custom/{language}/NAME.wav")
            found_missing = f"missing: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
            if language in optional:
                results.append(warn(f"prompts {language}", f"{found_missing}; not offered to callers until"
                                    " installed (the jurisdiction offers it where installed)", fix))
            else:
                results.append(fail(f"prompts {language}", found_missing, fix))
        elif unreadable:
            results.append(fail(f"prompts {language}", unreadable[0],
                                f"make the prompts readable by {user.name} (chmod -R o+rX or chgrp it)"))
        else:
            results.append(ok(f"prompts {language}", f"{len(names)} prompts and 10 digits, "
                                                     f"readable by {user.name}"))
    return results


def _writable_folder(check: str, folder: Path, user: Who, what: str) -> Result:
    why = denied(folder, user, W | X)
    if why is None:
        return ok(check, f"{what} {folder} writable by {user.name}")
    if why.endswith("does not exist"):
        return fail(check, f"{what} {folder} does not exist",
                    f"install -d -o {user.name} -g {user.name} -m 0750 {folder}")
    if " cannot enter " in why:
        return fail(check, why, f"let {user.name} through that folder (chmod o+x, or chgrp it to a group of "
                                f"{user.name} and chmod g+x)")
    return fail(check, why, f"chown {user.name}: {folder} (and chmod u+rwx)")


def check_storage(config: Config, user: Who) -> list[Result]:
    """The database's folder, its files, the sweep's lock, and the recordings root."""
    db = config.storage.database
    result = _writable_folder("database", db.parent, user, "database folder")
    if result.status == "OK":
        from callproof.retention.run import lock_path
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), lock_path(config)):
            if path.exists() and (why := denied(path, user, R | W)):
                result = fail("database", why, f"chown {user.name}: {path} (made by a command run as root "
                                               "before callproof acted as the service user)")
                break
    return [result, _writable_folder("recordings", config.recording.root, user, "recordings root")]


def check_service_user_sees(user: Who, sources: Sources) -> Result | None:
    """A FAIL when the service user cannot read the configuration file itself (the service would not start)."""
    if sources.config_file is None:
        return None
    why = denied(sources.config_file, user, R)
    if why:
        return fail("config", why, f"chgrp {user.name} {sources.config_file}; chmod 0640 {sources.config_file}")
    return None
