"""A scripted Asterisk on the other end of an AGI link: answers AGI commands as
Asterisk 22 does (``200 result=...``, ``511`` on a dead channel)."""

from __future__ import annotations

from callproof.agi_scripts.channel import parse_reply


class FakeAsterisk:
    """``hangup_in``: 'enter' | 'consent' | 'language_menu' | 'protocol' | 'record' -- the
    far end hangs up there; ``hangup_cause``: the channel's HANGUPCAUSE afterwards (Q.850).
    ``keys``: what each ``WAIT FOR DIGIT`` hears in turn (``""``: nothing, a timeout)."""

    def __init__(self, *, caller="11987654321", uniqueid="1700000000.1", args=("all", "551130000000",
                 "1700000000.0", ""), hangup_in=None, mixmonitor_fails=False, playback_status="SUCCESS",
                 hangup_cause: int | None = None, keys: list[str] | None = None):
        self.env = {"agi_uniqueid": uniqueid, "agi_language": "en", "agi_extension": "s"}
        for i, a in enumerate(args, 1):
            self.env[f"agi_arg_{i}"] = a
        self.vars = {"CALLERID(num)": caller, "CALLERID(name)": "Cliente"}
        if hangup_cause is not None:
            self.vars["HANGUPCAUSE"] = str(hangup_cause)
        self.hangup_in = hangup_in
        self.mixmonitor_fails = mixmonitor_fails
        self.playback_status = playback_status
        self.dead = False
        self.commands: list[str] = []
        self.played: list[str] = []
        self.keys = list(keys or [])

    async def command(self, line: str):
        self.commands.append(line)
        if self.dead and not line.startswith("GET VARIABLE"):
            return parse_reply("511 Command Not Permitted on a dead channel or intercept routine")
        verb = line.split(" ")
        if line == "ANSWER":
            if self.hangup_in == "enter":
                self.dead = True
                return parse_reply("200 result=-1")
            return parse_reply("200 result=0")
        if line.startswith("GET VARIABLE"):
            name = line.split(" ", 2)[2].strip('"')
            value = self.vars.get(name)
            return parse_reply(f"200 result=1 ({value})" if value is not None else "200 result=0")
        if line.startswith("SET VARIABLE"):
            _, _, name, value = line.split(" ", 3)
            self.vars[name] = value.strip('"')
            return parse_reply("200 result=1")
        if line.startswith("EXEC Playback"):
            files = line.split(" ", 2)[2].strip('"')
            what = ("consent" if files.endswith("consent") else "language_menu" if "language-option" in files
                    else "language_invalid" if "language-invalid" in files else "protocol")
            self.played.append(what)
            if self.hangup_in == what:
                self.dead = True
                return parse_reply("200 result=-1")
            self.vars["PLAYBACKSTATUS"] = self.playback_status
            return parse_reply("200 result=0")
        if line.startswith("EXEC MixMonitor"):
            if self.hangup_in == "record":
                self.dead = True
                return parse_reply("200 result=-1")
            if not self.mixmonitor_fails:
                self.vars["MIXMONITOR_FILENAME"] = line.split(" ", 2)[2].strip('"').split(",")[0]
            return parse_reply("200 result=0")
        if line == "CHANNEL STATUS":
            return parse_reply("200 result=6")
        if verb[0] == "WAIT":
            key = self.keys.pop(0) if self.keys else ""
            return parse_reply(f"200 result={ord(key) if key else 0}")
        return parse_reply("510 Invalid or unknown command")

    def callproof_vars(self) -> dict[str, str]:
        return {k: v for k, v in self.vars.items() if k.startswith("CALLPROOF_")}
