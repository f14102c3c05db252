"""What the shared code refuses reaches the operator in the page's language: each refusal of
callproof/web/refusals.py matches the wording its module really raises (so a reworded
message cannot silently fall back to English), and the search, users and request pages,
the CSRF and log-in refusals, speak Spanish and Portuguese when the reader does."""

from __future__ import annotations

import pytest

from callproof.config import ConfigError
from callproof.config.strength import check_password
from callproof.rights.identity import normalise_cpf, normalise_customer_code
from callproof.rights.requests import check_protocol, normalise_deliver_to
from callproof.storage import webauth
from callproof.web.i18n import translations
from callproof.web.passwords import WeakPassword, check_password_strength
from callproof.web.refusals import REFUSALS, translated
from tests.unit.web.test_app import csrf, login, make_site


def raised(fn, *args) -> str:
    with pytest.raises((ValueError, ConfigError, WeakPassword)) as exc:
        fn(*args)
    return str(exc.value).split(": ", 1)[-1] if isinstance(exc.value, ConfigError) else str(exc.value)


#: the real refusals, raised by the modules themselves
REAL = [
    raised(normalise_cpf, ""), raised(normalise_cpf, "12a.456"), raised(normalise_cpf, "1234"),
    raised(normalise_cpf, "111.111.111-11"), raised(normalise_cpf, "529.982.247-26"),
    raised(normalise_customer_code, ""), raised(normalise_customer_code, "x" * 500),
    raised(normalise_customer_code, "ab\x07"),
    raised(check_protocol, "123"), raised(normalise_deliver_to, "fax:123", "BR"),
    raised(normalise_deliver_to, "email:not-an-address", "BR"),
    raised(webauth.check_username, "no spaces allowed"), raised(webauth.check_role, "boss"),
    raised(check_password_strength, "password"), raised(check_password_strength, "x" * 2000),
    raised(check_password, "k", "Sh0rt!x"), raised(check_password, "k", "aaaaaaaaaaaaaaaa"),
]


#: the export, integrity and mail refusals, as callproof/rights/export.py and delivery.py word them
#: (written out: raising each needs a broken recording, keyring or ffmpeg)
EXPORTS = [
    "converting the recording to mp3 failed: ffmpeg is not installed (Debian package ffmpeg)",
    "rights.export_dir /srv/exports exists and is not a directory",
    "too many exports of request 7 in /srv/exports",
    "the recording of protocol 20260000000000001 cannot be decrypted: chunk 3 failed authentication; not exported",
    "the recording of protocol 20260000000000001 cannot be proven: no evidence record; not exported",
    "the recording of protocol 20260000000000001 changed since it was finalised (sha256 ab != signed cd);"
    " not exported",
    "exports need the private keyring ([encryption]): no key file",
    "the recording file of protocol 20260000000000001 cannot be read (symlink): /srv/rec/x.wav",
    "recording 4 is not under recording.root /srv/rec; refusing to read it",
    "export format must be one of mp3, ogg, wav, got 'flac'",
    "deliver via 'sms' or 'email', not 'fax'",
    str(ConfigError("rights.smtp.sender", "required to deliver recordings by e-mail")),
]


@pytest.mark.parametrize("message", EXPORTS)
@pytest.mark.parametrize("locale", ["es", "pt_BR"])
def test_each_export_and_mail_refusal_is_translated(message, locale):
    assert translated(message, translations(locale).gettext) != message, f"{message!r} has no {locale} wording"


def test_an_integrity_refusal_keeps_the_protocol_and_the_cause():
    spanish = translations("es").gettext
    assert translated(EXPORTS[5], spanish) == ("La grabación del protocolo 20260000000000001 ha cambiado desde que"
                                               " se finalizó (sha256 ab != signed cd): no se exporta.")
    assert translated(EXPORTS[-1], translations("pt_BR").gettext) == \
        "Para entregar por e-mail é preciso um remetente: defina rights.smtp.sender na configuração."


@pytest.mark.parametrize("message", REAL)
@pytest.mark.parametrize("locale", ["es", "pt_BR"])
def test_each_real_refusal_is_translated(message, locale):
    gettext = translations(locale).gettext
    assert translated(message, gettext) != message, f"{message!r} has no {locale} wording"


def test_the_table_has_no_duplicate_wording_and_keeps_what_the_refusal_names():
    assert len({pattern for pattern, _ in REFUSALS}) == len(REFUSALS)
    spanish = translations("es").gettext
    assert translated("CPF must have 11 digits, got 4", spanish) == "Un CPF tiene 11 dígitos, no 4."
    assert translated("phone '12' is not a valid phone number (too_short)", spanish) == \
        "El teléfono '12' no es un número válido (faltan dígitos)."
    assert translated("request 7 is 'refused'; cannot export", spanish) == \
        "La solicitud está rechazada: no se puede exportar."
    assert translated("something nobody listed", spanish) == "something nobody listed"


@pytest.fixture
async def site(tmp_path):
    s = await make_site(tmp_path)
    yield s
    await s.client.close()
    s.pool.close()
    s.conn.close()


SPANISH = {"Accept-Language": "es-ES,es;q=0.9"}
PORTUGUESE = {"Accept-Language": "pt-BR"}


async def test_the_search_form_refuses_in_the_readers_language(site):
    await login(site.client, "vera")
    token = await csrf(site.client)
    bad_cpf = await site.client.post("/search", data={"cpf": "529.982.247-26", "csrf_token": token},
                                     headers=SPANISH)
    assert bad_cpf.status == 400
    assert "Los dígitos de control del CPF son incorrectos (¿una errata?)." in await bad_cpf.text()
    bad_protocol = await site.client.post("/search", data={"protocol": "123", "csrf_token": token},
                                          headers=PORTUGUESE)
    assert "Um protocolo tem 17 dígitos" in await bad_protocol.text()


async def test_the_users_page_refuses_in_the_readers_language(site):
    await login(site.client, "ada")
    token = await csrf(site.client)
    weak = await site.client.post("/admin/users", headers=PORTUGUESE, data={
        "username": "nina", "role": "viewer", "password": "password", "csrf_token": token})
    assert weak.status == 400 and "Essa senha está vazia ou é muito conhecida" in await weak.text()
    taken = await site.client.post("/admin/users", headers=SPANISH, data={
        "username": "vera", "role": "viewer", "password": "a long and decent passphrase 4417", "csrf_token": token})
    assert taken.status == 409 and "El usuario &#39;vera&#39; ya existe." in await taken.text()


async def test_a_stale_form_and_a_missing_session_are_refused_in_the_readers_language(site):
    await login(site.client, "otto")
    stale = await site.client.post("/requests", data={"protocol": site.call["protocol"], "csrf_token": "forged"},
                                   headers=SPANISH)
    assert stale.status == 403 and "Recargue la página" in await stale.text()
    site.client.session.cookie_jar.clear()
    anonymous = await site.client.post("/requests", data={}, headers=PORTUGUESE)
    assert anonymous.status == 401 and "entre primeiro" in (await anonymous.text()).lower()


def test_an_english_page_keeps_the_modules_own_words():
    english = translations("en").gettext
    message = "request 7 has no export to deliver; export it first"
    assert translated(message, english) == message
