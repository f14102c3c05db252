"""What the customer's download link and the request API say when they refuse, in the reader's
language: the link in the call's language (as the e-mail and SMS that carried it), else the
browser's, among the six customer languages; the API's ``message`` in the browser's locale
with its ``code`` (and English ``error``) the same in every language."""

from __future__ import annotations

import pytest

from callproof.rights.texts import LANGUAGES, LINK_TEXTS
from callproof.web.customer import from_browser, link_language
from tests.unit.web.test_app import API_TOKEN, make_site

FORGED = "/d/" + "A" * 23 + "." + "B" * 43
BROWSERS = {"pt_BR": "pt-BR,pt;q=0.9", "es": "es-ES", "en": "en-US", "ca": "ca-ES-valencia,ca;q=0.9",
            "eu": "eu-ES,eu;q=0.8,es;q=0.5", "gl": "gl"}


@pytest.fixture
async def site(tmp_path):
    s = await make_site(tmp_path, api_token=API_TOKEN)
    yield s
    await s.client.close()
    s.pool.close()
    s.conn.close()


def test_every_language_has_every_text_and_none_is_left_in_english():
    assert set(LINK_TEXTS) == set(LANGUAGES)
    english = LINK_TEXTS["en"]
    for language in LANGUAGES:
        assert set(LINK_TEXTS[language]) == set(english), language
        if language != "en":
            same = [key for key, text in LINK_TEXTS[language].items() if text == english[key]]
            assert same == [], (language, same)


async def test_a_forged_link_answers_in_the_browsers_language(site):
    for language, header in BROWSERS.items():
        resp = await site.client.get(FORGED, headers={"Accept-Language": header})
        assert resp.status == 403, language
        assert await resp.text() == LINK_TEXTS[language]["invalid"] + "\n"
        assert resp.headers["Content-Language"] == language.replace("_", "-")
    # a language callproof does not speak: the next one the browser lists, else the default
    fr = await site.client.get(FORGED, headers={"Accept-Language": "fr-FR, gl;q=0.4"})
    assert await fr.text() == "Esta ligazón de descarga non é válida.\n"
    nothing = await site.client.get(FORGED)
    assert await nothing.text() == LINK_TEXTS[site.config.general.default_language]["invalid"] + "\n"


def test_the_calls_language_wins_over_the_browsers(site):
    config = site.config
    assert link_language(config, "es", "en-US") == "es"
    assert link_language(config, "xx", "eu") == "eu"  # not a language of this installation: the browser's
    assert link_language(config, None, None) == config.general.default_language
    assert (from_browser("pt-PT"), from_browser("CA"), from_browser("fr")) == ("pt_BR", "ca", None)


async def test_api_errors_keep_their_code_and_speak_the_browsers_language(site):
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    body = {"protocol": site.call["protocol"], "cpf": "529.982.247-26"}
    answers = {}
    for header in ("en", "es-ES", "pt-BR"):
        resp = await site.client.post("/api/requests", json=body, headers={**auth, "Accept-Language": header})
        assert resp.status == 400
        answers[header] = await resp.json()
    assert {a["code"] for a in answers.values()} == {"bad_field"}
    assert {a["field"] for a in answers.values()} == {"cpf"}
    assert {a["error"] for a in answers.values()} == {"cpf: CPF check digits are wrong (typo?)"}
    assert answers["en"]["message"] == "The field cpf is not valid: CPF check digits are wrong (typo?)"
    assert answers["es-ES"]["message"] == \
        "El campo cpf no es válido: Los dígitos de control del CPF son incorrectos (¿una errata?)."
    assert answers["pt-BR"]["message"].startswith("O campo cpf não é válido: ")

    wrong = await site.client.post("/api/requests", json=body, headers={"Accept-Language": "es"})
    assert wrong.status == 401 and await wrong.json() == {
        "code": "unauthorised", "message": "Falta el token de acceso (bearer) o es incorrecto.",
        "error": "missing or wrong bearer token"}
    code = await site.client.post("/api/requests/20269999999999999/code", json={"code": "123456"},
                                  headers={**auth, "Accept-Language": "pt-BR"})
    answer = await code.json()
    assert code.status == 404 and answer["code"] == "no_request"
    assert answer["message"] == "Não há solicitação com esse protocolo."
