"""What the customer reads, in each language callproof speaks to callers (pt_BR, es, en and
Spain's co-official ca, eu, gl): the e-mail with the link to a recording and the demand
history document (HTML/PDF).  The language is the call's (``calls.language``, as the prompts
and the SMS), else ``[general] default_language``; English when a language has no text.

Only the company, the protocols, the times, the link and its validity are in a mail (no
other personal data)."""

from __future__ import annotations

#: the languages every text below exists in
LANGUAGES = ("pt_BR", "es", "en", "ca", "eu", "gl")

#: how a history writes a time (the SMS texts' date order: Basque writes the year first)
HISTORY_TIME_FORMATS = {"eu": "%Y/%m/%d %H:%M"}
HISTORY_TIME_FORMAT = "%d/%m/%Y %H:%M"

EMAIL_TEXTS: dict[str, dict[str, str]] = {
    "pt_BR": {
        "subject": "{company}: gravação do atendimento, protocolo {protocol}",
        "body": ("Olá,\n\nA gravação do seu atendimento de protocolo {protocol} ({call_time}) está"
                 " disponível para download neste link:\n\n{url}\n\nO link é válido até {expires}"
                 " e pode ser usado até {max_downloads} vezes. Protocolo da sua solicitação:"
                 " {request_protocol}.\n\n{company}\n"),
    },
    "es": {
        "subject": "{company}: grabación de la atención, protocolo {protocol}",
        "body": ("Hola,\n\nLa grabación de su atención con protocolo {protocol} ({call_time}) está"
                 " disponible para descargar en este enlace:\n\n{url}\n\nEl enlace es válido hasta"
                 " {expires} y puede usarse hasta {max_downloads} veces. Protocolo de su solicitud:"
                 " {request_protocol}.\n\n{company}\n"),
    },
    "en": {
        "subject": "{company}: recording of your call, protocol {protocol}",
        "body": ("Hello,\n\nThe recording of your call with protocol {protocol} ({call_time}) can be"
                 " downloaded from this link:\n\n{url}\n\nThe link is valid until {expires} and can be"
                 " used up to {max_downloads} times. Your request's protocol: {request_protocol}.\n\n"
                 "{company}\n"),
    },
    "ca": {
        "subject": "{company}: enregistrament de l'atenció, protocol {protocol}",
        "body": ("Hola,\n\nL'enregistrament de la vostra atenció amb el protocol {protocol} ({call_time}) es pot"
                 " descarregar en aquest enllaç:\n\n{url}\n\nL'enllaç és vàlid fins al {expires} i es pot fer servir"
                 " fins a {max_downloads} vegades. Protocol de la vostra sol·licitud: {request_protocol}.\n\n"
                 "{company}\n"),
    },
    "eu": {
        "subject": "{company}: arretaren grabazioa, {protocol} protokoloa",
        "body": ("Kaixo:\n\n{protocol} protokoloa duen arretaren grabazioa ({call_time}) esteka honetan deskarga"
                 " daiteke:\n\n{url}\n\nEstekak {expires} arte balio du, eta gehienez {max_downloads} aldiz erabil"
                 " daiteke. Zure eskaeraren protokoloa: {request_protocol}.\n\n{company}\n"),
    },
    "gl": {
        "subject": "{company}: gravación da atención, protocolo {protocol}",
        "body": ("Ola:\n\nA gravación da súa atención co protocolo {protocol} ({call_time}) pódese descargar"
                 " nesta ligazón:\n\n{url}\n\nA ligazón é válida ata o {expires} e pódese usar ata"
                 " {max_downloads} veces. Protocolo da súa solicitude: {request_protocol}.\n\n{company}\n"),
    },
}

