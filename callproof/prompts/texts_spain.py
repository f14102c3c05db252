"""What the default prompts say in Spain's co-official languages: Catalan (``ca``, which
serves Valencian too, docs/prompts.md#languages), Basque (``eu``) and Galician (``gl``).

The register is the formal one Spanish customer services use: Catalan in the second
person plural of courtesy (*premeu*, *podeu*), Galician with *vostede* (*prema*, *pode*),
Basque with *zu* (the standard polite form).  The sentences say what the Portuguese and
Castilian ones say (:mod:`.texts`), sentence by sentence, so every language gives the
caller the same facts.

espeak-ng speaks ``ca`` and ``eu``; it has no Galician voice, so ``gl`` ships texts only:
``prompts generate`` lists each Galician prompt as a recording to make (file, place, text).
"""

from __future__ import annotations

SPAIN_PROMPT_TEXTS: dict[str, dict[str, str]] = {
    "ca": {
        "consent": (
            "Aquesta trucada s'està enregistrant, d'acord amb la normativa de protecció de les persones "
            "consumidores. Podeu sol·licitar una còpia de l'enregistrament."
        ),
        "protocol-is": "El vostre número de protocol és",
        "language-option": "Per continuar en català, premeu el",
        "language-invalid": "Aquesta opció no és vàlida.",
        "request-consent": (
            "Aquesta atenció automàtica queda registrada: desem el protocol que marqueu i la vostra "
            "sol·licitud, d'acord amb la normativa de protecció de les persones consumidores."
        ),
        "request-enter": (
            "Per sol·licitar l'enregistrament d'una trucada, marqueu el número de protocol d'aquella trucada, "
            "de disset xifres, i després la tecla coixinet. Per tornar a començar, premeu l'asterisc."
        ),
        "request-not-found": "Aquest número no té les disset xifres d'un protocol.",
        "request-give-up": "No hem rebut cap número de protocol. No s'ha registrat cap sol·licitud.",
        "request-registered": (
            "Sol·licitud rebuda. Si aquest protocol correspon a una trucada registrada, enviarem per SMS, "
            "al número d'aquella trucada, el protocol de la sol·licitud, i l'enregistrament dins del "
            "termini legal."
        ),
    },
    "eu": {
        "consent": (
            "Dei hau grabatzen ari da, kontsumitzaileen babeserako araudiaren arabera. "
            "Grabazioaren kopia bat eska dezakezu."
        ),
        "protocol-is": "Zure protokolo-zenbakia hau da:",
        "language-option": "Euskaraz jarraitzeko, sakatu",
        "language-invalid": "Aukera hori ez da baliozkoa.",
        "request-consent": (
            "Arreta automatiko hau erregistratuta geratzen da: markatzen duzun protokoloa eta zure eskaera "
            "gordetzen ditugu, kontsumitzaileen babeserako araudiaren arabera."
        ),
        "request-enter": (
            "Dei baten grabazioa eskatzeko, markatu dei horren protokolo-zenbakia, hamazazpi digitukoa, "
            "eta ondoren traola tekla. Berriro hasteko, sakatu izartxoa."
        ),
        "request-not-found": "Zenbaki horrek ez ditu protokolo baten hamazazpi digituak.",
        "request-give-up": "Ez dugu protokolo-zenbakirik jaso. Ez da eskaerarik erregistratu.",
        "request-registered": (
            "Eskaera jaso dugu. Protokolo hori erregistratutako dei batena bada, SMS bidez bidaliko dugu, "
            "dei horren zenbakira, eskaeraren protokoloa, eta grabazioa legezko epearen barruan."
        ),
    },
    "gl": {
        "consent": (
            "Esta chamada está a ser gravada, conforme á normativa de protección das persoas consumidoras. "
            "Pode solicitar unha copia da gravación."
        ),
        "protocol-is": "O seu número de protocolo é",
        "language-option": "Para continuar en galego, prema o",
        "language-invalid": "Esa opción non é válida.",
        "request-consent": (
            "Esta atención automática queda rexistrada: gardamos o protocolo que marque e a súa solicitude, "
            "conforme á normativa de protección das persoas consumidoras."
        ),
        "request-enter": (
            "Para solicitar a gravación dunha chamada, marque o número de protocolo desa chamada, "
            "de dezasete díxitos, e despois a tecla cancelo. Para comezar de novo, prema o asterisco."
        ),
        "request-not-found": "Ese número non ten os dezasete díxitos dun protocolo.",
        "request-give-up": "Non recibimos ningún número de protocolo. Non se rexistrou ningunha solicitude.",
        "request-registered": (
            "Solicitude recibida. Se ese protocolo é dunha chamada rexistrada, enviaremos por SMS, "
            "ao número desa chamada, o protocolo da solicitude, e a gravación dentro do prazo legal."
        ),
    },
}

#: Digit words, one file each (Asterisk ships no core sounds in these languages).  The
#: names of the figures as one reads a number figure by figure: Catalan *u* (not *un*),
#: Galician *un*.
SPAIN_DIGIT_WORDS: dict[str, tuple[str, ...]] = {
    "ca": ("zero", "u", "dos", "tres", "quatre", "cinc", "sis", "set", "vuit", "nou"),
    "eu": ("zero", "bat", "bi", "hiru", "lau", "bost", "sei", "zazpi", "zortzi", "bederatzi"),
    "gl": ("cero", "un", "dous", "tres", "catro", "cinco", "seis", "sete", "oito", "nove"),
}

#: espeak-ng voices; None: espeak-ng has no voice for the language (its prompts are recordings).
SPAIN_ESPEAK_VOICES: dict[str, str | None] = {"ca": "ca", "eu": "eu", "gl": None}
