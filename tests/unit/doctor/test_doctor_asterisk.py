"""The doctor's Asterisk checks against stand-ins: a 401 names the account and ari.conf, an
unreachable ARI or AMI names Asterisk's HTTP / manager settings, the dialplan check names the
contexts missing; and ``callproof doctor`` with a bad configuration is one FAIL line, exit 1."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from callproof.cli import main
from callproof.config import AmiConfig, AriConfig, Config
from callproof.doctor.checks_asterisk import (
    check_ami,
    check_ari,
    check_dialplan,
    shipped_contexts,
    system_name_result,
)


async def test_ari_401_names_the_account(unused_tcp_port):
    async def refuse(request: web.Request) -> web.Response:
        assert request.headers["Authorization"].startswith("Basic ")
        return web.Response(status=401)

    app = web.Application()
    app.router.add_get("/ari/asterisk/info", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        config = dataclasses.replace(Config(), ari=AriConfig(url=f"http://127.0.0.1:{unused_tcp_port}/",
                                                             username="ops", password="x"))
        (result,) = await check_ari(config)
    finally:
        await runner.cleanup()
    assert result.status == "FAIL" and result.detail.startswith("HTTP 401 from")
    assert "refused the ARI login of account 'ops'" in result.fix and "ari.conf" in result.fix


async def test_unreachable_ari_and_ami_name_what_to_turn_on(unused_tcp_port):
    config = dataclasses.replace(Config(), ari=AriConfig(url=f"http://127.0.0.1:{unused_tcp_port}/"),
                                 ami=AmiConfig(port=unused_tcp_port))
    (ari,) = await check_ari(config)
    (ami,) = await check_ami(config)
    assert ari.status == ami.status == "FAIL"
    assert "http.conf [general] enabled = yes" in ari.fix
    assert "manager.conf [general] enabled = yes" in ami.fix and ami.check == "ami-login"


class Manager:
    def __init__(self, loaded: set[str]):
        self.loaded = loaded

    async def send_action(self, action: dict):
        """What Asterisk 22 answers to ShowDialPlan, as panoramisk hands it over."""
        assert action["Action"] == "ShowDialPlan"
        context = action["Context"]
        if self.loaded == "denied":
            return {"Response": "Error", "Message": "Permission denied"}
        if context in self.loaded:
            return [{"Response": "Success", "EventList": "start"},
                    {"Event": "ListDialplan", "Context": context, "Extension": "s", "Priority": "1"},
                    {"Event": "ShowDialPlanComplete", "EventList": "Complete", "ListItems": "1"}]
        return {"Response": "Error", "Message": f"Did not find context {context}"}


async def test_dialplan_names_the_missing_contexts():
    contexts = shipped_contexts()
    assert "callproof-entry" in contexts["callproof.conf"]
    config = Config()
    everything = set(contexts["callproof.conf"])
    assert (await check_dialplan(config, Manager(everything))).status == "OK"
    partial = await check_dialplan(config, Manager(everything - {"callproof-entry-run"}))
    assert partial.status == "FAIL" and "callproof-entry-run" in partial.detail
    assert "#include callproof/callproof.conf" in partial.fix and "dialplan reload" in partial.fix
    no_handoff = dataclasses.replace(config, handoff=dataclasses.replace(config.handoff, context="agents-x"))
    denied = await check_dialplan(config, Manager("denied"))  # type: ignore[arg-type]
    assert denied.status == "FAIL" and "write = line" in denied.fix and "reporting" in denied.fix
    result = await check_dialplan(no_handoff, Manager(everything))
    assert result.status == "FAIL" and "'agents-x'" in result.detail


def test_doctor_with_an_invalid_configuration_is_one_fail(tmp_path, capsys):
    cfg = tmp_path / "callproof.toml"
    cfg.write_text("[ari]\npasword = 'typo'\n")
    assert main(["doctor", "--config", str(cfg)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"FAIL  config         {cfg}: config key 'ari.pasword': unknown key")
    assert out[-1] == "doctor: 0 OK, 0 WARN, 1 FAIL (exit 1)"


def test_a_shared_database_wants_each_asterisk_named():
    """What ``GET /ari/asterisk/info`` says with and without asterisk.conf's systemname."""
    unnamed = system_name_result({"system": {"version": "22.7.0"}, "config": {"name": ""}})
    named = system_name_result({"system": {"version": "22.7.0"}, "config": {"name": "node-b"}})
    assert unnamed.status == "FAIL" and "systemname = <this node's name>" in unnamed.fix
    assert named.status == "OK" and "'node-b'" in named.detail