HISTORY_LABELS: dict[str, dict[str, str]] = {
    "pt_BR": {
        "title": "Histórico de atendimentos", "customer": "Cliente", "generated": "Emitido em",
        "document": "Documento", "due": "Prazo de entrega", "calls": "Atendimentos",
        "protocol": "Protocolo", "date": "Data", "situation": "Situação", "recording": "Gravação",
        "requests": "Solicitações de gravação", "request_protocol": "Protocolo da solicitação",
        "call_protocol": "Protocolo do atendimento", "received": "Recebida", "request_due": "Prazo",
        "state": "Situação", "none": "Nenhum registro.", "closed": "Concluída em",
        "footer": "Datas no fuso horário {tz}. Documento gerado automaticamente; SHA-256 registrado.",
    },
    "es": {
        "title": "Historial de atenciones", "customer": "Cliente", "generated": "Emitido el",
        "document": "Documento", "due": "Plazo de entrega", "calls": "Atenciones",
        "protocol": "Protocolo", "date": "Fecha", "situation": "Situación", "recording": "Grabación",
        "requests": "Solicitudes de grabación", "request_protocol": "Protocolo de la solicitud",
        "call_protocol": "Protocolo de la atención", "received": "Recibida", "request_due": "Plazo",
        "state": "Estado", "none": "Sin registros.", "closed": "Cerrada el",
        "footer": "Fechas en la zona horaria {tz}. Documento generado automáticamente; SHA-256 registrado.",
    },
    "en": {
        "title": "Contact history", "customer": "Customer", "generated": "Issued",
        "document": "Document", "due": "Due by", "calls": "Calls",
        "protocol": "Protocol", "date": "Date", "situation": "Status", "recording": "Recording",
        "requests": "Recording requests", "request_protocol": "Request protocol",
        "call_protocol": "Call protocol", "received": "Received", "request_due": "Due",
        "state": "State", "none": "No records.", "closed": "Closed",
        "footer": "Times in time zone {tz}. Generated automatically; SHA-256 recorded.",
    },
    "ca": {
        "title": "Historial d'atencions", "customer": "Client", "generated": "Emès el",
        "document": "Document", "due": "Termini de lliurament", "calls": "Atencions",
        "protocol": "Protocol", "date": "Data", "situation": "Situació", "recording": "Enregistrament",
        "requests": "Sol·licituds d'enregistrament", "request_protocol": "Protocol de la sol·licitud",
        "call_protocol": "Protocol de l'atenció", "received": "Rebuda", "request_due": "Termini",
        "state": "Estat", "none": "Cap registre.", "closed": "Tancada el",
        "footer": "Dates a la zona horària {tz}. Document generat automàticament; SHA-256 registrat.",
    },
    "eu": {
        "title": "Arreten historia", "customer": "Bezeroa", "generated": "Jaulkipen-data",
        "document": "Dokumentua", "due": "Entrega-epea", "calls": "Arretak",
        "protocol": "Protokoloa", "date": "Data", "situation": "Egoera", "recording": "Grabazioa",
        "requests": "Grabazio-eskaerak", "request_protocol": "Eskaeraren protokoloa",
        "call_protocol": "Arretaren protokoloa", "received": "Jasoa", "request_due": "Epea",
        "state": "Egoera", "none": "Ez dago erregistrorik.", "closed": "Itxiera-data",
        "footer": "Datak {tz} ordu-eremuan. Automatikoki sortutako dokumentua; SHA-256 erregistratuta.",
    },
    "gl": {
        "title": "Historial de atencións", "customer": "Cliente", "generated": "Emitido o",
        "document": "Documento", "due": "Prazo de entrega", "calls": "Atencións",
        "protocol": "Protocolo", "date": "Data", "situation": "Situación", "recording": "Gravación",
        "requests": "Solicitudes de gravación", "request_protocol": "Protocolo da solicitude",
        "call_protocol": "Protocolo da atención", "received": "Recibida", "request_due": "Prazo",
        "state": "Estado", "none": "Sen rexistros.", "closed": "Pechada o",
        "footer": "Datas no fuso horario {tz}. Documento xerado automaticamente; SHA-256 rexistrado.",
    },
}

HISTORY_WORDS: dict[str, dict[str | None, str]] = {
    "pt_BR": {
        "completed": "concluído", "handed_off": "transferido ao atendente", "recording": "em andamento",
        "protocol_given": "protocolo informado", "protocol_reading": "protocolo informado",
        "abandoned_in_consent": "encerrado pelo cliente", "abandoned_in_protocol": "encerrado pelo cliente",
        "consent_playing": "em andamento", "failed": "falha técnica",
        "finalised": "disponível", "deleted": "excluída (prazo de guarda)", "missing": "indisponível",
        "needs_identity_check": "aguardando confirmação de identidade", "received": "recebida",
        "exported": "preparada", "delivered": "entregue", "refused": "recusada", None: "—",
    },
    "es": {
        "completed": "finalizada", "handed_off": "transferida al agente", "recording": "en curso",
        "protocol_given": "protocolo informado", "protocol_reading": "protocolo informado",
        "abandoned_in_consent": "finalizada por el cliente", "abandoned_in_protocol": "finalizada por el cliente",
        "consent_playing": "en curso", "failed": "fallo técnico",
        "finalised": "disponible", "deleted": "eliminada (plazo de conservación)", "missing": "no disponible",
        "needs_identity_check": "pendiente de verificar identidad", "received": "recibida",
        "exported": "preparada", "delivered": "entregada", "refused": "rechazada", None: "—",
    },
    "en": {
        "completed": "completed", "handed_off": "handed to an agent", "recording": "in progress",
        "protocol_given": "protocol given", "protocol_reading": "protocol given",
        "abandoned_in_consent": "ended by the caller", "abandoned_in_protocol": "ended by the caller",
        "consent_playing": "in progress", "failed": "technical failure",
        "finalised": "available", "deleted": "deleted (retention period)", "missing": "unavailable",
        "needs_identity_check": "awaiting identity check", "received": "received",
        "exported": "prepared", "delivered": "delivered", "refused": "refused", None: "—",
    },
    "ca": {
        "completed": "finalitzada", "handed_off": "transferida a l'agent", "recording": "en curs",
        "protocol_given": "protocol comunicat", "protocol_reading": "protocol comunicat",
        "abandoned_in_consent": "finalitzada pel client", "abandoned_in_protocol": "finalitzada pel client",
        "consent_playing": "en curs", "failed": "error tècnic",
        "finalised": "disponible", "deleted": "eliminat (termini de conservació)", "missing": "no disponible",
        "needs_identity_check": "pendent de verificar la identitat", "received": "rebuda",
        "exported": "preparada", "delivered": "lliurada", "refused": "rebutjada", None: "—",
    },
    "eu": {
        "completed": "amaitua", "handed_off": "agenteari transferitua", "recording": "abian",
        "protocol_given": "protokoloa emanda", "protocol_reading": "protokoloa emanda",
        "abandoned_in_consent": "bezeroak amaitua", "abandoned_in_protocol": "bezeroak amaitua",
        "consent_playing": "abian", "failed": "akats teknikoa",
        "finalised": "eskuragarri", "deleted": "ezabatua (kontserbazio-epea)", "missing": "ez dago eskuragarri",
        "needs_identity_check": "identitatea egiaztatzeko zain", "received": "jasoa",
        "exported": "prestatua", "delivered": "entregatua", "refused": "ukatua", None: "—",
    },
    "gl": {
        "completed": "finalizada", "handed_off": "transferida ao axente", "recording": "en curso",
        "protocol_given": "protocolo informado", "protocol_reading": "protocolo informado",
        "abandoned_in_consent": "finalizada polo cliente", "abandoned_in_protocol": "finalizada polo cliente",
        "consent_playing": "en curso", "failed": "fallo técnico",
        "finalised": "dispoñible", "deleted": "eliminada (prazo de conservación)", "missing": "non dispoñible",
        "needs_identity_check": "pendente de verificar a identidade", "received": "recibida",
        "exported": "preparada", "delivered": "entregada", "refused": "rexeitada", None: "—",
    },
}

