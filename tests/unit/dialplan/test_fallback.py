"""The shipped ARI entry (dialplan/callproof.conf) falls back to the AGI flow when
``Stasis()`` fails: checked on the text Asterisk loads (the sandbox tests run it)."""

from __future__ import annotations

import re

from callproof.dialplan import directory


def contexts(name: str) -> dict[str, list[str]]:
    """``[context]`` -> its dialplan lines (``exten =>`` / ``same =>``), comments dropped."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in (directory() / name).read_text().splitlines():
        line = raw.split(";", 1)[0].strip() if not raw.lstrip().startswith(";") else ""
        if m := re.fullmatch(r"\[([\w-]+)\]", line):
            current = out.setdefault(m[1], [])
        elif line and current is not None:
            current.append(line)
    return out


ARI = contexts("callproof.conf")
AGI = contexts("callproof-agi.conf")


def app_of(line: str) -> str:
    """``same => n(label),App(args)`` -> ``App(args)``."""
    return re.sub(r"^(?:exten\s*=>\s*[^,]+,|same\s*=>\s*)[^,]+,", "", line)


def app_args(lines: list[str], app: str) -> list[str]:
    return [m[1] for line in lines if (m := re.search(rf"\b{app}\((.*)\)$", line))]


def test_a_failed_stasis_goes_to_the_fallback_unless_it_is_none():
    run = ARI["callproof-entry-run"]
    stasis = next(i for i, line in enumerate(run) if "Stasis(" in line)
    after = run[stasis + 1:]
    assert 'GotoIf($["${STASISSTATUS}" = "SUCCESS"]?done)' in after[0]
    assert after[1].endswith('GotoIf($["${CALLPROOF_FALLBACK}" != "none"]?callproof-fallback,s,1)')
    assert after[2].endswith("Set(CALLPROOF_STATUS=app_unavailable)")  # CALLPROOF_FALLBACK=none: as before
    assert after[3].endswith("(done),Goto(callproof-handoff,s,1)")


def test_the_fallback_runs_the_agi_flow_with_the_stasis_arguments():
    stasis = app_args(ARI["callproof-entry-run"], "Stasis")[0].split(",")
    fallback = ARI["callproof-fallback"]
    (agi,) = app_args(fallback, "AGI")
    target, step, *args = agi.split(",")
    assert target == "${CALLPROOF_FALLBACK_AGI}" and step == "all"
    assert args == [*stasis[1:], "fallback"]  # DID, linkedid, language, retention class, entry context
    assert app_args(AGI["callproof-agi-run"], "AGI")[0].split(",")[2:] == stasis[1:]  # same as the AGI entry
    text = "\n".join(fallback)
    assert "Set(CALLPROOF_FALLBACK_AGI=callproof-agi)" in text  # classic AGI by default
    assert '$["${CALLPROOF_FALLBACK}" != "fastagi"]' in text
    assert "Set(CALLPROOF_FALLBACK_AGI=${CALLPROOF_FASTAGI})" in text
    assert "Set(CALLPROOF_FALLBACK_AGI=agi://127.0.0.1:4573/callproof)" in text
    assert "IF(" not in text  # IF() splits its branches at the URL's colons
    push = next(i for i, line in enumerate(fallback) if "hangup_handler_push)=callproof-fallback-finalise" in line)
    run = next(i for i, line in enumerate(fallback) if "AGI(" in line)
    assert push < run, "the hangup handler must be in place before the flow starts recording"


def test_a_fallback_that_cannot_run_routes_the_caller_with_the_reason():
    fallback = ARI["callproof-fallback"]
    run = next(i for i, line in enumerate(fallback) if "AGI(" in line)
    after = fallback[run + 1:]
    assert after[0].endswith('GotoIf($["${CALLPROOF_STATUS}" != ""]?done)')
    assert [app_of(line) for line in after[1:4]] == [
        "Set(CHANNEL(hangup_handler_pop)=)", "Set(CALLPROOF_STATUS=app_unavailable)",
        "Set(CALLPROOF_REASON=agi_${AGISTATUS})"]
    assert after[4].endswith("(done),Goto(callproof-handoff,s,1)")


def test_the_fallback_finalises_like_the_agi_contexts():
    mine = [app_of(line) for line in ARI["callproof-fallback-finalise"]]
    theirs = [app_of(line) for line in AGI["callproof-agi-finalise"]]
    assert mine == [t.replace("callproof-agi,", "${CALLPROOF_FALLBACK_AGI},") for t in theirs]
    assert mine[0] == "StopMixMonitor()"


def test_contexts_are_not_defined_twice_across_the_shipped_files():
    """An admin includes several files: a context in two of them would merge (or clash)."""
    fastagi = contexts("callproof-fastagi.conf")
    names = [*ARI, *AGI, *fastagi]
    assert len(names) == len(set(names))


def test_the_request_ivr_keeps_app_unavailable():
    entry = "\n".join(ARI["callproof-request-entry"])
    assert "Set(CALLPROOF_STATUS=app_unavailable)" in entry and "callproof-fallback" not in entry
