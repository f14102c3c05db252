"""What the default prompts say, per language, and the names both halves agree on.

Admins who want other wording record their own file in ``custom/<lang>/<name>.wav``
instead of editing these texts.
"""

from __future__ import annotations

from .texts_spain import SPAIN_DIGIT_WORDS, SPAIN_ESPEAK_VOICES, SPAIN_PROMPT_TEXTS

#: The languages generated and configured by default (``[general] languages``).
LANGUAGES: tuple[str, ...] = ("pt_BR", "es", "en")

#: Every language callproof has texts for: the defaults, then Spain's co-official
#: languages (:mod:`.texts_spain`).
SUPPORTED_LANGUAGES: tuple[str, ...] = (*LANGUAGES, "ca", "eu", "gl")

#: callproof language -> espeak-ng voice name (``espeak-ng --voices``); None: espeak-ng
#: has no voice for it, every prompt of the language must be a recording.
ESPEAK_VOICES: dict[str, str | None] = {"pt_BR": "pt-br", "es": "es", "en": "en-us", **SPAIN_ESPEAK_VOICES}

#: Sentence prompts per language.  Admins who want other wording record their
#: own file in ``custom/<lang>/<name>.wav`` instead of editing these.
PROMPT_TEXTS: dict[str, dict[str, str]] = {
    "pt_BR": {
        "consent": (
            "Esta ligação está sendo gravada, conforme a lei de defesa do consumidor. "
            "Você pode solicitar uma cópia da gravação."
        ),
        "protocol-is": "O número do seu protocolo é",
        "language-option": "Para continuar em português, tecle",
        "language-invalid": "Essa opção não é válida.",
        "request-consent": (
            "Este atendimento automático fica registrado: guardamos o protocolo que você digitar "
            "e o seu pedido, conforme a lei de defesa do consumidor."
        ),
        "request-enter": (
            "Para pedir a gravação de uma ligação, digite o número de protocolo dessa ligação, "
            "com dezessete dígitos, e depois a tecla cerquilha. Para recomeçar, tecle asterisco."
        ),
        "request-not-found": "Esse número não tem os dezessete dígitos de um protocolo.",
        "request-give-up": "Não recebemos um número de protocolo. Nenhum pedido foi registrado.",
        "request-registered": (
            "Pedido recebido. Se esse protocolo for de uma ligação registrada, enviaremos por SMS, "
            "ao número dessa ligação, o protocolo do pedido, e a gravação dentro do prazo legal."
        ),
    },
    "es": {
        "consent": (
            "Esta llamada está siendo grabada, conforme a la ley de protección al consumidor. "
            "Usted puede solicitar una copia de la grabación."
        ),
        "protocol-is": "Su número de protocolo es",
        "language-option": "Para continuar en castellano, pulse el",
        "language-invalid": "Esa opción no es válida.",
        "request-consent": (
            "Esta atención automática queda registrada: guardamos el protocolo que usted marque "
            "y su solicitud, conforme a la ley de protección al consumidor."
        ),
        "request-enter": (
            "Para solicitar la grabación de una llamada, marque el número de protocolo de esa llamada, "
            "de diecisiete dígitos, y luego la tecla numeral. Para empezar de nuevo, pulse asterisco."
        ),
        "request-not-found": "Ese número no tiene los diecisiete dígitos de un protocolo.",
        "request-give-up": "No recibimos un número de protocolo. No se registró ninguna solicitud.",
        "request-registered": (
            "Solicitud recibida. Si ese protocolo es de una llamada registrada, enviaremos por SMS, "
            "al número de esa llamada, el protocolo de la solicitud, y la grabación dentro del plazo legal."
        ),
    },
    "en": {
        "consent": (
            "This call is recorded, as consumer protection law requires. "
            "You may request a copy of the recording."
        ),
        "protocol-is": "Your protocol number is",
        "language-option": "To continue in English, press",
        "language-invalid": "That is not one of the options.",
        "request-consent": (
            "This automated service is logged: we keep the protocol number you type "
            "and your request, as consumer protection law requires."
        ),
        "request-enter": (
            "To request the recording of a call, type that call's seventeen-digit protocol number, "
            "then the hash key. To start again, press star."
        ),
        "request-not-found": "That number does not have the seventeen digits of a protocol.",
        "request-give-up": "We did not receive a protocol number. No request has been registered.",
        "request-registered": (
            "Request received. If that protocol belongs to a recorded call, we will send the request's "
            "protocol by SMS to that call's number, and the recording within the legal deadline."
        ),
    },
    **SPAIN_PROMPT_TEXTS,
}

#: The prompts of the compliance flow (callproof/callflow/flow.py): the announcement, the
#: protocol reading's lead-in, and the language menu after the announcement
#: (``language-option`` is followed by the option's key, read in the same language).
CALL_PROMPTS: tuple[str, ...] = ("consent", "protocol-is")
MENU_PROMPTS: tuple[str, ...] = ("language-option", "language-invalid")

#: The prompts of the recording-request IVR (``ari_app/ivr_request.py``, docs/ivr.md),
#: in the order a caller may hear them.  ``request-consent`` comes first: it says what
#: this automated contact keeps, before anything else is played.
REQUEST_PROMPTS: tuple[str, ...] = (
    "request-consent", "request-enter", "request-not-found", "request-give-up",
    "request-registered",
)

#: Digit words for the languages whose digits we generate (Asterisk core sounds
#: cover en and es).  "seis" rather than the colloquial "meia": unambiguous for
#: a protocol number; an admin can record ``custom/pt_BR/digits/6.wav``.
DIGIT_WORDS: dict[str, tuple[str, ...]] = {
    "pt_BR": ("zero", "um", "dois", "três", "quatro", "cinco", "seis", "sete", "oito", "nove"),
    **SPAIN_DIGIT_WORDS,
}

#: Asterisk core-sound directories holding ``0``..``9`` per language, relative
#: to Asterisk's sounds dir (Debian: asterisk-core-sounds-en / -es, the Spanish
#: package installs the ``es_MX_f_Allison`` voice).
DEFAULT_CORE_DIGITS: dict[str, str] = {"en": "digits", "es": "es_MX_f_Allison/digits"}

#: The language-independent silence played between digit groups (``<dest>/pause.wav``).
PAUSE_NAME = "pause"