#: what the customer's download link (``/d/<token>``, callproof/web/public.py) answers when it
#: cannot give the file: in the call's language (as the e-mail), else the browser's
LINK_TEXTS: dict[str, dict[str, str]] = {
    "pt_BR": {
        "invalid": "Este link de download não é válido.",
        "gone": "Este link de download não é mais válido (expirou ou já foi usado o número máximo de vezes)."
                " Peça um novo.",
        "unavailable": "Esta gravação não está mais disponível. Peça um novo link.",
        "rate_limited": "Muitas tentativas. Tente novamente mais tarde.",
        "range": "O trecho pedido não existe neste arquivo.",
    },
    "es": {
        "invalid": "Este enlace de descarga no es válido.",
        "gone": "Este enlace de descarga ya no es válido (ha caducado o ya se ha usado el número máximo de"
                " veces). Pida uno nuevo.",
        "unavailable": "Esta grabación ya no está disponible. Pida un enlace nuevo.",
        "rate_limited": "Demasiados intentos. Vuelva a intentarlo más tarde.",
        "range": "El fragmento pedido no existe en este archivo.",
    },
    "en": {
        "invalid": "This download link is not valid.",
        "gone": "This download link is no longer valid (it has expired or been used the most times allowed)."
                " Ask for a new one.",
        "unavailable": "This recording is no longer available. Ask for a new link.",
        "rate_limited": "Too many requests. Try again later.",
        "range": "Requested range not satisfiable.",
    },
    "ca": {
        "invalid": "Aquest enllaç de baixada no és vàlid.",
        "gone": "Aquest enllaç de baixada ja no és vàlid (ha caducat o ja s'ha fet servir el nombre màxim de"
                " vegades). Demaneu-ne un de nou.",
        "unavailable": "Aquest enregistrament ja no està disponible. Demaneu un enllaç nou.",
        "rate_limited": "Massa intents. Torneu-ho a provar més tard.",
        "range": "El fragment demanat no existeix en aquest fitxer.",
    },
    "eu": {
        "invalid": "Deskarga-esteka hau ez da baliozkoa.",
        "gone": "Deskarga-esteka honek ez du balio jada (iraungi egin da edo gehienezko aldiz erabili da)."
                " Eskatu beste bat.",
        "unavailable": "Grabazio hau ez dago eskuragarri jada. Eskatu beste esteka bat.",
        "rate_limited": "Saiakera gehiegi. Saiatu berriro geroago.",
        "range": "Eskatutako zatia ez dago fitxategi honetan.",
    },
    "gl": {
        "invalid": "Esta ligazón de descarga non é válida.",
        "gone": "Esta ligazón de descarga xa non é válida (caducou ou xa se usou o número máximo de veces)."
                " Solicite unha nova.",
        "unavailable": "Esta gravación xa non está dispoñible. Solicite unha ligazón nova.",
        "rate_limited": "Demasiados intentos. Ténteo de novo máis tarde.",
        "range": "O fragmento pedido non existe neste ficheiro.",
    },
}
